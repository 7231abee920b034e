"""A compact StyleGAN2 for single-channel images (Karras et al. 2020).

"Analyzing and Improving the Image Quality of StyleGAN" (StyleGAN2), written for 32-512
pixel grey-value slices (64 and 128 px are the sizes it is meant for on a CPU; 32 px is for
tests; 256 and 512 px work but want a GPU). It follows the paper's design, not NVIDIA's code:

Generator (``StyleGAN.generator``, one module so a moving average of it can be kept)
    *Mapping network* ``z -> w``: ``z`` is normalised to unit second moment, then
    ``mapping_layers`` fully connected layers with leaky ReLU, with a learning-rate
    multiplier of 0.01 (the paper uses 8 layers of 512; the defaults here are 4 layers of
    128, for small data sets of medical slices). The mean ``w_avg`` of ``w`` (a buffer,
    estimated from prior samples when the model is made, then a running mean during
    training) is the centre of the truncation trick and the start point of
    optimisation-based inversion.

    *Synthesis network* ``w+ -> image``: a learned constant 4x4 input; per resolution
    (4, 8, ..., S) modulated 3x3 convolutions (one at 4x4, two above: the first after x2
    upsampling), each modulated by a style (an affine map of a ``w``), demodulated,
    followed by per-pixel noise with a learned strength, a bias and a leaky ReLU with gain
    sqrt(2). The *skip* architecture: a modulated 1x1 ``toGray`` layer (no
    demodulation) per resolution; the grey-value outputs are upsampled and summed.

Discriminator (``StyleGAN.discriminator``)
    The residual discriminator: a 1x1 ``fromGray`` at the image resolution, residual
    blocks that halve the resolution down to 4x4, then a minibatch standard deviation
    feature (groups of up to 4 images), a 3x3 convolution and two fully connected
    layers to one logit per image.

Choices worth knowing:

* ``num_ws`` and W+. As in StyleGAN2, the styles are indexed so that the ``i``-th
  modulated 3x3 convolution uses ``w[i]`` and the ``toGray`` layer of a resolution uses
  the same ``w`` as the first convolution of the next resolution (the last ``toGray``
  uses the last ``w``). So ``num_ws = (number of 3x3 convolutions) + 1 =
  2 * log2(S) - 2``: 8 at 32 px, 10 at 64 px, 12 at 128 px, 14 at 256 px, 16 at 512 px
  (18 at 1024 px, the familiar 18 x 512 of StyleGAN2). A ``w+`` code is ``num_ws * w_dim``
  numbers.
* Resampling. Upsampling is bilinear (x2) and downsampling in the discriminator is
  antialiased bilinear (/2). In the interior of the image these are exactly the
  separable [1, 3, 3, 1] filter StyleGAN2 uses (``upfirdn2d``); only the borders differ
  (edge replication instead of zero padding). The upsampled feature map is convolved
  with an ordinary modulated 3x3 convolution instead of a fused transposed convolution.
* Equalised learning rate everywhere: weights are stored as N(0, 1) (N(0, 1/m^2) for a
  learning-rate multiplier ``m``) and scaled at run time by ``m / sqrt(fan_in)``.
* Noise. Every 3x3 convolution has a fixed noise image (a buffer ``noise_const`` drawn
  from a fixed seed when the model is made, stored in the checkpoint): :meth:`StyleGAN.decode`
  uses it, so decoding is deterministic (the "const" noise mode of StyleGAN2's
  projector). Training draws fresh noise from the training random generator.
* Output range. StyleGAN has no output non-linearity; the generator's output is used as
  is in training. :meth:`StyleGAN.decode` clamps to [-1, 1] for its consumers with a
  straight-through gradient (the gradient is that of the unclamped output, so inversion
  does not stall on pixels that overshoot).
* Training hooks for the GAN objective: :meth:`StyleGAN.generate_for_training` (no
  truncation, style mixing, random noise, all from the given random generator) and
  :meth:`StyleGAN.after_generator_step` (updates ``w_avg``). The R1 weight is the
  config's ``r1_gamma``. A moving-average copy of ``generator`` should copy its buffers
  (``w_avg``, ``noise_const``) rather than average them. Path-length regularisation is
  not part of the model.

Sizes with the default settings (``base_channels=32``, ``max_channels=256``,
``latent_dim=w_dim=128``, ``mapping_layers=4``)::

    image size   num_ws   generator    discriminator
    32 px        8        1,423,403    2,265,825
    64 px        10       2,702,894    3,511,521
    128 px       12       3,982,385    4,757,217
    256 px       14       5,261,876    6,002,913
    512 px       16       6,541,367    7,248,609
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MismatchError, UserInputError
from .base import ModelConfig, register_model
from .style_spaces import StyleSpacesGAN, straight_through_clamp

NoiseMode = Literal["const", "random", "none"]
NOISE_MODES = ("const", "random", "none")

#: Seed of the fixed noise images (``noise_const``) drawn when a model is made.
CONST_NOISE_SEED = 1234
#: Seed and number of samples of the initial estimate of ``w_avg``.
W_AVG_SEED = 0
W_AVG_SAMPLES = 1024

LEAKY_SLOPE = 0.2
ACTIVATION_GAIN = math.sqrt(2.0)


@dataclasses.dataclass
class StyleGANConfig(ModelConfig):
    """StyleGAN2 settings.

    Parameters
    ----------
    image_size : int
        32 (tests), 64 or 128 (256 and 512 work but are slow on a CPU).
    latent_dim : int
        Size of ``z``, the input of the mapping network.
    base_channels, max_channels : int
        Channel width at the image resolution and its upper bound (widths double per
        halving of the resolution); see :meth:`ModelConfig.channels`. The defaults give
        2.7 M generator parameters at 64 px and 4.0 M at 128 px.
    w_dim : int
        Size of ``w`` (and of each of the ``num_ws`` rows of a ``w+`` code).
    mapping_layers : int
        Fully connected layers of the mapping network (StyleGAN2: 8; 4 by default here,
        for small medical data sets).
    mapping_lr_multiplier : float
        Learning-rate multiplier of the mapping network (StyleGAN2: 0.01).
    truncation_psi : float
        Truncation used when codes in ``z`` are mapped to ``w`` by :meth:`StyleGAN.decode`,
        :meth:`StyleGAN.to_space` and :meth:`StyleGAN.sample_latent`: ``w_avg + psi *
        (w - w_avg)``. 1 turns truncation off; smaller values trade variety for typical
        images. Training never truncates.
    w_avg_beta : float
        Decay of the running mean ``w_avg`` per generator step.
    r1_gamma : float
        Weight of the R1 gradient penalty on real images, read by the GAN objective.
        StyleGAN2-ADA's heuristic is ``0.0002 * S**2 / batch`` (0.03-0.8 at 64 px);
        1.0 errs on the stable side for small data sets.
    style_mixing_prob : float
        Probability that a training batch uses two ``w`` (style mixing regularisation).
    """

    latent_dim: int = 128
    base_channels: int = 32
    max_channels: int = 256
    w_dim: int = 128
    mapping_layers: int = 4
    mapping_lr_multiplier: float = 0.01
    truncation_psi: float = 1.0
    w_avg_beta: float = 0.995
    r1_gamma: float = 1.0
    style_mixing_prob: float = 0.9

    def validate(self) -> None:
        """Raise :class:`UserInputError` for unsupported settings."""
        super().validate()
        if self.w_dim < 1:
            raise UserInputError(f"w_dim must be positive, got {self.w_dim}")
        if self.mapping_layers < 1:
            raise UserInputError(f"mapping_layers must be at least 1, got {self.mapping_layers}")
        if not self.mapping_lr_multiplier > 0:
            raise UserInputError(f"mapping_lr_multiplier must be positive, got {self.mapping_lr_multiplier}")
        if not math.isfinite(self.truncation_psi):
            raise UserInputError(f"truncation_psi must be a finite number, got {self.truncation_psi}")
        if not 0.0 <= self.w_avg_beta <= 1.0:
            raise UserInputError(f"w_avg_beta must be in [0, 1], got {self.w_avg_beta}")
        if not (math.isfinite(self.r1_gamma) and self.r1_gamma >= 0):
            raise UserInputError(f"r1_gamma must be zero or positive, got {self.r1_gamma}")
        if not 0.0 <= self.style_mixing_prob <= 1.0:
            raise UserInputError(f"style_mixing_prob must be in [0, 1], got {self.style_mixing_prob}")

    @property
    def resolutions(self) -> list[int]:
        """Feature-map resolutions of the synthesis network: 4, 8, ..., ``image_size``."""
        return [2 ** k for k in range(2, int(math.log2(self.image_size)) + 1)]

    @property
    def num_ws(self) -> int:
        """Number of style inputs: one per 3x3 convolution plus one (see the module docstring)."""
        return 2 * len(self.resolutions)


# -- building blocks -------------------------------------------------------------------------

def leaky_relu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU (slope 0.2) with gain sqrt(2), which keeps unit-variance signals at unit variance."""
    return F.leaky_relu(x, LEAKY_SLOPE) * ACTIVATION_GAIN


