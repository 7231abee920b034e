"""A wall-clock budget ends the run at a step, with the partial epoch validated and saved as final."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from napari_latent.cli import main
from napari_latent.errors import UserInputError
from napari_latent.models.checkpoint import read_checkpoint
from napari_latent.training import TrainSettings, train_model

TINY = {"image_size": 32, "latent_dim": 8, "base_channels": 8, "max_channels": 32}
FAST = {"batch_size": 4, "device": "cpu", "augment_rotation": 0.0, "augment_scale": 0.0}


def test_time_limit_ends_the_run_early_with_a_validated_final_checkpoint(tiny_cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "vae.safetensors"
    start = time.monotonic()
    result = train_model(tiny_cohort, "vae", out=out, settings=TrainSettings(epochs=10_000, time_limit=0.02, **FAST),
                         **TINY)
    elapsed = time.monotonic() - start
    assert result.time_limited and not result.stopped
    assert 1 <= result.epochs_completed < 10_000
    assert elapsed < 60  # 1.2 s of steps, then one validation pass
    assert "val_mse" in result.final_metrics and result.history[-1]["val_mse"] == result.final_metrics["val_mse"]
    saved = read_checkpoint(out, device="cpu")
    assert saved.training["completed"] is True
    assert saved.training["epochs"] == result.epochs_completed
    assert saved.training["settings"]["time_limit"] == 0.02


def test_without_a_time_limit_the_run_trains_its_epochs(tiny_cohort: Path) -> None:
    result = train_model(tiny_cohort, "vae", settings=TrainSettings(epochs=2, **{**FAST, "batch_size": 64}), **TINY)
    assert not result.time_limited and result.epochs_completed == 2


@pytest.mark.parametrize("minutes", [0.0, -1.0])
def test_a_time_limit_must_be_positive(minutes: float) -> None:
    with pytest.raises(UserInputError, match="time limit must be positive"):
        TrainSettings(time_limit=minutes).validate()


def test_cli_time_limit(tiny_cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.safetensors"
    code = main(["train", str(tiny_cohort), "--model", "vae", "--size", "32", "--latent-dim", "8", "--set",
                 "base_channels=8", "--epochs", "10000", "--time-limit", "0.02", "--batch-size", "4", "--no-augment",
                 "--out", str(out), "--quiet"])
    assert code == 0
    assert capsys.readouterr().out.startswith("time limit reached: ")
    assert read_checkpoint(out, device="cpu").training["completed"] is True
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(tiny_cohort), "--model", "vae", "--time-limit", "0", "--out",
              str(tmp_path / "x.safetensors")])
    assert exit_info.value.code == 2
    assert "--time-limit: expected a positive number" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()
