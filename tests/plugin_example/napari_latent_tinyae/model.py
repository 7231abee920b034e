"""The ``tinyae`` model family: a two-level convolutional autoencoder.

The ``napari_latent.models`` entry point names this module; importing it registers the
family, so ``--model tinyae`` and its checkpoints work everywhere the built-ins do.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from napari_latent.errors import UserInputError
from napari_latent.models.base import GenerativeModel, LatentWeights, ModelConfig, register_model


@dataclasses.dataclass
class TinyAEConfig(ModelConfig):
    """Settings: the shared ones (smaller defaults) and the weight of a penalty on the codes.

    Parameters
    ----------
    code_weight : float
        Weight of the mean squared code in the loss; it keeps the codes near the unit scale
        of the standard normal prior the model declares (the default :meth:`prior`).
    """

    image_size: int = 32
    latent_dim: int = 8
    base_channels: int = 8
    max_channels: int = 32
    code_weight: float = 0.01

    def validate(self) -> None:
        super().validate()
        if not self.code_weight >= 0:
            raise UserInputError(f"code_weight must be non-negative, got {self.code_weight}")


@register_model
class TinyAE(GenerativeModel):
    """Images to codes and back: two stride-2 convolutions each way, and a linear layer at each end."""

    name = "tinyae"
    family = "autoencoder"
    objective = "tinyae"  # the training objective's registry name
    config_class = TinyAEConfig
    has_encoder = True

    def __init__(self, config: TinyAEConfig) -> None:
        super().__init__(config)
        width, side = config.base_channels, config.image_size // 4
        self.map_shape = (2 * width, side, side)
        features = 2 * width * side * side
        self.encoder = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1), nn.ReLU(), nn.Conv2d(width, 2 * width, 4, 2, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(features, config.latent_dim))
        self.from_latent = nn.Linear(config.latent_dim, features)  # the first layer on codes
        self.decoder = nn.Sequential(
            nn.ReLU(), nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(width, 1, 4, 2, 1), nn.Tanh())

    def encode(self, images: torch.Tensor, space: str | None = None) -> torch.Tensor:
        """Codes ``(n, latent_dim)`` of images ``(n, 1, S, S)``."""
        self.check_space(space)
        return self.encoder(self.check_images(images))

    def decode(self, codes: torch.Tensor, space: str | None = None) -> torch.Tensor:
        """Images ``(n, 1, S, S)`` in [-1, 1] of codes ``(n, latent_dim)``."""
        codes = self.check_codes(codes, space)
        return self.decoder(self.from_latent(codes).view(len(codes), *self.map_shape))

    def latent_weights(self, space: str | None = None) -> LatentWeights:
        """``from_latent``'s weight ``(features, latent_dim)``: what SeFa factorises."""
        self.check_space(space)
        return LatentWeights((self.from_latent.weight,))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstructions and codes (one call per training step, as distributed training needs)."""
        codes = self.encode(images)
        return self.decode(codes), codes
