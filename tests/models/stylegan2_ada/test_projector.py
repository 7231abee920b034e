"""The ``projector`` inversion method (the official StyleGAN2 projector's recipe) on a tiny stylegan2-ada."""

from __future__ import annotations

import pytest
import torch

import napari_latent as nl
from napari_latent.errors import UserInputError
from napari_latent.latent.inversion import InversionSettings, iter_project_codes, noise_autocorrelation
from napari_latent.models.base import build_model
from napari_latent.progress import run_operation

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("stylegan2-ada", image_size=32, base_channels=8, max_channels=16, latent_dim=8, w_dim=8,
                       mapping_layers=2, discriminator=False).eval()


def test_the_noise_penalty_is_small_for_white_noise_and_large_for_smooth_maps() -> None:
    white = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    smooth = torch.ones(1, 1, 32, 32)
    assert noise_autocorrelation(white).shape == (2,)
    assert float(noise_autocorrelation(white).max()) < 0.01 < float(noise_autocorrelation(smooth)[0])


def test_projection_improves_on_the_start_and_ignores_the_batch(model) -> None:
    targets = model.decode(model.sample_latent(3, torch.Generator().manual_seed(5), "w"), "w").detach()
    start = model.mean_latent("w").expand(3, -1).clone()
    settings = InversionSettings(steps=12, batch_size=3, noise_regularization=1e5)
    codes = run_operation(iter_project_codes(model, targets, start, settings, w_std=1.0, keys=[0, 1, 2]), None)
    with torch.no_grad():
        before = (model.decode(start, "w") - targets).square().mean()
        after = (model.decode(codes, "w") - targets).square().mean()
    assert codes.shape == (3, 8) and after < before
    settings.batch_size = 1  # one slice per batch: the same codes (each slice has its own streams)
    alone = run_operation(iter_project_codes(model, targets[1:2], start[1:2], settings, w_std=1.0, keys=[1]), None)
    assert torch.allclose(alone, codes[1:2], atol=1e-4)
    assert all(p.requires_grad for p in model.parameters())


def test_the_projector_inverts_volumes_in_w(model) -> None:
    phantom = nl.make_phantom(size=32, seed=3)
    volume = nl.Volume(phantom.image, phantom.affine, name="phantom32")
    codes = nl.invert(model, volume, "projector", steps=2)
    assert codes.space == "w" and codes.method == "projector" and codes.codes.shape[1] == 8
    assert codes.settings["noise_regularization"] == 1e5
    with pytest.raises(UserInputError, match="space 'w'"):
        nl.invert(model, volume, "projector", space="w+", steps=1)
    vae = build_model("vae", image_size=32, base_channels=8, max_channels=32, latent_dim=8)
    with pytest.raises(UserInputError, match="needs a model with a w space") as info:
        nl.invert(vae, volume, "projector", steps=1)
    assert "\n" not in str(info.value)
