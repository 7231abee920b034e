"""Voynov & Babenko: deformator forms, learning on a known generator, resuming, stopping, errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from torch import nn

from napari_latent.container import HEADER_KEY
from napari_latent.errors import UserInputError
from napari_latent.latent.discovery import discover, iter_discover, method_names, method_settings
from napari_latent.latent.discovery.voynov import Deformator, make_shifts
from napari_latent.latent.inversion import latent_statistics
from napari_latent.models.base import GenerativeModel, ModelConfig, build_model, model_fingerprint
from napari_latent.progress import StopFlag, run_operation

FAST = {"batch_size": 8, "eval_samples": 0}


class Blobs(GenerativeModel):
    """A known generator: ``tanh(0.3 * sum_i c_i B_i)``, blob ``B_i`` of dimension ``i`` on a ring.

    Dimensions from ``live`` on have a zero blob: they do not change the image at all.
    """

    name = "blobs"

    def __init__(self, dim: int = 8, live: int = 4, size: int = 32) -> None:
        super().__init__(ModelConfig(image_size=size, latent_dim=dim, base_channels=1, max_channels=1))
        grid = torch.linspace(-1, 1, size)
        yy, xx = torch.meshgrid(grid, grid, indexing="ij")
        angles = torch.arange(dim) * (2 * torch.pi / live)
        cx, cy = 0.55 * torch.cos(angles)[:, None, None], 0.55 * torch.sin(angles)[:, None, None]
        blobs = torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.04)
        blobs[live:] = 0.0
        self.blobs = nn.Parameter(blobs)
        self.fingerprint = model_fingerprint(self)

    def decode(self, codes: torch.Tensor, space: str | None = None) -> torch.Tensor:
        codes = self.check_codes(codes, space)
        return torch.tanh(0.3 * torch.einsum("nd,dhw->nhw", codes, self.blobs))[:, None]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one torch thread is faster, and much steadier on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def blobs() -> Blobs:
    return Blobs()


def live_energy(vectors: torch.Tensor, live: int = 4) -> torch.Tensor:
    """Fraction of each unit direction's squared length on the dimensions that change the image."""
    return (vectors[:, :live] ** 2).sum(1)


def test_registered_with_its_settings() -> None:
    assert "voynov" in method_names()
    assert {"deformator", "reconstructor", "shift_range", "min_shift", "state", "eval_samples"} <= set(
        method_settings("voynov"))


def test_training_finds_the_live_dimensions_and_lifts_rca_above_chance(blobs: Blobs) -> None:
    settings = {"count": 4, "batch_size": 16, "lr": 0.1, "reconstructor_lr": 1e-3, "eval_samples": 128}
    untrained = discover(blobs, "voynov", steps=0, **settings)
    trained = discover(blobs, "voynov", steps=80, **settings)
    assert untrained.info["rca"] < 0.4 and untrained.info["chance"] == 0.25
    assert trained.info["rca"] > 0.75, trained.scores["rca"]
    assert min(trained.scores["rca"]) > 0.5
    # the deformator moved its (random) frame into the 4 dimensions that change the image
    assert float(live_energy(untrained.vectors).mean()) < 0.7
    assert float(live_energy(trained.vectors).mean()) > 0.85, live_energy(trained.vectors)
    assert trained.scores["rca"] == sorted(trained.scores["rca"], reverse=True)
    assert sorted(trained.info["deformator_column"]) == [0, 1, 2, 3]
    assert set(trained.scores) == {"rca", "shift_error", "image_change"}
    assert trained.code_std == [1.0] * 4 and trained.info["shift_unit"] == 1.0
    assert trained.method == "voynov" and trained.model_fingerprint == blobs.fingerprint


def test_deformator_forms() -> None:
    torch.manual_seed(0)
    indices, shifts = torch.tensor([0, 1, 2, 2]), torch.tensor([1.5, -2.0, 0.5, -6.0])
    for kind in ("linear", "proj", "orthonormal"):
        deformator = Deformator(kind, 6, 3)
        with torch.no_grad():
            deformator.weight.mul_(torch.tensor([0.2, 3.0, 1.7]))  # columns of very different lengths
        moved = deformator(indices, shifts)
        columns = deformator.matrix()
        assert torch.allclose(moved, columns.T[indices] * shifts[:, None])
        if kind == "linear":
            assert torch.allclose(columns, deformator.weight)
        else:
            assert torch.allclose(moved.norm(dim=1), shifts.abs(), atol=1e-5)  # |eps| whatever the weights
        if kind == "orthonormal":
            assert torch.allclose(columns.T @ columns, torch.eye(3), atol=1e-5)
    with pytest.raises(UserInputError, match="at most"):
        Deformator("orthonormal", 3, 4)


def test_shifts_follow_the_official_make_shifts() -> None:
    indices, shifts = make_shifts(5, 4000, 6.0, 0.5, torch.Generator().manual_seed(1))
    assert set(indices.tolist()) == set(range(5))
    assert float(shifts.abs().min()) == 0.5 and float(shifts.abs().max()) <= 6.0
    assert 0.4 < float((shifts > 0).float().mean()) < 0.6
    assert 0.03 < float((shifts.abs() == 0.5).float().mean()) < 0.14  # |2u - 1| * 6 < 0.5: probability 1/12


