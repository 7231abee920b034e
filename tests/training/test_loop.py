"""The training engine: losses fall, cancel keeps a checkpoint, resume equals an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from napari_latent.errors import CheckpointError, DataError, UserInputError
from napari_latent.models.checkpoint import load_model, read_checkpoint
from napari_latent.progress import ProgressEvent, StopFlag, run_operation
from napari_latent.training import TrainSettings, iter_prepare_data, iter_train, split_subjects, train_model
from napari_latent.training.data import Augmentation
from napari_latent.volumes import SliceSpec

TINY = {"image_size": 32, "latent_dim": 8, "base_channels": 8, "max_channels": 32}
FAST = {"batch_size": 16, "device": "cpu", "augment_rotation": 0.0, "augment_scale": 0.0, "lr": 2e-3}


def mean_image_baseline(data) -> float:
    """MSE of predicting the mean training image for every validation image."""
    mean = data.train.images.mean(0, keepdim=True)
    return float((data.validation.images - mean).pow(2).mean())


def test_vae_losses_fall_and_validation_beats_the_mean_image(tiny_cohort: Path, tmp_path: Path) -> None:
    data = run_operation(iter_prepare_data(tiny_cohort, SliceSpec(size=32), val_fraction=0.25, seed=0))
    result = train_model(data, "vae", out=tmp_path / "vae.safetensors", settings=TrainSettings(epochs=6, **FAST),
                         **TINY)
    first, last = result.history[0], result.history[-1]
    assert last["loss"] < first["loss"]
    assert last["val_mse"] < 0.8 * first["val_mse"]
    assert last["val_mse"] < mean_image_baseline(data)
    assert result.path is not None and result.path.is_file()
    assert result.final_metrics["val_mse"] == pytest.approx(last["val_mse"])
    model = load_model(result.path, device="cpu")
    assert model.training_info["completed"] is True
    assert model.training_info["data_fingerprint"] == data.fingerprint


def test_events_report_progress_rate_and_validation(tiny_cohort: Path) -> None:
    events: list[ProgressEvent] = []
    train_model(tiny_cohort, "vae", settings=TrainSettings(epochs=2, preview_every=2, **FAST), progress=events.append,
                **TINY)
    stages = {e.stage for e in events}
    assert stages == {"data", "train", "validate"}
    train = [e for e in events if e.stage == "train"]
    assert train[-1].step == train[-1].total
    assert {"loss", "mse", "kl", "images_per_s", "eta_s", "epoch"} <= set(train[-1].metrics)
    assert any(e.preview is not None for e in train)
    validate = [e for e in events if e.stage == "validate"]
    assert len(validate) == 2 and "val_mse" in validate[0].metrics
    assert validate[0].preview.shape[1] == 32 * 8 or validate[0].preview.ndim == 2


def test_split_is_by_subject_and_deterministic() -> None:
    train, val = split_subjects(10, 0.2, seed=3)
    assert len(val) == 2 and not set(train) & set(val)
    assert (train, val) == split_subjects(10, 0.2, seed=3)
    assert split_subjects(10, 0.2, seed=4) != (train, val)
    assert split_subjects(1, 0.5, seed=0) == ([0], [])
    with pytest.raises(UserInputError):
        split_subjects(4, 1.0, seed=0)


def test_no_subject_has_slices_in_both_sets(tiny_cohort: Path) -> None:
    data = run_operation(iter_prepare_data(tiny_cohort, SliceSpec(size=32), val_fraction=0.25, seed=1))
    assert set(data.train.names).isdisjoint(data.validation.names)
    assert len(data.validation.names) == 2 and len(data.train.names) == 6


def test_cancel_leaves_a_checkpoint_and_resume_matches_an_uninterrupted_run(tiny_cohort: Path,
                                                                              tmp_path: Path) -> None:
    settings = {"epochs": 3, "checkpoint_every": 3, "batch_size": 16, "device": "cpu", "augment_rotation": 4.0,
                    "augment_scale": 0.05, "seed": 5}
    data = run_operation(iter_prepare_data(tiny_cohort, SliceSpec(size=32), val_fraction=0.25, seed=5))
    full = train_model(data, "vae", out=tmp_path / "full.safetensors", settings=TrainSettings(**settings), **TINY)

    stop = StopFlag()
    cut = tmp_path / "cut.safetensors"

    def cancel_midway(event: ProgressEvent) -> None:
        if event.stage == "train" and event.step == 7:  # in the middle of an epoch
            stop.request()

    partial = train_model(data, "vae", out=cut, settings=TrainSettings(**settings), progress=cancel_midway,
                          stop=stop, **TINY)
    assert partial.stopped and partial.steps == 7
    saved = read_checkpoint(cut, device="cpu")
    assert saved.state is not None and saved.state["step"] == 7
    assert saved.training["completed"] is False

    resumed = train_model(data, "vae", out=cut, settings=TrainSettings(**settings), resume=True)
    assert resumed.steps == full.steps and not resumed.stopped
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=key)
    assert [h["step"] for h in resumed.history] == [h["step"] for h in full.history]


def test_resume_refuses_missing_or_other_data(tiny_cohort: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train_model(tiny_cohort, "vae", out=tmp_path / "none.safetensors", resume=True)
    out = tmp_path / "m.safetensors"
    train_model(tiny_cohort, "vae", out=out, settings=TrainSettings(epochs=1, **FAST), **TINY)
    other = tmp_path / "other"
    from napari_latent.volumes.phantoms import make_phantom_cohort

    make_phantom_cohort(other, n_subjects=3, size=32, seed=99)
    with pytest.raises(DataError, match="same data"):
        train_model(other, "vae", out=out, settings=TrainSettings(epochs=2, **FAST), resume=True)


def test_bad_settings_and_data(tmp_path: Path, tiny_cohort: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="empty"):
        train_model(empty, "vae", **TINY)
    with pytest.raises(UserInputError, match="epochs"):
        train_model(tiny_cohort, "vae", settings=TrainSettings(epochs=0), **TINY)
    with pytest.raises(UserInputError, match="not supported"):
        train_model(tiny_cohort, "vae", image_size=48)
    with pytest.raises(UserInputError, match="does not match the model's image size"):
        train_model(tiny_cohort, "vae", spec=SliceSpec(size=64), **TINY)
    with pytest.raises(UserInputError, match=r"\.safetensors"):
        next(iter_train(tiny_cohort, "vae", out=tmp_path / "m.pt", **TINY))


def test_augmentation_is_seeded_and_keeps_background() -> None:
    images = torch.full((4, 1, 32, 32), -1.0)
    images[:, :, 8:24, 8:24] = 1.0
    augment = Augmentation(rotation=10.0, scale=0.1)
    a = augment(images, torch.Generator().manual_seed(1))
    b = augment(images, torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, images)
    assert float(a[:, :, 0, 0].max()) == pytest.approx(-1.0)  # corners stay background
    assert Augmentation(0.0, 0.0)(images, torch.Generator()) is images
