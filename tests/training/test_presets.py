"""Training presets: every recipe builds and validates; names, families and sizes are checked; the CLI applies them."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_latent.cli import main
from napari_latent.errors import UserInputError
from napari_latent.models.base import build_model, trainable_model_names
from napari_latent.models.checkpoint import read_checkpoint
from napari_latent.training.presets import PRESET_NAMES, PRESET_SIZES, PRESETS, preset_families, training_preset


def _parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("family", ["vae", "introvae", "vqvae", "dcgan", "stylegan"])
@pytest.mark.parametrize("size", PRESET_SIZES)
def test_every_preset_builds_and_quality_is_at_least_fast(family: str, size: int) -> None:
    fast, quality = (training_preset(family, name, size) for name in PRESET_NAMES)
    for preset in (fast, quality):
        preset.settings(device="cpu").validate()
        model = build_model(family, **preset.model_settings())
        assert model.image_size == size and preset.family == family and preset.summary
        for key, value in preset.model.items():
            assert getattr(model.config, key) == value
    # more capacity: a bigger network, or a bigger latent (a VQ-VAE's finer code map has fewer layers)
    big, small = build_model(family, **quality.model_settings()), build_model(family, **fast.model_settings())
    assert big.config.latent_dim >= small.config.latent_dim
    assert _parameters(big) >= _parameters(small) or big.config.latent_dim > small.config.latent_dim
    # and more training, unless the network is wider at full resolution, where the compute is (the VAE at 128
    # px: 2 epochs of twice the channels fill the 15 minutes)
    assert quality.train["epochs"] > fast.train["epochs"] or big.config.base_channels > small.config.base_channels


def test_the_table_covers_every_trainable_builtin_family() -> None:
    builtin = {"vae", "introvae", "vqvae", "dcgan", "stylegan"}
    assert builtin <= set(trainable_model_names())
    assert set(preset_families()) == builtin
    assert len(PRESETS) == len(builtin) * len(PRESET_NAMES) * len(PRESET_SIZES)
    assert training_preset("vqvae", "quality", 128).model["latent_resolution"] == 32


def test_overrides_win() -> None:
    preset = training_preset("vae", "quality", 64)
    assert preset.settings(epochs=2).epochs == 2 and preset.settings().epochs == preset.train["epochs"]
    assert preset.model_settings(beta=1.0)["beta"] == 1.0 and preset.model_settings()["image_size"] == 64
    assert preset.to_json()["model"] == preset.model


@pytest.mark.parametrize("args, message", [
    (("vae", "best", 64), "unknown preset 'best'"),
    (("monai-vqvae", "fast", 64), "no presets for the 'monai-vqvae' model"),
    (("vae", "fast", 256), "made for 64 and 128 pixels, not 256"),
])
def test_unknown_presets_are_refused_plainly(args, message: str) -> None:
    with pytest.raises(UserInputError, match=message):
        training_preset(*args)


def test_train_preset_on_the_command_line(tiny_cohort: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "vq.safetensors"
    assert main(["train", str(tiny_cohort), "--model", "vqvae", "--size", "64", "--preset", "fast", "--epochs", "1",
                 "--set", "base_channels=8", "--set", "max_channels=16", "--batch-size", "16", "--device", "cpu",
                 "--quiet", "--out", str(out)]) == 0
    assert "preset fast for vqvae at 64 px" in capsys.readouterr().err
    checkpoint = read_checkpoint(out, device="cpu", with_state=False)
    config = checkpoint.model.config
    assert config.latent_resolution == 16 and config.base_channels == 8  # the preset's, and the typed --set
    assert checkpoint.training["epochs"] == 1  # typed --epochs wins over the preset's 5


@pytest.mark.parametrize("extra, message", [
    (["--preset", "fast", "--resume"], "--preset sets up a new run"),
    (["--preset", "quality", "--size", "256"], "made for 64 and 128 pixels"),
])
def test_bad_preset_options_exit_2(tiny_cohort: Path, tmp_path: Path, capsys, extra, message: str) -> None:
    out = tmp_path / "m.safetensors"
    assert main(["train", str(tiny_cohort), "--model", "vae", "--out", str(out), "--quiet", *extra]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1
    assert not out.exists()
