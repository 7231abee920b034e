"""A DCGAN for square grey images, after Schön, Selvan & Petersen (2022) and Radford et al. (2016).

Generator: the code ``z`` is a 1x1 map; a 4x4 transposed convolution makes a 4x4 map,
then stride-2 4x4 transposed convolutions double the resolution up to the image size; every
hidden layer has batch normalisation and ReLU, the last one a ``tanh`` (images in
[-1, 1]). Discriminator: stride-2 4x4 convolutions halve the resolution down to 4x4 with
leaky ReLU (slope 0.2), then a 4x4 convolution gives one logit per image. Widths follow
:meth:`~napari_latent.models.base.ModelConfig.channels` (the 4x4 level is the widest).
Weights start from N(0, 0.02) (batch-norm scales from N(1, 0.02)), as in Radford et al.

Normalisation in the discriminator. Radford et al. use batch normalisation in the
discriminator too; it is never used here, because batch statistics make each logit depend
on the other images of the batch, which breaks the R1 penalty (the gradient of a logit with
respect to *its* image is what R1 penalises), makes results depend on how a batch is split
across distributed processes, and because real and fake images are passed to the
discriminator separately. The default ``discriminator_norm="layer"`` normalises each image's
feature maps on their own (a one-group GroupNorm, i.e. layer normalisation, after every
hidden convolution but the first), which is safe with R1 and distribution. Measured on
64-pixel phantom slices (1,065 slices, 306 steps of 32, default widths, R1 and DiffAugment
on), it trained clearly better than no normalisation (``"none"``): the Fréchet distance of
EMA samples to the data (random-conv features) was 1.7 against 3.5, because without
normalisation the discriminator stalled at chance (``loss_d`` 1.38) while the samples were
still blurry.

Batch normalisation in the generator. In training mode the generator normalises with the
statistics of the batch; :meth:`DCGAN.decode` always runs it with the running statistics
(evaluation mode), so a code decodes to the same image alone or in any batch, whatever mode
the module is in. Training uses :meth:`DCGAN.generate_for_training` (batch statistics).

Training (:mod:`napari_latent.training.objectives.gan`): the non-saturating logistic GAN
loss with lazy R1 regularisation of the discriminator, differentiable augmentation, and an
exponential moving average (EMA) of the generator, which is what a loaded model decodes
with. The settings of those parts are fields of :class:`DCGANConfig`.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import ClassVar

import torch
from torch import nn

from ..errors import UserInputError
from .base import LatentWeights, ModelConfig, register_model
from .gan import GANModel, parse_diffaugment_policy


@dataclasses.dataclass
class DCGANConfig(ModelConfig):
    """DCGAN settings (the shared ones plus the GAN training's).

    Parameters
    ----------
    r1_gamma : float
        Weight ``gamma`` of the R1 penalty ``gamma / 2 * E ||grad_x D(x)||^2`` on real
        images (Mescheder et al. 2018); 0 turns it off. StyleGAN2-ADA's heuristic
        ``0.0002 * size ** 2 / batch`` gives 0.03 for 64-pixel images in batches of 32 and
        0.4 at 256 pixels; small data sets overfit the discriminator sooner and want more.
        The default 0.1 keeps the discriminator's gradients tame on a few hundred slices
        without slowing learning noticeably (with ``diffaugment`` on).
    r1_interval : int
        Lazy regularisation (Karras et al. 2020): R1 is computed every ``r1_interval``
        steps, weighted by the interval; 1 computes it every step.
    ema_images : float
        Half-life, in training images, of the exponential moving average of the generator
        weights. StyleGAN2 uses 10,000 images (``ema_kimg=10``) on data sets of tens of
        thousands of images; 1,000 suits the few thousand slices of a small cohort. In a
        run's first steps the half-life is shorter (5 % of the images seen so far).
    diffaugment : str
        DiffAugment policy applied to real and generated images before the discriminator
        (``"translation,cutout"``; also ``brightness``, ``contrast``, ``color``); ``""``
        turns it off.
    discriminator_norm : str
        ``"layer"`` (default) or ``"none"``: normalisation of the discriminator's hidden
        layers (never batch normalisation; see the module docstring).
    """

    r1_gamma: float = 0.1
    r1_interval: int = 16
    ema_images: float = 1000.0
    diffaugment: str = "translation,cutout"
    discriminator_norm: str = "layer"

    def validate(self) -> None:
        super().validate()
        if not self.r1_gamma >= 0:
            raise UserInputError(f"r1_gamma must be non-negative, got {self.r1_gamma}")
        if int(self.r1_interval) < 1:
            raise UserInputError(f"r1_interval must be at least 1, got {self.r1_interval}")
        if not self.ema_images >= 0:
            raise UserInputError(f"ema_images must be non-negative, got {self.ema_images}")
        parse_diffaugment_policy(self.diffaugment)
        if self.discriminator_norm not in ("none", "layer"):
            raise UserInputError(f"discriminator_norm must be 'none' or 'layer', got {self.discriminator_norm!r}")


def _levels(config: ModelConfig) -> list[int]:
    """Hidden resolutions 4, 8, ..., S/2."""
    sizes, size = [], 4
    while size < int(config.image_size):
        sizes.append(size)
        size *= 2
    return sizes


def _init_weights(module: nn.Module) -> None:
    """Radford et al.: convolutions N(0, 0.02), batch-norm scales N(1, 0.02), biases 0."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class DCGANGenerator(nn.Module):
    """Codes ``(n, latent_dim)`` to images ``(n, 1, S, S)`` in [-1, 1]."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        levels = _levels(config)
        width = config.channels(levels[0])
        layers: list[nn.Module] = [nn.ConvTranspose2d(config.latent_dim, width, 4, 1, 0, bias=False),
                                   nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        for res in levels[1:]:
            layers += [nn.ConvTranspose2d(width, config.channels(res), 4, 2, 1, bias=False),
                       nn.BatchNorm2d(config.channels(res)), nn.ReLU(inplace=True)]
            width = config.channels(res)
        layers += [nn.ConvTranspose2d(width, 1, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.latent_dim = int(config.latent_dim)
        self.apply(_init_weights)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.reshape(z.shape[0], self.latent_dim, 1, 1))


class DCGANDiscriminator(nn.Module):
    """Images ``(n, 1, S, S)`` to logits ``(n,)``."""

    def __init__(self, config: DCGANConfig) -> None:
        super().__init__()
        levels = list(reversed(_levels(config)))  # S/2 ... 4
        layers: list[nn.Module] = [nn.Conv2d(1, config.channels(levels[0]), 4, 2, 1),
                                   nn.LeakyReLU(0.2)]
        for previous, res in itertools.pairwise(levels):
            width = config.channels(res)
            layers.append(nn.Conv2d(config.channels(previous), width, 4, 2, 1))
            if config.discriminator_norm == "layer":
                layers.append(nn.GroupNorm(1, width))
            layers.append(nn.LeakyReLU(0.2))
        layers.append(nn.Conv2d(config.channels(levels[-1]), 1, 4, 1, 0))
        self.net = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).flatten()


@register_model
class DCGAN(GANModel):
    """Deep convolutional GAN with one latent space ``z`` (standard normal prior)."""

    name = "dcgan"
    config_class = DCGANConfig
    spaces = ("z",)
    #: Adam settings of Radford et al. (the GAN objective reads these; ``lr`` overrides).
    default_lr: ClassVar[float] = 2e-4
    adam_betas: ClassVar[tuple[float, float]] = (0.5, 0.999)

    def __init__(self, config: DCGANConfig) -> None:
        super().__init__(config)
        self.generator = DCGANGenerator(config)
        self.discriminator = DCGANDiscriminator(config)

    def latent_weights(self, space: str | None = None) -> LatentWeights:
        """The first transposed convolution (a 1x1 code to a 4x4 map), ``(d, C, 4, 4)`` read as ``(C * 16, d)``."""
        self.check_space(space)
        return LatentWeights((self.generator.net[0].weight.flatten(1).T,))

    def decode(self, codes: torch.Tensor, space: str | None = None) -> torch.Tensor:
        """Images of codes ``(n, latent_dim)``, with the generator's running batch-norm statistics."""
        codes = self.check_codes(codes, space)
        was_training = self.generator.training
        self.generator.eval()
        try:
            return self.generator(codes)
        finally:
            self.generator.train(was_training)

    def generate_for_training(self, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Images of ``z`` in the generator's current mode (batch statistics when training)."""
        return self.generator(self.check_codes(z))

    def discriminate(self, images: torch.Tensor) -> torch.Tensor:
        """Real/fake logits ``(n,)``."""
        return self.discriminator(self.check_images(images))
