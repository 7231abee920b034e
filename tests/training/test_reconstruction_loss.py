"""The autoencoders' reconstruction loss: squared error plus an optional SSIM term."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from napari_latent.errors import UserInputError
from napari_latent.metrics import ssim
from napari_latent.models.base import build_model
from napari_latent.training import TrainSettings, train_model
from napari_latent.training.objectives.reconstruction import reconstruction_error


def test_without_a_weight_the_error_is_the_sum_of_squares() -> None:
    torch.manual_seed(0)
    images = torch.rand(4, 1, 32, 32) * 2 - 1
    recon = images + 0.1 * torch.randn_like(images)
    error, sse = reconstruction_error(recon, images)
    assert error is sse
    assert sse.item() == pytest.approx(((recon - images) ** 2).sum().item() / 4, rel=1e-5)


def test_the_ssim_term_is_weighted_per_pixel_and_has_a_gradient() -> None:
    torch.manual_seed(0)
    images = torch.rand(4, 1, 32, 32) * 2 - 1
    recon = (images + 0.2 * torch.randn_like(images)).requires_grad_(True)
    error, sse = reconstruction_error(recon, images, ssim_weight=0.5)
    expected = sse + 0.5 * 1024 * (1 - ssim(recon.detach(), images))
    assert error.item() == pytest.approx(expected.item(), rel=1e-5)
    error.backward()
    plain = recon.detach().clone().requires_grad_(True)
    reconstruction_error(plain, images)[0].backward()
    assert recon.grad is not None and not torch.allclose(recon.grad, plain.grad)  # the SSIM term pulls too
    same, _ = reconstruction_error(images, images, ssim_weight=0.5)
    assert same.item() == pytest.approx(0.0, abs=1e-3)


@pytest.mark.parametrize("family, extra", [("vae", {"latent_dim": 8}), ("introvae", {"latent_dim": 8}),
                                           ("vqvae", {"latent_resolution": 8, "codebook_size": 16})])
def test_every_autoencoder_trains_with_the_ssim_term(family: str, extra: dict, tiny_cohort: Path) -> None:
    settings = TrainSettings(epochs=1, batch_size=16, device="cpu", augment_rotation=0.0, augment_scale=0.0)
    result = train_model(tiny_cohort, family, settings=settings, image_size=32, base_channels=8, max_channels=32,
                         ssim_weight=0.5, **extra)
    assert result.model.config.ssim_weight == 0.5
    row = result.history[-1]
    loss = row["loss"] if "loss" in row else row["loss_decoder"]
    assert torch.isfinite(torch.tensor(loss)) and loss > row["mse"]  # the SSIM term is in the loss, not the MSE


@pytest.mark.parametrize("family", ["vae", "introvae", "vqvae"])
def test_a_negative_ssim_weight_is_refused(family: str) -> None:
    with pytest.raises(UserInputError, match="SSIM weight must be non-negative"):
        build_model(family, image_size=32, ssim_weight=-1.0)


@pytest.mark.parametrize("family", ["vae", "vqvae"])
def test_the_ssim_weight_does_not_change_the_fingerprint(family: str) -> None:
    """A loss weight is not the model: codes saved before the setting existed still match (the weights decide)."""
    from napari_latent.models.base import model_fingerprint

    torch.manual_seed(0)
    plain = build_model(family, image_size=32)
    torch.manual_seed(0)
    weighted = build_model(family, image_size=32, ssim_weight=0.1)
    assert model_fingerprint(plain) == model_fingerprint(weighted)
    with torch.no_grad():
        next(weighted.parameters()).add_(1.0)
    assert model_fingerprint(plain) != model_fingerprint(weighted)
