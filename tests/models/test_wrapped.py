"""napari_latent.models.wrap: a user's own decoder and encoder in the analysis functions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import napari_latent as nl
from napari_latent.errors import CheckpointError, UserInputError
from napari_latent.models import wrap
from napari_latent.models.checkpoint import save_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SIZE, DIM = 32, 8


class Decoder(nn.Module):
    """Codes to 32-pixel images in [0, 1] (a sigmoid output)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(DIM, 16 * 8 * 8)
        self.up = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(16, 8, 4, 2, 1), nn.ReLU(),
                                nn.ConvTranspose2d(8, 1, 4, 2, 1), nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.up(self.fc(z).view(-1, 16, 8, 8))


def encoder() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 4, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 4, 2, 1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(16 * 8 * 8, DIM))


@pytest.fixture(scope="module")
def volume() -> nl.Volume:
    phantom = nl.make_phantom(size=32, seed=3)
    return nl.Volume(phantom.image, phantom.affine, name="phantom32")


def test_wrapped_model_runs_the_analysis(volume: nl.Volume) -> None:
    torch.manual_seed(0)
    dec = Decoder()
    model = wrap(dec, encoder(), image_size=SIZE, latent_dim=DIM, output_range=(0.0, 1.0), first_layer=dec.fc,
                 name="my-ae")
    assert model.name == "my-ae" and model.has_encoder and model.fingerprint and not model.trainable()
    codes = torch.randn(3, DIM)
    with torch.no_grad():
        torch.testing.assert_close(model.decode(codes), dec(codes) * 2 - 1)
    inverted = nl.invert(model, volume, "hybrid", steps=2)
    assert inverted.codes.shape[1] == DIM and inverted.model_name == "my-ae"
    for method, settings in (("pca", {"samples": 32}), ("sefa", {}), ("jacobian", {"iterations": 3})):
        directions = nl.discover(model, method, count=2, **settings)
        assert directions.vectors.shape == (2, DIM)
    traversal = nl.traverse(model, inverted, directions, "-2:2:3", index=0, source=volume)
    assert np.isfinite(traversal.images).all()
    assert nl.eigencomponents(traversal, n_components=2).maps.shape == (2, *volume.data.shape)


def test_decoder_only_with_a_latent_map(volume: nl.Volume) -> None:
    conv = nn.Sequential(nn.ConvTranspose2d(2, 1, 4, 2, 1), nn.Upsample(scale_factor=2), nn.Tanh())
    model = wrap(conv, image_size=SIZE, latent_dim=2 * 8 * 8, latent_shape=(2, 8, 8))
    assert not model.has_encoder and model.latent_shape() == (2, 8, 8)
    with pytest.raises(UserInputError, match="no encoder"):
        nl.invert(model, volume, "encoder")
    codes = nl.invert(model, volume, "optimize", steps=2)
    assert codes.codes.shape[1] == 128
    with pytest.raises(UserInputError, match="linear first layer"):
        nl.discover(model, "sefa", count=2)


def test_wrapped_model_cannot_be_saved(tmp_path: Path) -> None:
    model = wrap(Decoder(), image_size=SIZE, latent_dim=DIM, output_range=(0, 1))
    with pytest.raises(CheckpointError, match=r"not a registered model family.*register_model") as info:
        save_checkpoint(tmp_path / "wrapped.safetensors", model)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "wrapped.safetensors").exists()


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"latent_dim": 4}, "the decoder fails on codes of shape \\(2, 4\\)"),
    ({"image_size": 64}, r"to \(2, 1, 32, 32\); it must return \(n, 1, 64, 64\)"),
    ({"image_size": 48}, "image size 48 is not supported"),
    ({"encoder": nn.Linear(3, 3)}, "the encoder fails on images"),
    ({"encoder": nn.Sequential(nn.Flatten(), nn.Linear(SIZE * SIZE, 5))}, "must return n codes of latent_dim=8"),
    ({"output_range": (1, 0)}, "low < high"),
    ({"latent_shape": (3, 3)}, "does not hold latent_dim 8"),
    ({"first_layer": torch.zeros(4, 3)}, "first_layer"),
])
def test_wrap_checks_by_a_dry_run(kwargs: dict, match: str) -> None:
    settings = {"image_size": SIZE, "latent_dim": DIM, **kwargs}
    with pytest.raises(UserInputError, match=match) as info:
        wrap(Decoder(), **settings)
    assert "\n" not in str(info.value)
