"""IntroVAE: an introspective VAE whose encoder doubles as the discriminator.

Huang, Li, He, Sun & Tan (2018), "IntroVAE: Introspective Variational Autoencoders for
Photographic Image Synthesis", NeurIPS. The networks are exactly those of
:class:`~napari_latent.models.vae.VAE` (same encoder, decoder and checkpoint layout); only
the training differs: the encoder is trained to give real images a small KL divergence from
the prior and generated images (reconstructions and prior samples) a KL above a margin
``m``, and the decoder is trained to make the encoder's KL of its images small. See
:mod:`napari_latent.training.objectives.introvae` for the objective.

For training, the model exposes its two halves as separate modules (:attr:`IntroVAE.enc`
and :attr:`IntroVAE.dec`, see :class:`PosteriorNet` and :class:`GeneratorNet`) so that each
can be wrapped in its own DistributedDataParallel and optimised by its own optimiser. They
share the parameters of ``encoder``/``to_moments`` and ``from_latent``/``decoder``; they are
not registered as submodules, so the state dict (and checkpoints) look like a VAE's.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..errors import UserInputError
from .base import register_model
from .vae import VAE, VAEConfig


@dataclasses.dataclass
class IntroVAEConfig(VAEConfig):
    """IntroVAE settings (the VAE's plus the introspective game's).

    Notation of the paper: ``L_E = L_REG(z) + alpha * sum_s [m - L_REG(z_s)]^+ + beta' L_AE``
    and ``L_G = alpha * sum_s L_REG(z_s) + beta' L_AE``. Here the paper's reconstruction
    weight ``beta'`` is called ``recon_weight``, so that ``beta`` keeps its meaning in every
    autoencoder of the package: the weight of the KL term of *real* images (1 in the paper).
    With ``recon_weight = 1`` and ``beta = 1`` the warm-up objective is exactly the VAE's.

    Parameters
    ----------
    beta : float
        Weight of ``L_REG(z)``, the KL of real images from N(0, I) (as in the VAE).
    margin : float
        The KL margin ``m`` (nats, summed over latent dimensions). The encoder pushes the KL
        of generated images up while it is below ``m``; the hinge switches off for fakes
        already beyond ``m``, so ``m`` must exceed the KL the encoder gives *real* images,
        or the game stops. The paper uses m = 110-120 with 512 latent dimensions (about 0.2
        nats per dimension) and a reconstruction weight of 0.05 or less. Our reconstruction
        term is a per-image sum of squared errors over [-1, 1] pixels with weight 1, which
        makes posteriors much sharper: measured on 64-pixel phantom slices with the default
        32 latent dimensions, a VAE plateaus at a real-image KL of ~25 nats and IntroVAE
        training (alpha 0.25) at ~31, with reconstructions and samples at 27-32. The default
        ``m = 40`` (1.25 nats per dimension) sits above those values, so the hinge is active
        for typical fakes and its gradient is the plain "raise the KL of fakes" of the paper,
        yet it stops pushing fakes that are already clearly further from the prior than real
        images. (Over those runs ``m = 80`` trained identically: while every fake is below
        the margin, ``m`` does not enter the gradient.) With another ``latent_dim`` scale
        ``m`` to about 1.25 nats per dimension, and check that the reported ``kl`` stays
        below it.
    alpha : float
        Weight of the adversarial terms (the paper's 0.25).
    recon_weight : float
        The paper's ``beta``: weight of the reconstruction error ``L_AE`` (per-image sum of
        squared errors) in both losses.
    warmup_epochs : int
        Epochs of plain VAE training (``beta * KL + recon_weight * SSE``, both halves
        stepped) before the adversarial game starts.
    """

    margin: float = 40.0
    alpha: float = 0.25
    recon_weight: float = 1.0
    warmup_epochs: int = 0

    def validate(self) -> None:
        super().validate()
        if not self.margin > 0:
            raise UserInputError(f"IntroVAE margin must be positive, got {self.margin}")
        if self.alpha < 0:
            raise UserInputError(f"IntroVAE alpha must be non-negative, got {self.alpha}")
        if not self.recon_weight > 0:
            raise UserInputError(f"IntroVAE recon_weight must be positive, got {self.recon_weight}")
        if self.beta < 0:
            raise UserInputError(f"beta must be non-negative, got {self.beta}")
        if self.warmup_epochs < 0:
            raise UserInputError(f"warm-up epochs must be non-negative, got {self.warmup_epochs}")


class PosteriorNet(nn.Module):
    """The encoder half of a VAE as one module: images to posterior mean and log variance.

    Holds (shares) the VAE's ``encoder`` and ``to_moments``; its parameters are exactly the
    encoder's, so it can be wrapped in DistributedDataParallel on its own.
    """

    def __init__(self, model: VAE) -> None:
        super().__init__()
        self.encoder = model.encoder
        self.to_moments = model.to_moments

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.encoder(images).flatten(1)
        mean, logvar = self.to_moments(features).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)  # as VAE.posterior


class GeneratorNet(nn.Module):
    """The decoder half of a VAE as one module: flat codes to images in [-1, 1]."""

    def __init__(self, model: VAE) -> None:
        super().__init__()
        self.from_latent = model.from_latent
        self.decoder = model.decoder

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        features = self.from_latent(codes).view(codes.shape[0], self.decoder.in_channels, 4, 4)
        return self.decoder(features)  # as VAE.decode


@register_model
class IntroVAE(VAE):
    """Introspective VAE: a VAE trained adversarially with its encoder as discriminator."""

    name = "introvae"
    family = "autoencoder"
    objective = "introvae"
    config_class = IntroVAEConfig
    spaces = ("z",)
    has_encoder = True

    def __init__(self, config: IntroVAEConfig) -> None:
        super().__init__(config)
        # Plain attributes (object.__setattr__ skips nn.Module registration): the halves share
        # the parameters above and must not appear twice in state_dict() / parameters().
        object.__setattr__(self, "enc", PosteriorNet(self))
        object.__setattr__(self, "dec", GeneratorNet(self))

    def encoder_parameters(self) -> list[nn.Parameter]:
        """Parameters of the encoder half (``encoder`` and ``to_moments``)."""
        return list(self.enc.parameters())

    def decoder_parameters(self) -> list[nn.Parameter]:
        """Parameters of the decoder half (``from_latent`` and ``decoder``)."""
        return list(self.dec.parameters())
