"""The DCGAN: generator and discriminator shapes, batch-independent decoding, its description, settings."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from napari_latent.errors import MismatchError, UserInputError
from napari_latent.models.base import build_model

TINY = {"image_size": 32, "latent_dim": 8, "base_channels": 8, "max_channels": 32}


@pytest.fixture(scope="module")
def dcgan():
    torch.manual_seed(0)
    return build_model("dcgan", **TINY).eval()


def codes(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 8, generator=torch.Generator().manual_seed(seed))


def test_description(dcgan) -> None:
    assert (dcgan.name, dcgan.family) == ("dcgan", "gan")
    assert dcgan.spaces == ("z",) and dcgan.analysis_space == "z"
    assert not dcgan.has_encoder and not dcgan.has_posterior
    with pytest.raises(UserInputError, match="'dcgan' has no encoder"):
        dcgan.encode(torch.zeros(1, 1, 32, 32))
    with pytest.raises(UserInputError, match="'dcgan' has no Gaussian posterior"):
        dcgan.posterior(torch.zeros(1, 1, 32, 32))


@pytest.mark.parametrize("size", [32, 64])
def test_generator_and_discriminator_shapes(size) -> None:
    model = build_model("dcgan", image_size=size, latent_dim=8, base_channels=4, max_channels=16).eval()
    with torch.no_grad():
        images = model.decode(codes(3))
        logits = model.discriminate(images)
    assert images.shape == (3, 1, size, size)
    assert images.min() >= -1 and images.max() <= 1
    assert logits.shape == (3,) and torch.isfinite(logits).all()


def test_decode_uses_running_statistics_in_any_mode_and_batch(dcgan) -> None:
    z = codes(6)
    with torch.no_grad():
        batch = dcgan.decode(z)
        dcgan.train()
        try:
            running = [m.running_mean.clone() for m in dcgan.modules() if isinstance(m, nn.BatchNorm2d)]
            alone = dcgan.decode(z[1:2])
            after = [m.running_mean.clone() for m in dcgan.modules() if isinstance(m, nn.BatchNorm2d)]
            assert dcgan.generator.training  # the mode is restored
            training = dcgan.generate_for_training(z, torch.Generator())
        finally:
            dcgan.eval()
    torch.testing.assert_close(alone, batch[1:2], atol=1e-5, rtol=0)
    assert all(torch.equal(a, b) for a, b in zip(running, after))  # decoding never updates the statistics
    assert not torch.allclose(training, batch, atol=1e-4)  # training mode normalises with the batch's statistics


def test_logits_are_per_image(dcgan) -> None:
    images = dcgan.decode(codes(4, 1)).detach()
    with torch.no_grad():
        together = dcgan.discriminate(images)
        alone = torch.cat([dcgan.discriminate(images[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(alone, together, atol=1e-5, rtol=1e-5)
    with pytest.raises(MismatchError, match=r"needs \(n, 1, 32, 32\)"):
        dcgan.discriminate(torch.zeros(2, 1, 16, 16))


def test_latent_weights_are_the_live_first_transposed_convolution() -> None:
    torch.manual_seed(1)
    model = build_model("dcgan", **TINY).eval()
    weights = model.latent_weights("z")
    assert weights.layout == "single"
    (matrix,) = weights.inputs
    first = model.generator.net[0]
    assert matrix.shape == (first.out_channels * 16, 8)
    # Replacing A by A @ M decodes z as the original model decodes M z: A is the first (linear) map on codes.
    mix = torch.randn(8, 8, generator=torch.Generator().manual_seed(2))
    z = codes(4, 3)
    with torch.no_grad():
        expected = model.decode(z @ mix.T)
        matrix.copy_(matrix @ mix)
        got = model.decode(z)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_prior_and_mean_latent(dcgan) -> None:
    assert dcgan.prior("z").standard_normal
    mean = dcgan.mean_latent("z", samples=512)
    assert mean.shape == (1, 8) and mean.abs().max() < 4 / math.sqrt(512)


def test_initial_weights_follow_radford() -> None:
    model = build_model("dcgan", image_size=32, latent_dim=64, base_channels=32, max_channels=64)
    first = model.generator.net[0].weight.detach()
    assert abs(float(first.mean())) < 0.002 and abs(float(first.std()) - 0.02) < 0.002
    scales = torch.cat([m.weight.detach() for m in model.generator.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(float(scales.mean()) - 1.0) < 0.005


def test_discriminator_normalisation() -> None:
    layer = build_model("dcgan", **TINY)
    plain = build_model("dcgan", discriminator_norm="none", **TINY)
    assert any(isinstance(m, nn.GroupNorm) for m in layer.discriminator.modules())
    assert not any(isinstance(m, nn.GroupNorm) for m in plain.discriminator.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in layer.discriminator.modules())


@pytest.mark.parametrize(("settings", "message"), [
    ({"r1_gamma": -1.0}, "r1_gamma must be non-negative"),
    ({"r1_interval": 0}, "r1_interval must be at least 1"),
    ({"ema_images": -5.0}, "ema_images must be non-negative"),
    ({"diffaugment": "translation,saturation"}, "saturation"),
    ({"discriminator_norm": "batch"}, "discriminator_norm must be 'none' or 'layer'"),
    ({"image_size": 100}, "image size 100 is not supported"),
])
def test_settings_are_validated(settings, message) -> None:
    with pytest.raises(UserInputError, match=message):
        build_model("dcgan", **{**TINY, **settings})
