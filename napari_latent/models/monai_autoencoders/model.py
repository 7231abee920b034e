"""MONAI's 2D ``AutoencoderKL`` and ``VQVAE`` as model families of ours (imported, not trained here).

Each family holds the MONAI network itself as its ``network`` submodule (so our state dict is
MONAI's with a ``network.`` prefix) and adapts it to :class:`GenerativeModel`:

- images in [-1, 1] are mapped affinely to the network's ``intensity_range`` before encoding
  and decoded images back to [-1, 1] (not clipped);
- the spatial latent map ``(latent_dim, h, w)`` is a flat code, channel-major;
- ``monai-autoencoderkl``: codes are ``z``; ``encode`` is the posterior mean ``z_mu``,
  ``posterior`` gives ``(z_mu, 2 log z_sigma)``, the prior is standard normal and the
  first layer on codes is ``post_quant_conv``, a 1x1 convolution (SeFa's ``"tiled"`` layout);
- ``monai-vqvae``: codes are the continuous pre-quantisation map (as in our ``vqvae``);
  ``decode`` quantises with the network's codebook and decodes (MONAI's
  ``decode(quantize(z))``); samples draw each position's code from the codebook usage.

MONAI is imported when a model is built, never at import time: without it the families are
registered but building one raises a one-line :class:`UserInputError` naming the extra.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ...errors import UserInputError
from ..base import GenerativeModel, LatentPrior, LatentWeights, register_model
from .config import AutoencoderKLConfig, MonaiConfig, VQVAEConfig, import_monai_nets


def _conv_out(size: int, stride: int, kernel: int, dilation: int, padding: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _transposed_out(size: int, stride: int, kernel: int, dilation: int, padding: int, output_padding: int) -> int:
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


class MonaiAutoencoder(GenerativeModel):
    """What both MONAI families share: the network, the intensity mapping and the flat codes."""

    family = "autoencoder"
    objective = ""  # imported: used, not trained, here
    spaces = ("z",)
    has_encoder = True
    #: The class name in ``monai.networks.nets``.
    monai_class: ClassVar[str] = ""

    def __init__(self, config: MonaiConfig) -> None:
        super().__init__(config)
        nets = import_monai_nets()
        try:
            self.network = getattr(nets, self.monai_class)(**config.network)
        except (TypeError, ValueError, AssertionError) as error:
            message = " ".join(str(error).split()) or type(error).__name__
            raise UserInputError(f"MONAI's {self.monai_class} refuses these constructor arguments: {message}") from None
        self.network.eval()
        self.map_shape = (int(config.latent_dim), *self._latent_size())
        low, high = config.intensity
        # images in [-1, 1] -> network intensities: low + (x + 1) * scale; and back.
        self._low, self._scale = float(low), float(high - low) / 2.0

    def _latent_size(self) -> tuple[int, int]:
        raise NotImplementedError

    # -- description -----------------------------------------------------------------------
    def latent_shape(self, space: str | None = None) -> tuple[int, ...]:
        """``(latent_dim, h, w)``: the latent map (flat codes are channel-major)."""
        self.check_space(space)
        return self.map_shape

    def describe(self) -> dict[str, Any]:
        description = super().describe()
        description["monai_class"] = self.monai_class
        return description

    # -- intensities and shapes ----------------------------------------------------------------
    def to_network(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] as the network's intensities."""
        if self._low == -1.0 and self._scale == 1.0:
            return images
        return (images + 1.0) * self._scale + self._low

    def from_network(self, images: torch.Tensor) -> torch.Tensor:
        """The network's intensities as images in [-1, 1] (affine, not clipped)."""
        if self._low == -1.0 and self._scale == 1.0:
            return images
        return (images - self._low) / self._scale - 1.0

    def as_map(self, codes: torch.Tensor, space: str | None = None) -> torch.Tensor:
        """Flat codes ``(n, latent_dim())`` as latent maps ``(n, c, h, w)``."""
        codes = self.check_codes(codes, space)
        return codes.view(codes.shape[0], *self.map_shape)

    def train(self, mode: bool = True) -> MonaiAutoencoder:
        """Imported networks stay in evaluation mode (no EMA codebook updates, no dropout)."""
        super().train(mode)
        self.network.eval()
        return self


