"""The VAE: shapes, encode/decode/posterior, its description (latent weights, prior, mean), settings."""

from __future__ import annotations

import math

import pytest
import torch

from napari_latent.errors import CheckpointError, MismatchError, UserInputError
from napari_latent.models.base import build_model
from napari_latent.models.vae import VAEConfig, kl_to_standard_normal

TINY = {"image_size": 32, "latent_dim": 8, "base_channels": 8, "max_channels": 32}


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return build_model("vae", **TINY).eval()


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_description(vae) -> None:
    assert (vae.name, vae.family, vae.objective) == ("vae", "autoencoder", "vae")
    assert vae.spaces == ("z",) and vae.default_space == vae.analysis_space == "z"
    assert vae.has_encoder and vae.has_posterior
    assert vae.latent_shape() == (8,) and vae.latent_dim("z") == 8
    assert vae.image_size == 32
    described = vae.describe()
    assert described["latent_dims"] == {"z": 8} and described["encoder"] is True
    assert described["parameters"] == sum(p.numel() for p in vae.parameters())


def test_encode_is_the_posterior_mean_and_decode_is_in_range(vae) -> None:
    x = images(5)
    with torch.no_grad():
        mean, logvar = vae.posterior(x)
        codes = vae.encode(x)
        decoded = vae.decode(codes)
    assert mean.shape == logvar.shape == (5, 8)
    assert torch.equal(codes, mean)
    assert logvar.min() >= -30 and logvar.max() <= 20
    assert decoded.shape == (5, 1, 32, 32)
    assert decoded.min() >= -1 and decoded.max() <= 1
    with torch.no_grad():  # each image decodes alone as in the batch
        torch.testing.assert_close(vae.decode(codes[2:3]), decoded[2:3], atol=1e-5, rtol=0)


def test_forward_samples_with_the_given_generator(vae) -> None:
    x = images(3)
    with torch.no_grad():
        first = vae(x, torch.Generator().manual_seed(4))
        again = vae(x, torch.Generator().manual_seed(4))
        other = vae(x, torch.Generator().manual_seed(5))
        mean, logvar = vae.posterior(x)
    assert torch.equal(first["z"], again["z"]) and not torch.equal(first["z"], other["z"])
    assert torch.equal(first["mean"], mean) and torch.equal(first["logvar"], logvar)
    noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(first["z"], mean + noise * torch.exp(0.5 * logvar))
    assert first["reconstruction"].shape == (3, 1, 32, 32)


def test_latent_weights_are_the_live_first_linear_map_on_codes() -> None:
    torch.manual_seed(1)
    model = build_model("vae", **TINY).eval()
    weights = model.latent_weights("z")
    assert weights.layout == "single" and weights.positions == 1 and not weights.selectable
    (matrix,) = weights.inputs
    features = model.decoder.in_channels * 16
    assert matrix.shape == (features, 8)
    # Replacing A by A @ M decodes z as the original model decodes M z: A is the first (linear) map on codes.
    mix = torch.randn(8, 8, generator=torch.Generator().manual_seed(2))
    z = torch.randn(4, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model.decode(z @ mix.T)
        matrix.copy_(matrix @ mix)
        got = model.decode(z)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    with pytest.raises(MismatchError, match="no latent space 'w'"):
        model.latent_weights("w")


def test_prior_and_mean_latent(vae) -> None:
    prior = vae.prior("z")
    assert prior.standard_normal and prior.mean_is_typical
    with pytest.raises(MismatchError):
        vae.prior("w")
    mean = vae.mean_latent("z", samples=512, seed=0)
    assert mean.shape == (1, 8)
    assert mean.abs().max() < 4 / math.sqrt(512)
    assert torch.equal(mean, vae.mean_latent("z", samples=512, seed=0))
    assert not torch.equal(mean, vae.mean_latent("z", samples=512, seed=1))
    samples = vae.sample_latent(2000, torch.Generator().manual_seed(0))
    assert samples.shape == (2000, 8)
    assert abs(float(samples.std()) - 1.0) < 0.05


def test_kl_to_standard_normal() -> None:
    zero = torch.zeros(2, 3)
    assert torch.equal(kl_to_standard_normal(zero, zero), zero)
    # KL(N(1, e^-1) || N(0, 1)) = 0.5 * (1 + e^-1 - 1 + 1)
    value = kl_to_standard_normal(torch.ones(1, 1), -torch.ones(1, 1))
    torch.testing.assert_close(value, torch.tensor([[0.5 * (1 + math.exp(-1))]]))


def test_inputs_of_the_wrong_shape_are_refused(vae) -> None:
    with pytest.raises(MismatchError, match=r"needs \(n, 8\)"):
        vae.decode(torch.zeros(2, 7))
    with pytest.raises(MismatchError, match=r"needs \(n, 1, 32, 32\)"):
        vae.encode(torch.zeros(2, 1, 64, 64))
    with pytest.raises(MismatchError, match="no latent space"):
        vae.encode(images(1), space="w+")


@pytest.mark.parametrize(("settings", "message"), [
    ({"image_size": 48}, "image size 48 is not supported"),
    ({"latent_dim": 0}, "latent dimension must be positive"),
    ({"base_channels": 16, "max_channels": 8}, "max_channels >= base_channels"),
    ({"depth": 3}, "has no setting"),
])
def test_settings_are_validated(settings, message) -> None:
    with pytest.raises(UserInputError, match=message):
        build_model("vae", **{**TINY, **settings})


def test_config_round_trips_through_json() -> None:
    config = VAEConfig(image_size=32, latent_dim=4, beta=4.0, blocks_per_level=2)
    assert VAEConfig.from_json(config.to_json()) == config
    with pytest.raises(CheckpointError, match="unknown model settings for VAEConfig: depth"):
        VAEConfig.from_json({**config.to_json(), "depth": 2})
    with pytest.raises(UserInputError, match="image size"):
        VAEConfig.from_json({**config.to_json(), "image_size": 31})