def upsample(x: torch.Tensor) -> torch.Tensor:
    """x2 bilinear upsampling (the [1, 3, 3, 1] filter of StyleGAN2 away from the borders)."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def downsample(x: torch.Tensor) -> torch.Tensor:
    """/2 antialiased bilinear downsampling (the [1, 3, 3, 1] filter of StyleGAN2 away from the borders)."""
    return F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False, antialias=True)


class EqualizedLinear(nn.Module):
    """Fully connected layer with an equalised learning rate.

    The stored weight is N(0, 1 / lr_multiplier**2) and multiplied at run time by
    ``lr_multiplier / sqrt(in_features)``, so the effective weight starts as
    N(0, 1 / in_features) while the optimiser sees a parameter of unit scale (divided
    by the multiplier). The effective bias starts at ``bias_init``.

    Parameters
    ----------
    in_features, out_features : int
    bias_init : float
        Initial effective bias (1 for the style affine layers).
    lr_multiplier : float
        Learning-rate multiplier (0.01 in the mapping network).
    activation : bool
        Apply the leaky ReLU with gain sqrt(2).
    """

    def __init__(self, in_features: int, out_features: int, bias_init: float = 0.0, lr_multiplier: float = 1.0,
                 activation: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_multiplier))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        return leaky_relu(out) if self.activation else out

    def extra_repr(self) -> str:
        out_features, in_features = self.weight.shape
        return f"{in_features}, {out_features}, lr_multiplier={self.bias_gain:g}, activation={self.activation}"


class EqualizedConv2d(nn.Module):
    """Convolution with an equalised learning rate (weights N(0, 1) times ``1 / sqrt(fan_in)``).

    Parameters
    ----------
    in_channels, out_channels, kernel_size : int
    bias : bool
    activation : bool
        Apply the leaky ReLU with gain sqrt(2).
    down : bool
        Halve the resolution (antialiased) before the convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: bool = True, down: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2
        self.activation = activation
        self.down = down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = downsample(x)
        out = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.padding)
        return leaky_relu(out) if self.activation else out