@register_model
class MonaiAutoencoderKL(MonaiAutoencoder):
    """MONAI's ``AutoencoderKL`` (latent diffusion's first stage): a VAE with a spatial latent."""

    name = "monai-autoencoderkl"
    config_class = AutoencoderKLConfig
    has_posterior = True
    monai_class = "AutoencoderKL"

    def _latent_size(self) -> tuple[int, int]:
        size, levels = self.image_size, len(self.config.network.get("channels", (32, 64, 64, 64)))
        factor = 2 ** (levels - 1)
        if size % factor:
            raise UserInputError(f"image size {size} is not divisible by {factor}, the downsampling of this "
                                 f"AutoencoderKL ({levels} levels)")
        return size // factor, size // factor

    def posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z_mu`` and ``2 log z_sigma`` (the clamped log variance) of MONAI's ``encode``, flattened."""
        z_mu, z_sigma = self.network.encode(self.to_network(self.check_images(images)))
        return z_mu.flatten(1), (2.0 * torch.log(z_sigma)).flatten(1)

    def encode(self, images: torch.Tensor, space: str | None = None) -> torch.Tensor:
        """Posterior means ``z_mu``, flattened ``(n, c*h*w)``."""
        self.check_space(space)
        return self.network.encode(self.to_network(self.check_images(images)))[0].flatten(1)

    def decode(self, codes: torch.Tensor, space: str | None = None) -> torch.Tensor:
        """MONAI's ``decode`` of the latent maps, mapped to [-1, 1]."""
        return self.from_network(self.network.decode(self.as_map(codes, space)))

    def latent_weights(self, space: str | None = None) -> LatentWeights:
        """``post_quant_conv``, the 1x1 convolution ``decode`` applies first, tiled over the latent map."""
        space = self.check_space(space)
        weight = _one_by_one(getattr(self.network, "post_quant_conv", None))
        if weight is None:
            return super().latent_weights(space)
        return LatentWeights((weight,), "tiled", self.map_shape[1] * self.map_shape[2])


