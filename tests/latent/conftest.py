"""A briefly trained tiny model shared by the latent-space tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_latent.training import TrainSettings, train_model

TINY_VAE = {"image_size": 32, "latent_dim": 8, "base_channels": 8, "max_channels": 32}


@pytest.fixture(scope="session")
def tiny_vae(tiny_cohort: Path, tmp_path_factory):
    """A tiny VAE trained for a few epochs on the tiny phantom cohort (saved, then loaded)."""
    from napari_latent.models.checkpoint import load_model

    out = tmp_path_factory.mktemp("models") / "tiny_vae.safetensors"
    train_model(tiny_cohort, "vae", out=out, settings=TrainSettings(epochs=10, batch_size=16, device="cpu", lr=2e-3,
                                                                    augment_rotation=0.0, augment_scale=0.0),
                **TINY_VAE)
    return load_model(out, device="cpu")