@pytest.mark.parametrize("kind", ["orthonormal", "proj", "linear"])
def test_every_deformator_gives_unit_directions(blobs: Blobs, kind: str) -> None:
    found = discover(blobs, "voynov", count=3, steps=3, deformator=kind, lr=0.05, **FAST)
    assert found.vectors.shape == (3, 8) and not found.scores
    assert torch.allclose(found.vectors.norm(dim=1), torch.ones(3), atol=1e-6)
    if kind == "orthonormal":
        assert torch.allclose(found.vectors @ found.vectors.T, torch.eye(3), atol=1e-5)
    assert ("column_norm" in found.info) == (kind == "linear")
    assert found.info["deformator_column"] == [0, 1, 2] and found.settings["deformator"] == kind


def test_resumed_run_matches_an_uninterrupted_one(blobs: Blobs, tmp_path) -> None:
    settings = {"count": 3, "steps": 10, "batch_size": 8, "lr": 0.05, "reconstructor_lr": 1e-3, "eval_samples": 24,
                "save_every": 4}
    whole = discover(blobs, "voynov", **settings)
    state = tmp_path / "voynov.safetensors"
    stop = StopFlag()

    def stop_at_six(event) -> None:
        if event.stage == "discover" and event.step == 6:
            stop.request()

    first = run_operation(iter_discover(blobs, "voynov", stop=stop, state=state, **settings), stop_at_six)
    assert first.info["steps_done"] == 6 and state.is_file()
    with safe_open(str(state), framework="pt", device="cpu") as handle:
        assert json.loads(handle.metadata()[HEADER_KEY])["step"] == 6
    resumed = discover(blobs, "voynov", state=state, **settings)
    assert resumed.info["resumed_from"] == 6 and resumed.info["steps_done"] == 10
    assert torch.allclose(resumed.vectors, whole.vectors, atol=1e-6)
    assert resumed.scores["rca"] == whole.scores["rca"]
    assert resumed.scores["shift_error"] == pytest.approx(whole.scores["shift_error"], abs=1e-5)
    with safe_open(str(state), framework="pt", device="cpu") as handle:
        assert json.loads(handle.metadata()[HEADER_KEY])["step"] == 10
    # other settings do not continue this state; a damaged file is a clear error
    with pytest.raises(UserInputError, match="other settings"):
        discover(blobs, "voynov", state=state, **{**settings, "shift_weight": 1.0})
    state.write_bytes(b"not a safetensors file")
    with pytest.raises(UserInputError, match="not a voynov state file"):
        discover(blobs, "voynov", state=state, **settings)


def test_stop_returns_the_directions_so_far_and_restores_the_model(blobs: Blobs) -> None:
    stop, events = StopFlag(), []

    def record(event) -> None:
        events.append(event)
        if event.step == 3:
            stop.request()

    blobs.train()
    found = run_operation(iter_discover(blobs, "voynov", stop=stop, count=2, steps=1000, **FAST), record)
    assert found.info["steps_done"] == 3 and len(found) == 2
    assert [e.step for e in events] == [1, 2, 3]
    assert all(e.stage == "discover" and e.total == 1000 for e in events)
    assert {"loss", "ce", "shift_l1", "accuracy"} <= set(events[-1].metrics)
    assert blobs.training and blobs.blobs.requires_grad


def test_bad_settings_are_user_errors(blobs: Blobs, tmp_path) -> None:
    with pytest.raises(UserInputError, match="only 8 dimensions"):
        discover(blobs, "voynov", count=9, steps=1, deformator="proj")
    with pytest.raises(UserInputError, match="unknown deformator"):
        discover(blobs, "voynov", count=2, deformator="fc")
    with pytest.raises(UserInputError, match="unknown reconstructor"):
        discover(blobs, "voynov", count=2, reconstructor="vgg")
    with pytest.raises(UserInputError, match=r"\.safetensors"):
        discover(blobs, "voynov", count=2, state=tmp_path / "state.pt")
    with pytest.raises(UserInputError, match="batch_size"):
        discover(blobs, "voynov", count=2, batch_size=1)


def test_stylegan_w_shifts_in_units_of_the_code_spread() -> None:
    torch.manual_seed(0)
    model = build_model("stylegan", image_size=32, base_channels=8, max_channels=32, latent_dim=16, w_dim=16,
                        mapping_layers=2)
    found = discover(model, "voynov", count=2, steps=2, reconstructor="resnet", batch_size=4, eval_samples=8)
    assert found.space == "w"
    assert found.info["shift_unit"] == pytest.approx(latent_statistics(model, "w")[1])
    assert found.info["shift_unit"] != 1.0 and all(s > 0 for s in found.code_std) and found.code_std != [1.0, 1.0]
    assert len(found.scores["rca"]) == 2 and 0.0 <= found.info["rca"] <= 1.0
