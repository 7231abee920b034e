"""Slices of several volumes inverted together: the same codes as volume by volume, bounded memory, stop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_latent.errors import UserInputError
from napari_latent.latent.batched_inversion import VolumeSource, iter_invert_volumes
from napari_latent.latent.cohort_codes import iter_cohort_codes, volume_sources
from napari_latent.latent.inversion import (
    InversionSettings,
    default_batch_size,
    invert,
    iter_optimize_codes,
    latent_statistics,
    plan_inversion,
)
from napari_latent.models.base import build_model
from napari_latent.progress import StopFlag, run_operation
from napari_latent.volumes import load_cohort, open_volume

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def demo():
    """A small untrained VAE at 32 px: inversion is a deterministic function of it all the same."""
    torch.manual_seed(0)
    return build_model("vae", image_size=32, latent_dim=8, base_channels=8, max_channels=32).eval()


def _run(plan, items, open_volumes=4, stop=None):
    found: list = []
    count = run_operation(iter_invert_volumes(plan, items, lambda position, codes: found.append((position, codes)),
                                              open_volumes, stop))
    return count, found


def test_the_encoder_gives_each_volume_its_own_codes_whatever_the_batches(demo, tiny_cohort: Path) -> None:
    cohort = load_cohort(tiny_cohort)
    alone = [invert(demo, open_volume(s.path), method="encoder") for s in cohort.subjects[:4]]
    for batch_size in (5, 64):  # batches smaller than a volume, and batches spanning three volumes
        plan = plan_inversion(demo, "encoder", settings=InversionSettings(batch_size=batch_size))
        count, found = _run(plan, volume_sources(cohort)[:4], open_volumes=3)
        assert count == 4 and [p for p, _ in found] == [0, 1, 2, 3]
        for (_, codes), single in zip(found, alone, strict=True):
            assert codes.method == "encoder" and codes.source == single.source
            np.testing.assert_array_equal(codes.indices, single.indices)
            torch.testing.assert_close(codes.codes, single.codes, atol=1e-5, rtol=1e-5)
            np.testing.assert_allclose(codes.errors, single.errors, atol=1e-6, rtol=1e-5)


def test_optimisation_codes_do_not_depend_on_the_batch(demo, tiny_cohort: Path) -> None:
    cohort = load_cohort(tiny_cohort)
    settings = InversionSettings(steps=6, noise=0.5)  # strong noise: a shared noise stream would show
    alone = [invert(demo, open_volume(s.path), method="optimize", settings=settings) for s in cohort.subjects[:3]]
    mean = latent_statistics(demo, "z")[0]
    plan = plan_inversion(demo, "optimize", settings=InversionSettings(steps=6, noise=0.5, batch_size=11))
    _, found = _run(plan, volume_sources(cohort)[:3], open_volumes=2)
    for (_, codes), single in zip(found, alone, strict=True):
        assert float((single.codes - mean).abs().max()) > 0.05  # the codes did move
        torch.testing.assert_close(codes.codes, single.codes, atol=2e-5, rtol=1e-4)
        assert codes.settings["batch_size"] == 11 and single.settings["batch_size"] == 256
    reseeded = plan_inversion(demo, "optimize", settings=InversionSettings(steps=6, noise=0.5), seed=1)
    _, other = _run(reseeded, volume_sources(cohort)[:1])
    assert float((other[0][1].codes - alone[0].codes).abs().max()) > 1e-3  # the noise is part of the result


def test_each_target_has_its_own_noise_stream(demo) -> None:
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        targets = demo.decode(demo.sample_latent(6, generator))
    mean, spread = latent_statistics(demo, "z")
    start = mean.expand(6, -1).clone()
    settings = InversionSettings(steps=4, noise=1.0)
    whole = run_operation(iter_optimize_codes(demo, targets, start, "z", settings, spread, keys=np.arange(6)))
    reverse = run_operation(iter_optimize_codes(demo, targets.flip(0), start, "z", settings, spread,
                                                keys=np.arange(6)[::-1]))
    torch.testing.assert_close(reverse.flip(0), whole, atol=1e-5, rtol=1e-4)
    shared = run_operation(iter_optimize_codes(demo, targets.flip(0), start, "z", settings, spread))  # keys 0..5
    assert float((shared.flip(0) - whole).abs().max()) > 1e-3
    with pytest.raises(UserInputError, match="3 noise keys given for 6 targets"):
        run_operation(iter_optimize_codes(demo, targets, start, "z", settings, spread, keys=[0, 1, 2]))


def test_at_most_open_volumes_are_held(demo, tiny_cohort: Path) -> None:
    cohort = load_cohort(tiny_cohort)
    held, peak = set(), [0]

    def opener(position: int, path: Path):
        def open_it():
            held.add(position)
            peak[0] = max(peak[0], len(held))
            return open_volume(path)
        return open_it

    items = [VolumeSource(s.name, str(s.path), opener(k, s.path)) for k, s in enumerate(cohort.subjects)]
    for open_volumes in (1, 2):
        held.clear()
        peak[0] = 0
        plan = plan_inversion(demo, "encoder", settings=InversionSettings(batch_size=1000))
        order = []

        def sink(position, codes, order=order):
            order.append(position)
            held.discard(position)

        run_operation(iter_invert_volumes(plan, items, sink, open_volumes))
        assert order == list(range(len(items)))
        assert peak[0] == open_volumes  # a batch of 1000 slices would take them all; the bound holds
    with pytest.raises(UserInputError, match="at least 1"):
        run_operation(iter_invert_volumes(plan, items, lambda *_: None, 0))


def test_a_stop_keeps_the_finished_volumes(demo, tiny_cohort: Path) -> None:
    stop = StopFlag()
    events = []

    def progress(event):
        events.append(event)
        if "optimising" in event.message:
            stop.request()

    codes = run_operation(iter_cohort_codes(demo, tiny_cohort, "z", method="optimize", steps=50, stop=stop,
                                            batch_size=40, open_volumes=2), progress)
    # the first batch (40 slices) covers the first volume: it is kept, the rest is skipped
    assert len(codes.per_subject) == 1 and len(codes.codes) == len(codes.per_subject[0])
    assert sum("optimising" in e.message for e in events) == 1
    assert events[-1].message == "inverted sub-001" and events[-1].total == 8


def test_cohort_codes_are_in_cohort_order_with_positions(demo, tiny_cohort: Path) -> None:
    codes = run_operation(iter_cohort_codes(demo, tiny_cohort, "z", batch_size=17, open_volumes=2))
    assert len(codes.per_subject) == 8 and len(codes.codes) == sum(len(c) for c in codes.per_subject)
    assert codes.subject[0] == 0 and codes.subject[-1] == 7 and np.all(np.diff(codes.subject) >= 0)
    first = codes.subject == 0
    assert codes.position[first][0] == 0.0 and codes.position[first][-1] == 1.0
    assert [c.source for c in codes.per_subject] == [str(s.path) for s in codes.cohort.subjects]


def test_the_default_batch_shrinks_with_the_image() -> None:
    assert [default_batch_size(s) for s in (32, 64, 128, 256, 512)] == [256, 256, 64, 16, 4]
    with pytest.raises(UserInputError, match="batch size must be positive"):
        InversionSettings(batch_size=0).validate()
