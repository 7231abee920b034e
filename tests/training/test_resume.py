"""Resume rules: the same number of processes, the checkpoint's settings kept, ignored settings named."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import pytest

from napari_latent.errors import UserInputError
from napari_latent.models.checkpoint import read_checkpoint
from napari_latent.training import TrainSettings, train_model
from napari_latent.training.settings import RESUME_OVERRIDES, ResumeWarning, resume_settings

TINY = {"image_size": 32, "latent_dim": 8, "base_channels": 8, "max_channels": 32}
FAST = {"batch_size": 16, "device": "cpu", "augment_rotation": 0.0, "augment_scale": 0.0, "lr": 2e-3}


@pytest.fixture(scope="module")
def one_epoch(tiny_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny VAE run of one epoch, its checkpoint resumable."""
    out = tmp_path_factory.mktemp("resume") / "vae.safetensors"
    train_model(tiny_cohort, "vae", out=out, settings=TrainSettings(epochs=1, **FAST), **TINY)
    return out


def test_resume_refuses_another_number_of_processes(one_epoch: Path, tiny_cohort: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.distributed as dist

    def never(**kwargs: object) -> None:
        raise AssertionError("the check must come before joining any process group")

    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(one_epoch.read_bytes())
    monkeypatch.setattr(dist, "init_process_group", never)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(UserInputError, match=r"trained by 1 process\(es\) and cannot be resumed by 2"):
        train_model(tiny_cohort, "vae", out=copy, settings=TrainSettings(epochs=2, device="cpu"), resume=True)
    assert copy.read_bytes() == one_epoch.read_bytes()


def test_resume_keeps_its_settings_and_warns_about_each_one_ignored(one_epoch: Path, tiny_cohort: Path,
                                                                   tmp_path: Path) -> None:
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(one_epoch.read_bytes())
    steps_per_epoch = read_checkpoint(one_epoch, device="cpu").training["steps"]
    given = TrainSettings(epochs=2, batch_size=8, lr=1e-2, device="cpu", augment_rotation=0.0, augment_scale=0.0,
                          checkpoint_every=3, precision="fp32")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train_model(tiny_cohort, "vae", out=copy, settings=given, resume=True)
    messages = sorted(str(w.message) for w in caught if issubclass(w.category, ResumeWarning))
    assert messages == ["resume ignores batch_size=8: the run keeps its batch_size=16",
                        "resume ignores lr=0.01: the run keeps its lr=0.002"]
    assert result.steps == 2 * steps_per_epoch  # still batches of 16
    settings = read_checkpoint(copy, device="cpu").training["settings"]
    assert (settings["batch_size"], settings["lr"], settings["epochs"]) == (16, 2e-3, 2)
    assert (settings["checkpoint_every"], settings["precision"]) == (3, "fp32")  # how to run: taken


def test_resume_settings_rules() -> None:
    saved = TrainSettings(epochs=10, batch_size=16, lr=2e-3, seed=4, grad_clip=1.0, checkpoint_every=100)
    given = TrainSettings(epochs=5, device="cpu", compile=True, precision="bf16", tensorboard="tb", log_every=3)
    merged, ignored = resume_settings(given, saved)
    assert merged == dataclasses.replace(saved, device="cpu", compile=True, precision="bf16", tensorboard="tb",
                                         log_every=3, checkpoint_every=500)
    assert [i.name for i in ignored] == ["epochs"]  # 5 differs from the default 20 and cannot lower 10
    assert ignored[0].message() == ("resume ignores epochs=5: the run already trains for 10 epochs "
                                    "(epochs can only be raised)")
    assert set(RESUME_OVERRIDES) >= {"device", "precision", "compile", "tensorboard"}
    # a setting typed on purpose is named even when it is the default (the command line knows)
    merged, ignored = resume_settings(TrainSettings(epochs=12, batch_size=32, seed=4), saved,
                                      explicit=["epochs", "batch_size", "seed"])
    assert merged.epochs == 12 and merged.batch_size == 16
    assert [(i.name, i.given, i.kept) for i in ignored] == [("batch_size", 32, 16)]
    merged, ignored = resume_settings(TrainSettings(epochs=20), saved, explicit=[])  # --epochs not typed
    assert merged.epochs == 10 and ignored == []
    assert resume_settings(TrainSettings(), saved)[1] == []  # defaults only: nothing to say


def test_old_checkpoints_amp_flag_reads_as_a_precision() -> None:
    assert TrainSettings.from_json({"amp": False, "epochs": 3}).precision == "fp32"
    assert TrainSettings.from_json({"amp": True}).precision == "auto"
    assert TrainSettings.from_json({"amp": False, "precision": "bf16"}).precision == "bf16"
    with pytest.raises(UserInputError, match="unknown precision"):
        TrainSettings(precision="fp8").validate()
    with pytest.raises(UserInputError, match="logging interval"):
        TrainSettings(log_every=0).validate()
