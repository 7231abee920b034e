"""Batches from the slice cache: the same reads, weights and validation numbers as slices held in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_latent.progress import ProgressEvent, StopFlag, run_operation
from napari_latent.training import TrainSettings, iter_prepare_data, split_subjects, train_model
from napari_latent.training.data import Augmentation
from napari_latent.training.distributed import DistributedContext
from napari_latent.training.loop import _batches, _build_objective, _prepare_model, epoch_order, step_generator
from napari_latent.training.monitoring import validation_metrics
from napari_latent.training.slice_dataset import BatchLoader, default_workers
from napari_latent.volumes import SliceSpec, open_volume
from napari_latent.volumes.cohort import load_cohort
from napari_latent.volumes.slicing import slice_volume

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"image_size": 32, "latent_dim": 8, "base_channels": 8, "max_channels": 32}
SETTINGS = {"epochs": 2, "batch_size": 32, "device": "cpu", "augment_rotation": 4.0, "augment_scale": 0.05,
            "seed": 3, "val_fraction": 0.25, "lr": 2e-3}


def in_memory_slices(folder: Path, indices: list[int]) -> torch.Tensor:
    """The slices of some subjects as training held them before the cache: one tensor."""
    cohort = load_cohort(folder)
    return torch.cat([slice_volume(open_volume(cohort.subjects[i].path), SliceSpec(size=32))[0] for i in indices])


def in_memory_run(folder: Path, settings: TrainSettings) -> dict[str, torch.Tensor]:
    """The engine's loop as it was with every slice in one tensor: same order, same draws."""
    cohort = load_cohort(folder)
    train_idx, _ = split_subjects(len(cohort), settings.val_fraction, settings.seed, cohort.participant_groups())
    images = in_memory_slices(folder, train_idx)
    net = _prepare_model("vae", dict(TINY), settings.seed)
    context = DistributedContext()
    objective = _build_objective(net, settings, context, torch.device("cpu"))
    augment = Augmentation(settings.augment_rotation, settings.augment_scale)
    step = 0
    for epoch in range(settings.epochs):
        for batch in _batches(epoch_order(len(images), settings.seed, epoch, context), settings.batch_size):
            generator = step_generator(settings.seed, step, 0)
            objective.train_step(augment(images[batch], generator), generator)
            step += 1
        objective.on_epoch_end(epoch)
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def test_a_slice_set_reads_any_order_exactly(tiny_cohort: Path, tmp_path: Path) -> None:
    data = run_operation(iter_prepare_data(tiny_cohort, SliceSpec(size=32), 0.25, 0, cache=tmp_path / "cache"))
    cohort = load_cohort(tiny_cohort)
    train_idx, val_idx = split_subjects(len(cohort), 0.25, 0, cohort.participant_groups())
    expected = in_memory_slices(tiny_cohort, train_idx)
    train = data.train
    assert len(train) == len(expected) and train.names == [cohort.subjects[i].name for i in train_idx]
    order = np.random.default_rng(0).permutation(len(train))[:40]
    assert torch.equal(train.read(order), expected[order])
    assert torch.equal(train.read_range(20, 70), expected[20:70])
    assert torch.equal(train.images, expected)
    assert torch.equal(data.validation.images, in_memory_slices(tiny_cohort, val_idx))
    assert train.subject.tolist() == [k for k, n in enumerate(train.counts) for _ in range(n)]
    with pytest.raises(IndexError):
        train.read([len(train)])


@pytest.mark.parametrize("workers", [0, 2])
def test_the_loader_serves_the_engines_batches_in_order(tiny_cohort: Path, tmp_path: Path, workers: int) -> None:
    data = run_operation(iter_prepare_data(tiny_cohort, SliceSpec(size=32), 0.25, 0, cache=tmp_path / "cache"))
    expected = data.train.images
    loader = BatchLoader(data.train.reader, workers, pin_memory=False)
    try:
        for epoch in range(2):
            batches = _batches(epoch_order(len(expected), 0, epoch, DistributedContext()), 16)
            served = list(loader(batches[3:]))  # a resumed epoch starts mid-way
            assert len(served) == len(batches) - 3
            for batch, indices in zip(served, batches[3:], strict=True):
                assert torch.equal(batch, expected[indices])
    finally:
        loader.close()


@pytest.mark.slow
def test_training_from_the_cache_gives_the_weights_of_the_in_memory_path(tiny_cohort: Path, tmp_path: Path) -> None:
    """With 0 workers uninterrupted, and with 2 workers stopped mid-epoch and resumed: the same weights."""
    reference = in_memory_run(tiny_cohort, TrainSettings(**SETTINGS))
    result = train_model(tiny_cohort, "vae", settings=TrainSettings(**SETTINGS, workers=0), cache=tmp_path / "cache",
                         **TINY)
    weights = result.model.state_dict()
    for key, value in reference.items():
        assert torch.equal(weights[key], value), key
    stop = StopFlag()
    out = tmp_path / "cut.safetensors"

    def cancel(event: ProgressEvent) -> None:
        if event.stage == "train" and event.step == 3:
            stop.request()

    partial = train_model(tiny_cohort, "vae", out=out, settings=TrainSettings(**SETTINGS, workers=2), progress=cancel,
                          stop=stop, cache=tmp_path / "cache", **TINY)
    assert partial.stopped and partial.steps == 3
    resumed = train_model(tiny_cohort, "vae", out=out, settings=TrainSettings(**SETTINGS, workers=2), resume=True,
                          cache=tmp_path / "cache")
    assert not resumed.stopped and resumed.steps == result.steps
    weights = resumed.model.state_dict()
    for key, value in reference.items():
        assert torch.equal(weights[key], value), key


def test_validation_from_the_cache_equals_validation_in_memory(tiny_cohort: Path, tmp_path: Path) -> None:
    data = run_operation(iter_prepare_data(tiny_cohort, SliceSpec(size=32), 0.25, 0, cache=tmp_path / "cache"))
    model = _prepare_model("vae", dict(TINY), 0)
    objective = _build_objective(model, TrainSettings(device="cpu"), DistributedContext(), torch.device("cpu"))
    in_memory = data.validation.images
    for batch_size in (64, 7):
        streamed = validation_metrics(objective, data.validation, torch.device("cpu"), batch_size=batch_size)
        assert streamed == validation_metrics(objective, in_memory, torch.device("cpu"), batch_size=batch_size)
    with torch.no_grad():
        errors = (model.decode(model.encode(in_memory)) - in_memory).pow(2).flatten(1).mean(1)
    assert streamed["val_mse"] == pytest.approx(float(errors.mean()), rel=1e-5)
    assert streamed["val_psnr"] == pytest.approx(float((10 * torch.log10(4.0 / errors)).mean()), rel=1e-5)


def test_workers_default_to_none_on_the_cpu_and_some_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_workers(torch.device("cpu")) == 0
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert default_workers(torch.device("cuda", 0)) == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert default_workers(torch.device("cuda", 0)) == 1
    with pytest.raises(Exception, match="workers"):
        TrainSettings(workers=-1).validate()
