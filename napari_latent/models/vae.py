"""A convolutional residual VAE (beta-VAE), after the VAE of Schön et al. (2022).

Encoder: residual down path to 4x4, then a linear layer to the posterior mean and log
variance of a ``latent_dim`` Gaussian. Decoder: linear layer to a 4x4 map, residual up
path to the image, ``tanh`` output in [-1, 1]. The training objective
(:mod:`napari_latent.training.objectives`) is the negative ELBO with a ``beta`` weight
on the KL term (Higgins et al. 2017).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from torch import nn

from ..errors import UserInputError
from .base import GenerativeModel, LatentWeights, ModelConfig, register_model
from .blocks import DownPath, UpPath


@dataclasses.dataclass
class VAEConfig(ModelConfig):
    """VAE settings.

    Parameters
    ----------
    beta : float
        Weight of the KL term (1 is the plain VAE; larger values favour disentangling).
    blocks_per_level : int
        Residual blocks per resolution level.
    ssim_weight : float
        Weight of an SSIM term in the reconstruction loss, per pixel: ``(1 - SSIM)`` next to
        the MSE (0: squared error only; see
        :mod:`napari_latent.training.objectives.reconstruction`).
    """

    beta: float = 1.0
    blocks_per_level: int = 1
    ssim_weight: float = 0.0

    training_only: ClassVar[tuple[str, ...]] = ("ssim_weight",)

    def validate(self) -> None:
        super().validate()
        if self.ssim_weight < 0:
            raise UserInputError(f"the SSIM weight must be non-negative, got {self.ssim_weight}")


@register_model
class VAE(GenerativeModel):
    """Convolutional residual VAE with a Gaussian posterior and a standard normal prior."""

    name = "vae"
    family = "autoencoder"
    objective = "vae"
    config_class = VAEConfig
    spaces = ("z",)
    has_encoder = True
    has_posterior = True

    def __init__(self, config: VAEConfig) -> None:
        super().__init__(config)
        self.encoder = DownPath(config, stop=4, blocks_per_level=config.blocks_per_level)
        features = self.encoder.out_channels * 16
        self.to_moments = nn.Linear(features, 2 * config.latent_dim)
        self.from_latent = nn.Linear(config.latent_dim, features)
        self.decoder = UpPath(config, start=4, blocks_per_level=config.blocks_per_level)

    def posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log variance of q(z | x), each ``(n, latent_dim)``."""
        features = self.encoder(self.check_images(images)).flatten(1)
        mean, logvar = self.to_moments(features).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode(self, images: torch.Tensor, space: str | None = None) -> torch.Tensor:
        """Posterior means of ``images``."""
        self.check_space(space)
        return self.posterior(images)[0]

    def latent_weights(self, space: str | None = None) -> LatentWeights:
        """The decoder's ``from_latent`` linear layer ``(features, latent_dim)``."""
        self.check_space(space)
        return LatentWeights((self.from_latent.weight,))

    def decode(self, codes: torch.Tensor, space: str | None = None) -> torch.Tensor:
        """Images of codes ``(n, latent_dim)``."""
        codes = self.check_codes(codes, space)
        features = self.from_latent(codes).view(codes.shape[0], self.decoder.in_channels, 4, 4)
        return self.decoder(features)

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """One pass for training: reparameterised sample and reconstruction."""
        mean, logvar = self.posterior(images)
        noise = torch.randn(mean.shape, generator=generator, device="cpu").to(mean.device)
        z = mean + noise * torch.exp(0.5 * logvar)
        return {"reconstruction": self.decode(z), "mean": mean, "logvar": logvar, "z": z}


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per latent dimension, shape of ``mean``."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)