class ModulatedConv2d(nn.Module):
    """Convolution whose input channels are scaled per sample by a style (StyleGAN2 weight modulation).

    Modulation ``w'[o, i, k] = w[o, i, k] * s[i]`` and demodulation
    ``w''[o, i, k] = w'[o, i, k] / sqrt(sum_{i, k} w'[o, i, k]**2 + eps)`` are carried
    out on the activations (scale the input by ``s``, convolve with the shared weight,
    scale the output by the demodulation factor), which is the same computation without
    per-sample weights. With demodulation, unit-variance inputs give unit-variance outputs
    whatever the scale of the style.

    Parameters
    ----------
    in_channels, out_channels, kernel_size : int
    demodulate : bool
        Normalise each output channel (off for the ``toGray`` layers).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, demodulate: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2
        self.demodulate = demodulate

    def forward(self, x: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        """Convolve ``x`` ``(n, in, H, W)`` modulated by ``styles`` ``(n, in)``."""
        weight = self.weight * self.weight_gain
        out = F.conv2d(x * styles[:, :, None, None], weight, padding=self.padding)
        if self.demodulate:
            # squared norm of each sample's modulated weight per output channel: (n, out)
            squared_norm = styles.square() @ weight.square().sum(dim=(2, 3)).t()
            out = out * torch.rsqrt(squared_norm + 1e-8)[:, :, None, None]
        return out


# -- generator -------------------------------------------------------------------------------

class MappingNetwork(nn.Module):
    """``z -> w``: second-moment normalisation and fully connected layers; tracks ``w_avg``.

    Parameters
    ----------
    config : StyleGANConfig
    """

    def __init__(self, config: StyleGANConfig) -> None:
        super().__init__()
        sizes = [config.latent_dim] + [config.w_dim] * config.mapping_layers
        self.layers = nn.Sequential(*[
            EqualizedLinear(sizes[i], sizes[i + 1], lr_multiplier=config.mapping_lr_multiplier, activation=True)
            for i in range(config.mapping_layers)])
        self.register_buffer("w_avg", torch.zeros(config.w_dim))

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        """Map ``z`` ``(n, latent_dim)`` to ``w`` ``(n, w_dim)``, truncated toward ``w_avg`` by ``psi``."""
        z = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        w = self.layers(z)
        return w if truncation_psi == 1 else self.truncate(w, truncation_psi)

    def truncate(self, w: torch.Tensor, psi: float) -> torch.Tensor:
        """``w_avg + psi * (w - w_avg)`` for ``w`` of shape ``(..., w_dim)``."""
        return torch.lerp(self.w_avg.to(w.dtype), w, psi)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution with demodulation, noise, bias and leaky ReLU.

    Parameters
    ----------
    in_channels, out_channels : int
    w_dim : int
    resolution : int
        Output resolution (the size of the noise image).
    up : bool
        Upsample the input x2 first.
    noise_seed : int
        Seed of the fixed noise image ``noise_const``.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool,
                 noise_seed: int) -> None:
        super().__init__()
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1.0)
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, demodulate=True)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        noise = torch.randn(resolution, resolution, generator=torch.Generator().manual_seed(noise_seed))
        self.register_buffer("noise_const", noise)
        self.resolution = resolution
        self.up = up

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: NoiseMode = "const",
                generator: torch.Generator | None = None) -> torch.Tensor:
        if self.up:
            x = upsample(x)
        x = self.conv(x, self.affine(w))
        if noise_mode == "const":
            x = x + self.noise_const.to(x.dtype) * self.noise_strength
        elif noise_mode == "random":
            device = generator.device if generator is not None else x.device
            shape = (x.shape[0], 1, self.resolution, self.resolution)
            noise = torch.randn(shape, generator=generator, device=device).to(x.device, x.dtype)
            x = x + noise * self.noise_strength
        return leaky_relu(x + self.bias[None, :, None, None])


class ToGray(nn.Module):
    """Modulated 1x1 convolution to one channel, without demodulation (StyleGAN2's toRGB)."""

    def __init__(self, in_channels: int, w_dim: int) -> None:
        super().__init__()
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1.0)
        self.conv = ModulatedConv2d(in_channels, 1, 1, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, self.affine(w)) + self.bias[None, :, None, None]


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network.

    At 4x4 the input is the learned constant and there is one 3x3 layer; above, the
    input is upsampled by the first of two 3x3 layers. The block's ``toGray`` output is
    added to the upsampled grey-value image of the previous blocks (skip architecture).
    A block uses ``num_conv + 1`` consecutive ``w`` (the last for ``toGray``, shared with
    the first layer of the next block).
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, noise_seed: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.first = resolution == 4
        if self.first:
            self.const = nn.Parameter(torch.randn(out_channels, 4, 4))
            self.convs = nn.ModuleList([SynthesisLayer(out_channels, out_channels, w_dim, 4, False, noise_seed)])
        else:
            self.convs = nn.ModuleList([
                SynthesisLayer(in_channels, out_channels, w_dim, resolution, True, noise_seed),
                SynthesisLayer(out_channels, out_channels, w_dim, resolution, False, noise_seed + 1)])
        self.to_gray = ToGray(out_channels, w_dim)

    @property
    def num_conv(self) -> int:
        """Number of modulated 3x3 convolutions (1 at 4x4, else 2)."""
        return len(self.convs)

    def forward(self, x: torch.Tensor | None, gray: torch.Tensor | None, ws: torch.Tensor,
                noise_mode: NoiseMode = "const", generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and grey-value image at this resolution from those of the previous block.

        ``ws`` is ``(n, num_conv + 1, w_dim)``; ``x`` and ``gray`` are None for the first block.
        """
        if self.first:
            x = self.const[None].expand(ws.shape[0], -1, -1, -1)
        for i, layer in enumerate(self.convs):
            x = layer(x, ws[:, i], noise_mode, generator)
        out = self.to_gray(x, ws[:, self.num_conv])
        gray = out if gray is None else upsample(gray) + out
        return x, gray


class SynthesisNetwork(nn.Module):
    """``w+`` ``(n, num_ws, w_dim)`` to images ``(n, 1, S, S)`` (unbounded; about [-1, 1] once trained)."""

    def __init__(self, config: StyleGANConfig) -> None:
        super().__init__()
        self.w_dim = config.w_dim
        blocks = []
        in_channels = config.channels(4)
        for index, resolution in enumerate(config.resolutions):
            out_channels = config.channels(resolution)
            blocks.append(SynthesisBlock(in_channels, out_channels, config.w_dim, resolution,
                                         noise_seed=CONST_NOISE_SEED + 2 * index))
            in_channels = out_channels
        self.blocks = nn.ModuleList(blocks)
        self.num_ws = sum(block.num_conv for block in self.blocks) + 1
        assert self.num_ws == config.num_ws

    def forward(self, ws: torch.Tensor, noise_mode: NoiseMode = "const",
                generator: torch.Generator | None = None) -> torch.Tensor:
        if noise_mode not in NOISE_MODES:
            raise UserInputError(f"unknown noise mode {noise_mode!r}; use one of {', '.join(NOISE_MODES)}")
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise MismatchError(f"styles of shape {tuple(ws.shape)} do not fit: the synthesis network needs "
                                f"(n, {self.num_ws}, {self.w_dim})")
        x = gray = None
        start = 0
        for block in self.blocks:
            x, gray = block(x, gray, ws[:, start:start + block.num_conv + 1], noise_mode, generator)
            start += block.num_conv
        return gray


class StyleGenerator(nn.Module):
    """Mapping and synthesis networks (with ``w_avg`` and the fixed noise): the whole generator."""

    def __init__(self, config: StyleGANConfig) -> None:
        super().__init__()
        self.mapping = MappingNetwork(config)
        self.synthesis = SynthesisNetwork(config)

    @property
    def num_ws(self) -> int:
        """Number of style inputs of the synthesis network."""
        return self.synthesis.num_ws

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, noise_mode: NoiseMode = "const",
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Images ``(n, 1, S, S)`` (unclamped) of ``z`` ``(n, latent_dim)``, one ``w`` for all layers."""
        w = self.mapping(z, truncation_psi)
        ws = w[:, None].expand(-1, self.num_ws, -1)
        return self.synthesis(ws, noise_mode, generator)


# -- discriminator ---------------------------------------------------------------------------

def minibatch_std(x: torch.Tensor, group_size: int = 4) -> torch.Tensor:
    """Append the minibatch standard deviation feature as one more channel.

    The batch is split into ``ceil(n / group_size)`` groups, image ``i`` in group
    ``i % groups`` (as StyleGAN2's reshape does), so the groups hold ``group_size`` images
    when ``n`` is a multiple of it and otherwise sizes that differ by at most one (5 images:
    3 and 2). The feature of an image is the standard deviation over its group of each
    feature value, averaged over channels and positions. A single image gets (almost) 0.

    Parameters
    ----------
    x : Tensor
        ``(n, C, H, W)``.
    group_size : int

    Returns
    -------
    Tensor
        ``(n, C + 1, H, W)``.
    """
    n = x.shape[0]
    groups = -(-n // group_size)
    group_of = torch.arange(n, device=x.device) % groups
    membership = F.one_hot(group_of, groups).to(x.dtype).t()  # (groups, n)
    counts = membership.sum(dim=1)
    flat = x.flatten(1)
    mean = (membership @ flat) / counts[:, None]
    variance = (membership @ (flat - mean[group_of]).square()) / counts[:, None]
    std = torch.sqrt(variance + 1e-8).mean(dim=1)  # (groups,)
    feature = std[group_of].view(n, 1, 1, 1).expand(n, 1, x.shape[2], x.shape[3])
    return torch.cat([x, feature], dim=1)


class DiscriminatorBlock(nn.Module):
    """Residual block: two 3x3 convolutions (the second after halving the resolution) plus a 1x1 skip."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = EqualizedConv2d(in_channels, in_channels, 3)
        self.conv1 = EqualizedConv2d(in_channels, out_channels, 3, down=True)
        self.skip = EqualizedConv2d(in_channels, out_channels, 1, bias=False, activation=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) * math.sqrt(0.5)


class StyleDiscriminator(nn.Module):
    """StyleGAN2's residual discriminator: images ``(n, 1, S, S)`` to logits ``(n,)``."""

    def __init__(self, config: StyleGANConfig, mbstd_group_size: int = 4) -> None:
        super().__init__()
        size = config.image_size
        self.from_gray = EqualizedConv2d(1, config.channels(size), 1)
        resolutions = [r for r in reversed(config.resolutions) if r > 4]
        self.blocks = nn.Sequential(*[DiscriminatorBlock(config.channels(r), config.channels(r // 2))
                                      for r in resolutions])
        channels = config.channels(4)
        self.mbstd_group_size = mbstd_group_size
        self.conv = EqualizedConv2d(channels + 1, channels, 3)
        self.fc = EqualizedLinear(channels * 16, channels, activation=True)
        self.out = EqualizedLinear(channels, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.from_gray(images))
        x = self.conv(minibatch_std(x, self.mbstd_group_size))
        return self.out(self.fc(x.flatten(1))).squeeze(1)


# -- the model -------------------------------------------------------------------------------

@register_model
class StyleGAN(StyleSpacesGAN):
    """StyleGAN2 with latent spaces ``z`` (prior), ``w`` (mapped) and ``w+`` (one ``w`` per style input).

    See the module docstring for the architecture. ``w_avg`` is estimated from 1024
    mapped samples when the model is made and then tracked during training.
    """

    name = "stylegan"
    config_class = StyleGANConfig
    #: No fp16 autocast: the demodulation's sums of squared weights and styles, the
    #: unclamped synthesis activations and the R1 double backward leave float16's range
    #: (StyleGAN2-ADA needed clamping and fp32 low-resolution layers for fp16); bfloat16
    #: has float32's range.
    mixed_precision = ("bf16",)

    config: StyleGANConfig

    def __init__(self, config: StyleGANConfig) -> None:
        super().__init__(config)
        self.generator = StyleGenerator(config)
        self.discriminator = StyleDiscriminator(config)
        self._last_training_ws: torch.Tensor | None = None
        self.reset_w_avg()

    # -- description -----------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """As :meth:`GenerativeModel.describe`, with ``num_ws`` and the parameter counts of both halves."""
        return {**super().describe(), "num_ws": self.num_ws,
                "generator_parameters": sum(p.numel() for p in self.generator.parameters()),
                "discriminator_parameters": sum(p.numel() for p in self.discriminator.parameters())}

    # -- latent spaces -----------------------------------------------------------------------
    def map_z(self, z: torch.Tensor, target: str) -> torch.Tensor:
        """``w`` of ``z`` (mapping with the config's truncation), repeated for ``w+``."""
        w = self.generator.mapping(z, self.config.truncation_psi)
        return w if target == "w" else w.repeat(1, self.num_ws)

    def truncate(self, w: torch.Tensor, psi: float) -> torch.Tensor:
        """The truncation trick ``w_avg + psi * (w - w_avg)``.

        ``w`` may be flat ``w`` codes ``(n, w_dim)``, flat ``w+`` codes
        ``(n, num_ws * w_dim)`` or ``w+`` codes ``(n, num_ws, w_dim)``.
        """
        if w.shape[-1] == self.config.w_dim:
            return self.generator.mapping.truncate(w, psi)
        return self.generator.mapping.truncate(w.reshape(*w.shape[:-1], self.num_ws, -1), psi).reshape(w.shape)

    def style_affines(self) -> list[list[torch.Tensor]]:
        """Effective weights ``(channels, w_dim)`` of the style affine layers fed by each style input."""
        per_input: list[list[torch.Tensor]] = [[] for _ in range(self.num_ws)]
        start = 0
        for block in self.generator.synthesis.blocks:
            for i, layer in enumerate(block.convs):
                per_input[start + i].append(layer.affine.weight * layer.affine.weight_gain)
            per_input[start + block.num_conv].append(block.to_gray.affine.weight * block.to_gray.affine.weight_gain)
            start += block.num_conv
        return per_input

    def mapping_input_weight(self) -> torch.Tensor:
        """The effective weight of the mapping's first layer ``(units, latent_dim)``."""
        layer = self.generator.mapping.layers[0]
        return layer.weight * layer.weight_gain

    @torch.no_grad()
    def reset_w_avg(self, samples: int = W_AVG_SAMPLES, seed: int = W_AVG_SEED) -> None:
        """Set ``w_avg`` to the mean ``w`` of ``samples`` prior samples (fixed ``seed``)."""
        z = torch.randn(samples, self.config.latent_dim, generator=torch.Generator().manual_seed(seed))
        self.w_avg.copy_(self.generator.mapping(z.to(self.w_avg.device)).mean(dim=0))

    # -- images ------------------------------------------------------------------------------
    def synthesize(self, ws: torch.Tensor, noise_mode: NoiseMode = "const",
                   generator: torch.Generator | None = None) -> torch.Tensor:
        """Unclamped images of styles ``ws`` ``(n, num_ws, w_dim)``.

        Parameters
        ----------
        ws : Tensor
        noise_mode : {"const", "random", "none"}
            The fixed noise images (deterministic), fresh noise from ``generator``, or none.
        generator : torch.Generator, optional
            Source of the random noise.
        """
        return self.generator.synthesis(ws, noise_mode, generator)

    def decode(self, codes: torch.Tensor, space: str | None = None) -> torch.Tensor:
        """Images ``(n, 1, S, S)`` in [-1, 1] of flat codes in ``space`` (deterministic: fixed noise).

        ``z`` codes are mapped with the config's truncation. The output is clamped to
        [-1, 1] with a straight-through gradient.
        """
        space = self.check_space(space)
        ws = self.to_space(codes, space, "w+").view(-1, self.num_ws, self.config.w_dim)
        return straight_through_clamp(self.synthesize(ws, "const"))

    # -- training ----------------------------------------------------------------------------
    def generate_for_training(self, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Unclamped images of prior codes ``z`` with style mixing and random noise, all from ``generator``.

        No truncation. With probability ``style_mixing_prob`` the batch takes its styles
        from index ``cutoff`` on (``1 <= cutoff < num_ws``, random) from the ``w`` of
        other random ``z``. The ``w`` of ``z`` are kept for :meth:`after_generator_step`.
        """
        z = self.check_codes(z, "z")
        w = self.generator.mapping(z)
        ws = w[:, None].expand(-1, self.num_ws, -1)
        mix = float(torch.rand((), generator=generator)) < self.config.style_mixing_prob
        cutoff = int(torch.randint(1, self.num_ws, (), generator=generator))
        if mix:
            device = generator.device if generator is not None else z.device
            other_z = torch.randn(z.shape, generator=generator, device=device).to(z.device)
            other_w = self.generator.mapping(other_z)
            ws = torch.cat([ws[:, :cutoff], other_w[:, None].expand(-1, self.num_ws - cutoff, -1)], dim=1)
        self._last_training_ws = w.detach()
        return self.synthesize(ws, "random", generator)

    @torch.no_grad()
    def after_generator_step(self) -> None:
        """Move ``w_avg`` toward the mean ``w`` of the last training batch.

        ``w_avg <- beta * w_avg + (1 - beta) * mean`` with ``beta = w_avg_beta``; nothing
        happens if no batch was generated since the last call.
        """
        if self._last_training_ws is None:
            return
        batch_mean = self._last_training_ws.mean(dim=0).to(self.w_avg.dtype)
        self.w_avg.copy_(torch.lerp(batch_mean, self.w_avg, self.config.w_avg_beta))
        self._last_training_ws = None

    def discriminate(self, images: torch.Tensor) -> torch.Tensor:
        """Real/fake logits ``(n,)`` of images ``(n, 1, S, S)``."""
        return self.discriminator(self.check_images(images))
