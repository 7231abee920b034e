"""StyleGAN2-ADA's generator and discriminator, re-implemented from the papers.

Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN" (StyleGAN2) and
"Training Generative Adversarial Networks with Limited Data" (StyleGAN2-ADA). The modules
and their parameter names follow the layout of the official snapshots, so a snapshot's
state dict loads as is (``mapping.fc0.weight``, ``synthesis.b8.conv0.affine.bias``, ...).
The numbers were matched against reference outputs of the official code (see the tests).

Generator
    *Mapping* ``z -> w``: ``z`` (and the embedded class label, when ``c_dim > 0``) are
    normalised to unit second moment; ``num_layers`` fully connected layers (leaky ReLU,
    learning-rate multiplier 0.01); ``w`` broadcast to ``num_ws`` rows; truncation
    ``w_avg + psi * (w - w_avg)`` on all rows or the first ``truncation_cutoff``.

    *Synthesis* ``ws -> image``: blocks at 4, 8, ..., ``img_resolution`` with channels
    ``min(channel_base // res, channel_max)``. The 4x4 block starts from a learned constant
    and has one modulated 3x3 convolution (``conv1``); the others have two (``conv0``
    upsamples by 2). Each convolution adds per-pixel noise (``const``: the stored
    ``noise_const``; ``random``; ``none``), a bias, a leaky ReLU with gain sqrt(2) and,
    with ``conv_clamp``, a clamp. Architectures: ``skip`` (a ``torgb`` per block, the
    images upsampled and summed; the default), ``resnet`` (a 1x1 residual path scaled by
    sqrt(1/2); one ``torgb`` at the end) and ``orig`` (one ``torgb`` at the end). A block
    uses ``num_conv + num_torgb`` consecutive rows of ``ws``, and consecutive blocks share
    one (the ``torgb`` row of one block is the first row of the next).

Discriminator
    Blocks from ``img_resolution`` down to 8 (``fromrgb`` 1x1 in the first block, or in
    every block for ``skip``; two 3x3 convolutions, the second with /2 downsampling; a 1x1
    residual path for ``resnet``), then the 4x4 epilogue: minibatch standard deviation
    (groups of ``mbstd_group_size``), a 3x3 convolution and two fully connected layers; a
    conditional discriminator projects its output onto a mapped class embedding.

Half precision (``num_fp16_res``) is used only on CUDA, as in the official code's
mixed-precision layers; on the CPU every layer runs in float32.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import nn

from ...errors import MismatchError, UserInputError
from .ops import (
    ACTIVATION_GAINS,
    bias_act,
    conv2d_resample,
    downsample2d,
    modulated_conv2d,
    modulated_conv_bias_act,
    setup_filter,
    upsample2d,
    upsample_conv_weight,
)

#: Compute the x2 upsampling convolutions by phases (:func:`.ops.upsample_conv2d`) instead of a
#: transposed convolution and a separable filter pass (the default: faster on CPUs with channels-last data).
UPSAMPLE_BY_PHASES = False

NoiseMode = Literal["const", "random", "none"]
NOISE_MODES = ("const", "random", "none")
ARCHITECTURES = ("orig", "skip", "resnet")


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale each row to unit mean square."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature channels at a resolution: ``min(channel_base // resolution, channel_max)``."""
    return int(min(channel_base // resolution, channel_max))


def fp16_resolution(img_resolution: int, num_fp16_res: int) -> int:
    """The lowest resolution whose blocks use half precision (on CUDA)."""
    return max(2 ** (int(np.log2(img_resolution)) + 1 - num_fp16_res), 8)


def _compute_dtype(use_fp16: bool, x: torch.Tensor, force_fp32: bool) -> torch.dtype:
    return torch.float16 if use_fp16 and not force_fp32 and x.device.type == "cuda" else torch.float32


class FullyConnectedLayer(nn.Module):
    """A fully connected layer with an equalised learning rate (``weight_gain = lr_multiplier / sqrt(in)``)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0) -> None:
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def effective_weight(self) -> torch.Tensor:
        """The weight as applied: ``weight * weight_gain``."""
        return self.weight * self.weight_gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.effective_weight().to(x.dtype)
        # the bias is scaled in the input's dtype (what float16 layers on CUDA see too)
        bias = None if self.bias is None else self.bias.to(x.dtype) * self.bias_gain
        if bias is None or self.activation != "linear":
            return bias_act(x @ weight.t(), bias, self.activation, ACTIVATION_GAINS[self.activation])
        return torch.addmm(bias.unsqueeze(0), x, weight.t())  # one fused call for the linear layers


class MappingNetwork(nn.Module):
    """``(z, c) -> w`` (or the class embedding of a conditional discriminator when ``z_dim == 0``)."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int | None, num_layers: int = 8,
                 embed_features: int | None = None, layer_features: int | None = None, activation: str = "lrelu",
                 lr_multiplier: float = 0.01, w_avg_beta: float | None = 0.995) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, c_dim, w_dim, num_ws, num_layers
        embed_features = (w_dim if embed_features is None else embed_features) if c_dim > 0 else 0
        layer_features = w_dim if layer_features is None else layer_features
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(features[i], features[i + 1], activation=activation,
                                                        lr_multiplier=lr_multiplier))
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor | None, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> torch.Tensor:
        """``w`` rows ``(n, num_ws, w_dim)`` (``(n, w_dim)`` without ``num_ws``)."""
        x = None
        if self.z_dim > 0:
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if self.num_ws is not None:
            x = x[:, None].repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            w_avg = self.w_avg.to(x.dtype)
            if self.num_ws is None or truncation_cutoff is None:
                x = torch.lerp(w_avg, x, truncation_psi)
            else:
                x = torch.cat([torch.lerp(w_avg, x[:, :truncation_cutoff], truncation_psi),
                               x[:, truncation_cutoff:]], dim=1)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally upsampling), noise, bias, leaky ReLU, clamp."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3,
                 up: int = 1, use_noise: bool = True, activation: str = "lrelu", conv_clamp: float | None = None,
                 ) -> None:
        super().__init__()
        self.resolution, self.up, self.use_noise = resolution, up, use_noise
        self.activation, self.conv_clamp = activation, conv_clamp
        self.padding = kernel_size // 2
        self.act_gain = ACTIVATION_GAINS[activation]
        self.register_buffer("resample_filter", setup_filter())
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self._phase_cache: tuple[tuple, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: NoiseMode = "const", gain: float = 1.0,
                generator: torch.Generator | None = None, noise_map: torch.Tensor | None = None) -> torch.Tensor:
        """``noise_map`` (``(n or 1, 1, res, res)``), when given, replaces the noise of ``noise_mode``."""
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_map is not None:
            noise = noise_map * self.noise_strength
        elif self.use_noise and noise_mode == "random":
            shape = (x.shape[0], 1, self.resolution, self.resolution)
            device = generator.device if generator is not None else x.device
            noise = torch.randn(shape, generator=generator, device=device).to(x.device) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        if x.dtype == torch.float16:  # as the official fp16 layers: pre-normalise against overflow
            weight = self.weight / self.weight.norm(float("inf"), dim=(1, 2, 3), keepdim=True)
            styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
        else:
            weight = self.weight
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        if self.activation == "lrelu":
            phases = self._phase_weight(weight) if self.up == 2 and UPSAMPLE_BY_PHASES else None
            return modulated_conv_bias_act(x, weight, styles, self.bias, up=self.up, padding=self.padding,
                                           f=self.resample_filter, noise=noise, gain=self.act_gain * gain, clamp=clamp,
                                           phase_weight=phases)
        x = modulated_conv2d(x, weight, styles, demodulate=True, up=self.up, padding=self.padding,
                             f=self.resample_filter, noise=noise)
        return bias_act(x, self.bias, self.activation, self.act_gain * gain, clamp)


    def _phase_weight(self, weight: torch.Tensor) -> torch.Tensor | None:
        """The upsampling convolution's phase weight, kept while the weight and filter are unchanged (inference)."""
        if weight is not self.weight or (torch.is_grad_enabled() and self.weight.requires_grad):
            return None
        key = (self.weight.data_ptr(), self.weight._version, self.resample_filter.data_ptr(),
               self.resample_filter._version, self.weight.device)
        if self._phase_cache is None or self._phase_cache[0] != key:
            with torch.no_grad():
                self._phase_cache = (key, upsample_conv_weight(self.weight, self.resample_filter))
        return self._phase_cache[1]


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution to the image channels, without demodulation."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, padding=self.padding)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class Conv2dLayer(nn.Module):
    """Convolution with an equalised learning rate, optional resampling, bias, activation and clamp."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", up: int = 1, down: int = 1, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.activation, self.up, self.down, self.conv_clamp = activation, up, down, conv_clamp
        self.register_buffer("resample_filter", setup_filter())
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.act_gain = ACTIVATION_GAINS[activation]
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = self.weight * self.weight_gain
        x = conv2d_resample(x, w, self.resample_filter, up=self.up, down=self.down, padding=self.padding)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, self.activation, self.act_gain * gain, clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network (see the module docstring)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: str = "skip", conv_clamp: float | None = None, use_fp16: bool = False,
                 use_noise: bool = True) -> None:
        super().__init__()
        self.in_channels, self.resolution, self.architecture = in_channels, resolution, architecture
        self.is_last, self.use_fp16 = is_last, use_fp16
        self.register_buffer("resample_filter", setup_filter())
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, use_noise=use_noise,
                                        conv_clamp=conv_clamp)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, use_noise=use_noise,
                                    conv_clamp=conv_clamp)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor,
                noise_mode: NoiseMode = "const", force_fp32: bool = False,
                generator: torch.Generator | None = None, noise: list[torch.Tensor | None] | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``noise``: explicit noise maps of the block's layers (``conv0`` first), or None."""
        dtype = _compute_dtype(self.use_fp16, ws, force_fp32)
        rows = iter(ws.unbind(dim=1))
        maps = iter(noise if noise is not None else [None, None])
        if self.in_channels == 0:
            x = self.const.to(dtype)[None].expand(ws.shape[0], -1, -1, -1)
            if ws.device.type == "cpu":  # oneDNN's convolutions are faster on channels-last tensors
                x = x.contiguous(memory_format=torch.channels_last)
        else:
            x = x.to(dtype)
        if self.in_channels == 0:
            x = self.conv1(x, next(rows), noise_mode, generator=generator, noise_map=next(maps))
        elif self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, next(rows), noise_mode, generator=generator, noise_map=next(maps))
            x = self.conv1(x, next(rows), noise_mode, gain=math.sqrt(0.5), generator=generator, noise_map=next(maps))
            x = y + x
        else:
            x = self.conv0(x, next(rows), noise_mode, generator=generator, noise_map=next(maps))
            x = self.conv1(x, next(rows), noise_mode, generator=generator, noise_map=next(maps))
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(rows)).to(torch.float32)
            img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    """``ws`` ``(n, num_ws, w_dim)`` to images ``(n, img_channels, S, S)`` (unclamped)."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 0, architecture: str = "skip",
                 conv_clamp: float | None = None, use_noise: bool = True) -> None:
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2 ** i for i in range(2, int(np.log2(img_resolution)) + 1)]
        lowest_fp16 = fp16_resolution(img_resolution, num_fp16_res)
        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels_at(res // 2, channel_base, channel_max) if res > 4 else 0
            block = SynthesisBlock(in_channels, channels_at(res, channel_base, channel_max), w_dim, res,
                                   img_channels, is_last=res == img_resolution, architecture=architecture,
                                   conv_clamp=conv_clamp, use_fp16=res >= lowest_fp16, use_noise=use_noise)
            self.num_ws += block.num_conv
            if res == img_resolution:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def blocks(self) -> list[SynthesisBlock]:
        """The blocks from 4x4 up."""
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def noise_layers(self) -> list[SynthesisLayer]:
        """The layers with noise inputs, in order (the order of :meth:`forward`'s ``noise``)."""
        layers = []
        for block in self.blocks():
            for name in ("conv0", "conv1"):
                layer = getattr(block, name, None)
                if layer is not None and layer.use_noise:
                    layers.append(layer)
        return layers

    def forward(self, ws: torch.Tensor, noise_mode: NoiseMode = "const", force_fp32: bool = False,
                generator: torch.Generator | None = None, noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Images of ``ws``.

        ``noise``: one map ``(n or 1, 1, r, r)`` per :meth:`noise_layers` entry, used instead
        of ``noise_mode``'s noise.
        """
        if noise is not None and len(noise) != len(self.noise_layers()):
            raise MismatchError(f"{len(noise)} noise maps given; the synthesis network has {len(self.noise_layers())}")
        if noise_mode not in NOISE_MODES:
            raise UserInputError(f"unknown noise mode {noise_mode!r}; use one of {', '.join(NOISE_MODES)}")
        if ws.ndim != 3 or tuple(ws.shape[1:]) != (self.num_ws, self.w_dim):
            raise MismatchError(f"styles of shape {tuple(ws.shape)} do not fit: the synthesis network needs "
                                f"(n, {self.num_ws}, {self.w_dim})")
        ws = ws.to(torch.float32)
        x = img = None
        start = 0
        maps = iter(noise) if noise is not None else None
        for block in self.blocks():
            block_noise = None
            if maps is not None:
                layers = [getattr(block, name) for name in ("conv0", "conv1") if hasattr(block, name)]
                block_noise = [next(maps) if layer.use_noise else None for layer in layers]
            x, img = block(x, img, ws[:, start:start + block.num_conv + block.num_torgb], noise_mode,
                           force_fp32, generator, block_noise)
            start += block.num_conv
        return img


class Generator(nn.Module):
    """Mapping and synthesis networks."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: dict | None = None, synthesis_kwargs: dict | None = None) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **(synthesis_kwargs or {}))
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, **(mapping_kwargs or {}))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: NoiseMode = "const") -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi, truncation_cutoff)
        return self.synthesis(ws, noise_mode)


