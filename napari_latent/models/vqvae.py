"""A convolutional VQ-VAE with an EMA codebook (van den Oord et al. 2017; Razavi et al. 2019).

Encoder: residual down path to a ``latent_resolution`` square feature map, then a 1x1
convolution to ``code_dim`` channels: the continuous pre-quantisation map ``z_e``
``(n, D, h, w)``. Quantiser: every position is replaced by its nearest vector of a codebook
of ``codebook_size`` vectors (``z_q``). Decoder: a 1x1 convolution from ``code_dim``
channels, then a residual up path to the image, ``tanh`` output in [-1, 1].

The codebook is not a parameter: it is a *buffer* updated by exponential moving averages of
the encoder outputs assigned to each code (van den Oord et al. 2017, appendix A.1), with
the EMA cluster sizes and sums as buffers too, so checkpoints hold the whole quantiser. The
training objective (:mod:`napari_latent.training.objectives.vqvae`) updates them and
restarts dead codes.

Latent space. The model's one space ``z`` is the continuous map ``z_e``, flattened to
``(n, code_dim * latent_resolution ** 2)`` (directions and traversals live there):
:meth:`VQVAE.encode` returns ``z_e``; :meth:`VQVAE.decode` quantises before decoding, so
``decode(encode(x))`` is the VQ-VAE reconstruction and small moves of a code change the
image only when a position crosses to another code. :meth:`VQVAE.decode_continuous` decodes
without quantising (smooth, but off the training distribution of the decoder's inputs).
The base config's ``latent_dim`` is derived, not set: it always equals
``code_dim * latent_resolution ** 2`` (``latent_shape("z")`` is ``(D, h, w)``).

Sampling. A VQ-VAE has no Gaussian prior; the generative model of the paper fits an
autoregressive prior (PixelCNN) over code indices, which this package does not train.
:meth:`VQVAE.sample_latent` draws every position's code independently from the empirical
code frequencies (the EMA cluster sizes), so samples have realistic local texture but no
global structure: they are for previews and null distributions, not a learned prior.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

import torch
from torch import nn

from ..errors import UserInputError
from .base import GenerativeModel, LatentPrior, LatentWeights, ModelConfig, register_model
from .blocks import DownPath, UpPath


@dataclasses.dataclass
class VQVAEConfig(ModelConfig):
    """VQ-VAE settings.

    Parameters
    ----------
    latent_dim : int
        Derived: ``code_dim * latent_resolution ** 2`` (leave it unset; 0 means "derive").
    codebook_size : int
        Number of codebook vectors K.
    code_dim : int
        Length D of each codebook vector (channels of ``z_e``).
    latent_resolution : int
        Side h = w of the quantised map; divides the image size, at least 4.
    commitment : float
        Weight of the commitment loss ``||z_e - sg(z_q)||^2`` (the paper's beta, 0.25).
    ema_decay : float
        Decay of the EMA codebook updates (0.99 in the paper).
    dead_code_threshold : float
        A code whose EMA usage (assigned positions per training step, summed over
        processes) falls below this is dead and restarted at a random encoder output.
    blocks_per_level : int
        Residual blocks per resolution level.
    ssim_weight : float
        Weight of an SSIM term in the reconstruction loss, per pixel: ``(1 - SSIM)`` next to
        the MSE (0: squared error only; see
        :mod:`napari_latent.training.objectives.reconstruction`).
    """

    latent_dim: int = 0
    codebook_size: int = 256
    code_dim: int = 16
    latent_resolution: int = 8
    commitment: float = 0.25
    ema_decay: float = 0.99
    dead_code_threshold: float = 1.0
    blocks_per_level: int = 1
    ssim_weight: float = 0.0

    derived: ClassVar[tuple[str, ...]] = ("latent_dim",)
    training_only: ClassVar[tuple[str, ...]] = ("ssim_weight",)

    def __post_init__(self) -> None:
        if self.latent_dim == 0:
            self.latent_dim = self.derived_latent_dim

    @property
    def derived_latent_dim(self) -> int:
        """``code_dim * latent_resolution ** 2``."""
        return int(self.code_dim) * int(self.latent_resolution) ** 2

    def validate(self) -> None:
        super().validate()
        if self.ssim_weight < 0:
            raise UserInputError(f"the SSIM weight must be non-negative, got {self.ssim_weight}")
        if self.codebook_size < 2:
            raise UserInputError(f"the codebook needs at least 2 codes, got {self.codebook_size}")
        if self.code_dim < 1:
            raise UserInputError(f"code dimension must be positive, got {self.code_dim}")
        res = self.latent_resolution
        if res < 4 or res > self.image_size or self.image_size % res or (res & (res - 1)):
            raise UserInputError(f"latent resolution {res} must be a power of two from 4 to the image size "
                                 f"{self.image_size}")
        if self.latent_dim != self.derived_latent_dim:
            raise UserInputError(f"a VQ-VAE's latent_dim is code_dim * latent_resolution^2 = "
                                 f"{self.derived_latent_dim}; it cannot be set to {self.latent_dim}")
        if self.commitment < 0:
            raise UserInputError(f"commitment weight must be non-negative, got {self.commitment}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise UserInputError(f"EMA decay must be in [0, 1), got {self.ema_decay}")
        if self.dead_code_threshold < 0:
            raise UserInputError(f"dead-code threshold must be non-negative, got {self.dead_code_threshold}")
        if self.blocks_per_level < 0:
            raise UserInputError(f"blocks per level must be non-negative, got {self.blocks_per_level}")


class Quantized(NamedTuple):
    """Result of :meth:`VQVAE.quantize`.

    Attributes
    ----------
    z_q : torch.Tensor
        ``(n, D, h, w)`` the nearest codebook vector at every position.
    indices : torch.Tensor
        ``(n, h, w)`` long, the code index at every position.
    distances : torch.Tensor
        ``(n, h, w, K)`` squared Euclidean distance of every position to every code.
    """

    z_q: torch.Tensor
    indices: torch.Tensor
    distances: torch.Tensor


@register_model
class VQVAE(GenerativeModel):
    """Convolutional residual VQ-VAE with an EMA-updated codebook."""

    name = "vqvae"
    family = "autoencoder"
    objective = "vqvae"
    config_class = VQVAEConfig
    spaces = ("z",)
    has_encoder = True

    def __init__(self, config: VQVAEConfig) -> None:
        super().__init__(config)
        res, dim, size = config.latent_resolution, config.code_dim, config.codebook_size
        self.encoder = DownPath(config, stop=res, blocks_per_level=config.blocks_per_level)
        self.to_code = nn.Conv2d(self.encoder.out_channels, dim, 1)
        self.decoder = UpPath(config, start=res, blocks_per_level=config.blocks_per_level)
        self.from_code = nn.Conv2d(dim, self.decoder.in_channels, 1)
        # Small uniform codes until the objective initialises them from encoder outputs.
        self.register_buffer("codebook", (torch.rand(size, dim) * 2 - 1) / size)
        self.register_buffer("ema_cluster_size", torch.zeros(size))
        self.register_buffer("ema_sum", self.codebook.clone())
        self.register_buffer("codebook_initialized", torch.zeros(1))

    # -- description -----------------------------------------------------------------------
    def latent_shape(self, space: str | None = None) -> tuple[int, ...]:
        """``(code_dim, latent_resolution, latent_resolution)``."""
        self.check_space(space)
        res = int(self.config.latent_resolution)
        return (int(self.config.code_dim), res, res)

    def prior(self, space: str | None = None) -> LatentPrior:
        """Not Gaussian: codes are codebook entries drawn per position (:meth:`sample_latent`)."""
        self.check_space(space)
        return LatentPrior(standard_normal=False)

    def latent_weights(self, space: str | None = None) -> LatentWeights:
        """The decoder's 1x1 convolution ``from_code`` ``(channels, code_dim)``, tiled over the latent map.

        It acts on the ``code_dim`` channels of every position alike.
        """
        self.check_space(space)
        res = int(self.config.latent_resolution)
        return LatentWeights((self.from_code.weight[:, :, 0, 0],), "tiled", res * res)

    @property
    def codebook_size(self) -> int:
        """Number of codes K."""
        return int(self.config.codebook_size)

    # -- pieces ------------------------------------------------------------------------------
    def encode_map(self, images: torch.Tensor) -> torch.Tensor:
        """The continuous pre-quantisation map ``z_e`` ``(n, D, h, w)``."""
        return self.to_code(self.encoder(self.check_images(images)))

    def quantize(self, z_e: torch.Tensor) -> Quantized:
        """Nearest codebook vector of every position of a map ``(n, D, h, w)``.

        Distances and the lookup are computed in float32; ``z_q`` has no gradient to the
        codebook (it is a buffer) and none to ``z_e`` (use the straight-through estimator).
        """
        n, d, h, w = z_e.shape
        flat = z_e.detach().float().permute(0, 2, 3, 1).reshape(-1, d)
        codebook = self.codebook.float()
        distances = (flat.pow(2).sum(1, keepdim=True) - 2.0 * flat @ codebook.t()
                     + codebook.pow(2).sum(1)[None, :]).clamp_min(0.0)
        indices = distances.argmin(1)
        z_q = self.lookup(indices.view(n, h, w))
        return Quantized(z_q.to(z_e.dtype), indices.view(n, h, w), distances.view(n, h, w, -1))

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codebook vectors of an index map ``(n, h, w)`` as a map ``(n, D, h, w)``."""
        return self.codebook[indices].permute(0, 3, 1, 2).contiguous()

    def decode_map(self, z_q: torch.Tensor) -> torch.Tensor:
        """Images of a (quantised or not) map ``(n, D, h, w)``."""
        return self.decoder(self.from_code(z_q))

    def _as_map(self, codes: torch.Tensor, space: str | None) -> torch.Tensor:
        codes = self.check_codes(codes, space)
        return codes.view(codes.shape[0], *self.latent_shape(space))

    # -- the interface -------------------------------------------------------------------------
    def encode(self, images: torch.Tensor, space: str | None = None) -> torch.Tensor:
        """Continuous pre-quantisation maps ``z_e`` of ``images``, flattened ``(n, D*h*w)``."""
        self.check_space(space)
        return self.encode_map(images).flatten(1)

    def decode(self, codes: torch.Tensor, space: str | None = None) -> torch.Tensor:
        """Quantise flat maps ``(n, D*h*w)`` to their nearest codes and decode them.

        Gradients pass to ``codes`` by the straight-through estimator (the value is that of
        the quantised map), so optimisation-based inversion works in this space.
        """
        z_e = self._as_map(codes, space)
        z_q = self.quantize(z_e).z_q
        return self.decode_map(z_q + (z_e - z_e.detach()))  # exactly z_q in value

    def decode_continuous(self, codes: torch.Tensor, space: str | None = None) -> torch.Tensor:
        """Decode flat maps without quantising them.

        Smooth in the codes (useful for traversals), but the decoder was trained on
        quantised maps only, so images of maps far from the codebook may be poor.
        """
        return self.decode_map(self._as_map(codes, space))

    def code_frequencies(self) -> torch.Tensor:
        """Relative usage of every code (EMA cluster sizes; uniform before training)."""
        counts = self.ema_cluster_size.detach().float().clamp_min(0.0).cpu()
        total = float(counts.sum())
        if not total > 0:
            return torch.full((self.codebook_size,), 1.0 / self.codebook_size)
        return counts / total

    def sample_latent(self, n: int, generator: torch.Generator | None = None, space: str | None = None) -> torch.Tensor:
        """Flat maps of codes drawn independently per position from the code frequencies.

        Not a learned prior (no PixelCNN): positions are independent, so samples lack the
        global structure of real images.
        """
        self.check_space(space)
        res = int(self.config.latent_resolution)
        indices = torch.multinomial(self.code_frequencies(), n * res * res, replacement=True, generator=generator)
        return self.lookup(indices.view(n, res, res).to(self.codebook.device)).flatten(1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """One pass for training: ``z_e``, its quantisation and the straight-through reconstruction."""
        z_e = self.encode_map(images)
        quantized = self.quantize(z_e)
        z_q_st = z_e + (quantized.z_q - z_e).detach()
        return {"z_e": z_e, "z_q": quantized.z_q, "indices": quantized.indices,
                "reconstruction": self.decode_map(z_q_st)}
