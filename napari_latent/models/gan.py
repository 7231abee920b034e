"""The interface GAN models add to :class:`~napari_latent.models.base.GenerativeModel`.

A GAN model holds two parts: ``generator`` (everything that maps latent codes to images)
and ``discriminator`` (images to one real/fake logit per image). The shared GAN objective
(:mod:`napari_latent.training.objectives.gan`) trains any such model; it keeps an
exponential moving average (EMA) of ``generator`` that is stored in the checkpoint under
``ema`` and is what users get from :func:`~napari_latent.models.checkpoint.load_model`.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import torch
from torch import nn

from ..errors import UserInputError
from .base import GenerativeModel

#: Operations of differentiable augmentation (:mod:`napari_latent.training.diffaugment`) a
#: GAN config's ``diffaugment`` policy may name, comma-separated; ``"color"`` is
#: ``"brightness,contrast"`` (DiffAugment's colour op without saturation, for grey images).
DIFFAUGMENT_OPS = ("translation", "cutout", "brightness", "contrast", "color")


def parse_diffaugment_policy(policy: str) -> tuple[str, ...]:
    """Split a DiffAugment policy (``"translation,cutout"``; ``""`` for none) into its ops.

    Raises
    ------
    UserInputError
        For unknown operation names.
    """
    ops = tuple(op.strip().lower() for op in str(policy).split(",") if op.strip())
    unknown = [op for op in ops if op not in DIFFAUGMENT_OPS]
    if unknown:
        raise UserInputError(f"unknown DiffAugment operation(s) {', '.join(unknown)}; "
                             f"choose from {', '.join(DIFFAUGMENT_OPS)} (or '' for none)")
    return ops


class GANModel(GenerativeModel):
    """Base class of generator/discriminator models."""

    family: ClassVar[str] = "gan"
    objective: ClassVar[str] = "gan"
    has_encoder: ClassVar[bool] = False

    generator: nn.Module
    discriminator: nn.Module

    @abc.abstractmethod
    def discriminate(self, images: torch.Tensor) -> torch.Tensor:
        """Real/fake logits ``(n,)`` of images ``(n, 1, S, S)``."""

    def generate_for_training(self, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Images from prior codes ``z`` during training (may add noise, style mixing, ...).

        All randomness must come from ``generator``. The default decodes ``z``.
        """
        return self.decode(z)

    def after_generator_step(self) -> None:
        """Hook after each generator update (StyleGAN tracks its running mean ``w`` here)."""
        return