# -- discriminator ---------------------------------------------------------------------------------

class DiscriminatorBlock(nn.Module):
    """One resolution of the discriminator (see the module docstring)."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, resolution: int, img_channels: int,
                 architecture: str = "resnet", activation: str = "lrelu", conv_clamp: float | None = None,
                 use_fp16: bool = False) -> None:
        super().__init__()
        self.in_channels, self.resolution, self.architecture, self.use_fp16 = (
            in_channels, resolution, architecture, use_fp16)
        self.register_buffer("resample_filter", setup_filter())
        if in_channels == 0 or architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, activation=activation, conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, activation=activation, conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, activation=activation, down=2, conv_clamp=conv_clamp)
        if architecture == "resnet":
            self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, force_fp32: bool = False,
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        reference = x if x is not None else img
        dtype = _compute_dtype(self.use_fp16, reference, force_fp32)
        if x is not None:
            x = x.to(dtype)
        if self.in_channels == 0 or self.architecture == "skip":
            y = self.fromrgb(img.to(dtype))
            x = x + y if x is not None else y
            img = downsample2d(img, self.resample_filter) if self.architecture == "skip" else None
        if self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x)
            x = self.conv1(x, gain=math.sqrt(0.5))
            x = y + x
        else:
            x = self.conv1(self.conv0(x))
        return x, img


def minibatch_stddev(x: torch.Tensor, group_size: int | None = 4, num_channels: int = 1) -> torch.Tensor:
    """Append ``num_channels`` minibatch standard deviation features.

    The batch is split into groups of ``min(group_size, n)`` images, image ``i`` in group
    ``i % (n // group)``; ``n`` must be a multiple of the group size.
    """
    n, c, h, w = x.shape
    group = min(group_size, n) if group_size is not None else n
    if n % group:
        raise MismatchError(f"the discriminator's minibatch standard deviation needs a batch that is a multiple "
                            f"of {group} images, got {n}")
    y = x.reshape(group, -1, num_channels, c // num_channels, h, w)
    y = y - y.mean(dim=0)
    y = (y.square().mean(dim=0) + 1e-8).sqrt()
    y = y.mean(dim=(2, 3, 4)).reshape(-1, num_channels, 1, 1).repeat(group, 1, h, w)
    return torch.cat([x, y], dim=1)


class MinibatchStdLayer(nn.Module):
    """The minibatch standard deviation feature (no parameters)."""

    def __init__(self, group_size: int | None, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return minibatch_stddev(x, self.group_size, self.num_channels)


class DiscriminatorEpilogue(nn.Module):
    """The 4x4 end of the discriminator: minibatch stddev, 3x3 convolution, two fully connected layers."""

    def __init__(self, in_channels: int, cmap_dim: int, resolution: int, img_channels: int,
                 architecture: str = "resnet", mbstd_group_size: int | None = 4, mbstd_num_channels: int = 1,
                 activation: str = "lrelu", conv_clamp: float | None = None) -> None:
        super().__init__()
        self.cmap_dim, self.architecture = cmap_dim, architecture
        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, 1, activation=activation)
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, 3, activation=activation,
                                conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution * resolution, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: torch.Tensor, img: torch.Tensor | None, cmap: torch.Tensor | None) -> torch.Tensor:
        features = x.to(torch.float32)
        if self.architecture == "skip":
            features = features + self.fromrgb(img.to(torch.float32))
        if self.mbstd is not None:
            features = self.mbstd(features)
        logits = self.out(self.fc(self.conv(features).flatten(1)))
        if self.cmap_dim == 0:
            return logits
        # a conditional discriminator: the projection onto the class embedding, normalised by its size
        return (logits * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))


class Discriminator(nn.Module):
    """Images ``(n, img_channels, S, S)`` (and labels) to logits ``(n, 1)``."""

    def __init__(self, c_dim: int, img_resolution: int, img_channels: int, architecture: str = "resnet",
                 channel_base: int = 32768, channel_max: int = 512, num_fp16_res: int = 0,
                 conv_clamp: float | None = None, cmap_dim: int | None = None, block_kwargs: dict | None = None,
                 mapping_kwargs: dict | None = None, epilogue_kwargs: dict | None = None) -> None:
        super().__init__()
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        self.block_resolutions = [2 ** i for i in range(int(np.log2(img_resolution)), 2, -1)]
        if cmap_dim is None:
            cmap_dim = channels_at(4, channel_base, channel_max)
        if c_dim == 0:
            cmap_dim = 0
        lowest_fp16 = fp16_resolution(img_resolution, num_fp16_res)
        for res in self.block_resolutions:
            in_channels = channels_at(res, channel_base, channel_max) if res < img_resolution else 0
            block = DiscriminatorBlock(in_channels, channels_at(res, channel_base, channel_max),
                                       channels_at(res // 2, channel_base, channel_max), res, img_channels,
                                       architecture=architecture, conv_clamp=conv_clamp, use_fp16=res >= lowest_fp16,
                                       **(block_kwargs or {}))
            setattr(self, f"b{res}", block)
        if c_dim > 0:
            self.mapping = MappingNetwork(0, c_dim, cmap_dim, None, w_avg_beta=None, **(mapping_kwargs or {}))
        self.b4 = DiscriminatorEpilogue(channels_at(4, channel_base, channel_max), cmap_dim, 4, img_channels,
                                        architecture=architecture, conv_clamp=conv_clamp, **(epilogue_kwargs or {}))

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None, force_fp32: bool = False) -> torch.Tensor:
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img, force_fp32)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap)