@register_model
class MonaiVQVAE(MonaiAutoencoder):
    """MONAI's ``VQVAE``: codes are the continuous pre-quantisation map; ``decode`` quantises."""

    name = "monai-vqvae"
    config_class = VQVAEConfig
    monai_class = "VQVAE"

    def _latent_size(self) -> tuple[int, int]:
        network, size = self.config.network, self.image_size
        levels = len(network.get("channels", (96, 96, 192)))
        down = _per_level(network.get("downsample_parameters", (2, 4, 1, 1)), levels)
        up = _per_level(network.get("upsample_parameters", (2, 4, 1, 1, 0)), levels)
        latent = size
        for stride, kernel, dilation, padding in down:
            latent = _conv_out(latent, stride, kernel, dilation, padding)
        latent = _conv_out(latent, 1, 3, 1, 1)  # the encoder's last convolution
        out = _conv_out(latent, 1, 3, 1, 1)  # the decoder's first
        for stride, kernel, dilation, padding, output_padding in up:
            out = _transposed_out(out, stride, kernel, dilation, padding, output_padding)
        if latent < 1 or out != size:
            raise UserInputError(f"this VQVAE does not map {size}-pixel images back to {size} pixels "
                                 f"(it decodes to {out}); check image_size and the up/downsample parameters")
        return latent, latent

    @property
    def quantizer(self) -> nn.Module:
        """MONAI's ``EMAQuantizer`` (codebook ``embedding.weight``, usage ``ema_cluster_size``)."""
        return self.network.quantizer.quantizer

    @property
    def codebook(self) -> torch.Tensor:
        """``(num_embeddings, embedding_dim)``."""
        return self.quantizer.embedding.weight

    def encode_map(self, images: torch.Tensor) -> torch.Tensor:
        """The continuous pre-quantisation map ``(n, c, h, w)`` (MONAI's ``encode``)."""
        return self.network.encode(self.to_network(self.check_images(images)))

    def quantize(self, z_e: torch.Tensor) -> torch.Tensor:
        """The nearest codebook vector at every position, with MONAI's straight-through gradient.

        Uses the quantiser's ``quantize`` and ``embed`` (never its forward, which updates the
        codebook in training mode).
        """
        _, _, indices = self.quantizer.quantize(z_e)
        z_q = self.quantizer.embed(indices)
        return z_e + (z_q - z_e).detach()

    def encode(self, images: torch.Tensor, space: str | None = None) -> torch.Tensor:
        """Pre-quantisation maps, flattened ``(n, c*h*w)``."""
        self.check_space(space)
        return self.encode_map(images).flatten(1)

    def decode(self, codes: torch.Tensor, space: str | None = None) -> torch.Tensor:
        """Quantise the maps and decode them (MONAI's ``decode(quantize(z))``), mapped to [-1, 1]."""
        return self.from_network(self.network.decode(self.quantize(self.as_map(codes, space))))

    def decode_continuous(self, codes: torch.Tensor, space: str | None = None) -> torch.Tensor:
        """Decode without quantising (smooth in the codes, but off the decoder's training inputs)."""
        return self.from_network(self.network.decode(self.as_map(codes, space)))

    def prior(self, space: str | None = None) -> LatentPrior:
        """Not Gaussian: codes are codebook vectors drawn per position (:meth:`sample_latent`)."""
        self.check_space(space)
        return LatentPrior(standard_normal=False)

    def code_frequencies(self) -> torch.Tensor:
        """Relative usage of every code (the EMA cluster sizes; uniform if unused)."""
        counts = self.quantizer.ema_cluster_size.detach().float().clamp_min(0.0).cpu()
        total = float(counts.sum())
        if not total > 0:
            return torch.full((counts.numel(),), 1.0 / counts.numel())
        return counts / total

    def sample_latent(self, n: int, generator: torch.Generator | None = None, space: str | None = None) -> torch.Tensor:
        """Maps of codebook vectors drawn independently per position from the code usage.

        Not a learned prior (MONAI pairs a VQVAE with a transformer prior, not imported):
        samples have local texture but no global structure.
        """
        self.check_space(space)
        _, h, w = self.map_shape
        indices = torch.multinomial(self.code_frequencies(), n * h * w, replacement=True, generator=generator)
        codebook = self.codebook.detach()
        return codebook[indices.to(codebook.device)].view(n, h, w, -1).permute(0, 3, 1, 2).reshape(n, -1).float()

    def latent_weights(self, space: str | None = None) -> LatentWeights:
        """The decoder's first convolution if it is 1x1 (MONAI's is 3x3: then SeFa does not apply)."""
        space = self.check_space(space)
        blocks = getattr(getattr(self.network, "decoder", None), "blocks", None)
        weight = _one_by_one(blocks[0]) if blocks else None
        if weight is None:
            return super().latent_weights(space)
        return LatentWeights((weight,), "tiled", self.map_shape[1] * self.map_shape[2])


def _one_by_one(module: nn.Module | None) -> torch.Tensor | None:
    """The ``(out, in)`` weight of a module that is (or wraps) a 1x1 ``Conv2d``, else None."""
    if module is None:
        return None
    conv = module if isinstance(module, nn.Conv2d) else getattr(module, "conv", None)
    if not isinstance(conv, nn.Conv2d) or tuple(conv.kernel_size) != (1, 1) or conv.groups != 1:
        return None
    return conv.weight[:, :, 0, 0]


def _per_level(parameters: Any, levels: int) -> list[tuple[int, ...]]:
    """MONAI's up/downsample parameters (one tuple, or one per level) as one tuple per level."""
    items = list(parameters)
    if all(isinstance(value, int) for value in items):
        return [tuple(items)] * levels
    return [tuple(int(v) for v in item) for item in items]
