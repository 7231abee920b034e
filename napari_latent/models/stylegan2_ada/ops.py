"""The operations of StyleGAN2(-ADA)'s networks: FIR resampling, bias + activation, modulated convolution.

Written from the papers' descriptions and checked against the official code's outputs
(the parity tests in ``tests/models/stylegan2_ada``):

* Resampling (StyleGAN2, Sec. 2 / App. B; "upfirdn"): upsampling by 2 inserts zeros after
  every sample, then convolves with an FIR filter scaled by 4; downsampling convolves
  with the filter and keeps every second sample. The filter is the network's stored
  ``resample_filter`` buffer (a 2-D array; normally ``outer([1,3,3,1])/64``, but a
  snapshot may store anything). Separable filters are applied as two 1-D passes, and
  the zero-insertion is done by a transposed convolution (same numbers, less work).
* Bias and activation: ``clamp(act(x + b) * gain, -c, c)`` (leaky ReLU with slope 0.2 and
  gain sqrt(2), or linear).
* Modulated convolution (StyleGAN2, Sec. 2.2): weights scaled per sample by the styles
  and, with demodulation, normalised per output channel. Here the styles scale the
  *activations* and the demodulation scales the outputs, which is the same computation
  without a weight per sample (the official code's grouped "fused" convolution is the
  slower equivalent on a CPU).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LRELU_SLOPE = 0.2
#: Gains of the activations (they keep unit-variance signals at unit variance).
ACTIVATION_GAINS = {"linear": 1.0, "lrelu": math.sqrt(2.0)}


def setup_filter(taps: list[float] | tuple[float, ...] = (1, 3, 3, 1)) -> torch.Tensor:
    """The 2-D filter ``outer(taps, taps)``, normalised to sum 1."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def filter_size(f: torch.Tensor) -> tuple[int, int]:
    """``(width, height)`` of a 2-D filter."""
    return int(f.shape[1]), int(f.shape[0])


def bias_act(x: torch.Tensor, bias: torch.Tensor | None = None, activation: str = "linear", gain: float = 1.0,
             clamp: float | None = None) -> torch.Tensor:
    """``clamp(act(x + bias) * gain, -clamp, clamp)`` with the bias along dimension 1."""
    if bias is not None:
        x = x + bias.to(x.dtype).reshape(1, -1, *([1] * (x.ndim - 2)))
    if activation == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
    elif activation != "linear":
        raise ValueError(f"unsupported activation {activation!r}")
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


_SEPARABLE: dict[tuple, tuple[torch.Tensor, torch.Tensor] | None] = {}


def _separable(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(fy, fx)`` with ``f == outer(fy, fx)`` when the filter is separable (to float precision), else None.

    Remembered by the filter's values (a network has a few distinct filters).
    """
    key = (f.dtype, *f.shape, *f.detach().flatten().tolist())
    if key not in _SEPARABLE:
        if len(_SEPARABLE) > 256:
            _SEPARABLE.clear()
        _SEPARABLE[key] = _factorise(f.detach().cpu())
    parts = _SEPARABLE[key]
    return None if parts is None else (parts[0].to(f.device), parts[1].to(f.device))


def _factorise(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    total = f.sum()
    if float(total) == 0.0:
        return None
    fy, fx = f.sum(dim=1), f.sum(dim=0) / total
    if torch.allclose(torch.outer(fy, fx), f, rtol=1e-6, atol=1e-7 * float(f.abs().max())):  # to float32 precision
        return fy, fx
    return None


def _depthwise(x: torch.Tensor, kernel: torch.Tensor, stride: tuple[int, int] = (1, 1)) -> torch.Tensor:
    channels = x.shape[1]
    return F.conv2d(x, kernel.to(x.dtype)[None, None].expand(channels, 1, *kernel.shape), stride=stride,
                    groups=channels)


def fir_filter(x: torch.Tensor, f: torch.Tensor, pad: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1.0,
               down: int = 1) -> torch.Tensor:
    """Pad (zeros; negative crops), convolve each channel with ``f`` (times ``gain``), keep every ``down``-th sample.

    Parameters
    ----------
    x : Tensor
        ``(n, c, h, w)``.
    f : Tensor
        2-D filter ``(fh, fw)``; applied as a convolution (flipped, as the official code does).
    pad : tuple
        ``(x0, x1, y0, y1)``.
    gain : float
    down : int
    """
    x = F.pad(x, list(pad))
    parts = _separable(f)
    if parts is not None:
        fy, fx = parts
        x = _depthwise(x, (fy * gain).flip(0)[:, None], (down, 1))
        return _depthwise(x, fx.flip(0)[None, :], (1, down))
    return _depthwise(x, (f * gain).flip((0, 1)), (down, down))


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Upsample (zero insertion), pad, FIR filter, downsample: the general resampling operation.

    The plain version (zero insertion by reshaping, a full 2-D filter); the fast paths below
    give the same numbers.
    """
    if up > 1:
        n, c, h, w = x.shape
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, list(pad))
    x = _depthwise(x, (f * gain).flip((0, 1)))
    return x[:, :, ::down, ::down] if down > 1 else x


def upsample2d(x: torch.Tensor, f: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """x2 upsampling with filter ``f`` (output ``2h x 2w``), as a transposed depthwise convolution.

    Equal to ``upfirdn2d(x, f, up=2, pad=((fw+1)//2, (fw-2)//2, ...), gain=4*gain)``.
    """
    fw, fh = filter_size(f)
    # zero insertion + padding p0 + convolution == transposed convolution cropped by (fw - 1 - p0)
    crop_x, crop_y = fw - 1 - (fw + 1) // 2, fh - 1 - (fh + 1) // 2
    channels = x.shape[1]
    parts = _separable(f)
    if parts is not None and crop_x == crop_y:
        fy, fx = parts
        x = F.conv_transpose2d(x, (fy * 2 * gain).to(x.dtype)[None, None, :, None].expand(channels, 1, fh, 1),
                               stride=(2, 1), padding=(crop_y, 0), groups=channels)
        return F.conv_transpose2d(x, (fx * 2).to(x.dtype)[None, None, None, :].expand(channels, 1, 1, fw),
                                  stride=(1, 2), padding=(0, crop_x), groups=channels)
    return upfirdn2d(x, f, up=2, pad=((fw + 1) // 2, (fw - 2) // 2, (fh + 1) // 2, (fh - 2) // 2), gain=4 * gain)


def downsample2d(x: torch.Tensor, f: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """/2 downsampling with filter ``f`` (output ``h/2 x w/2``)."""
    fw, fh = filter_size(f)
    pad = ((fw - 1) // 2, (fw - 2) // 2, (fh - 1) // 2, (fh - 2) // 2)
    return fir_filter(x, f, pad, gain, down=2)


def conv2d_resample(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor | None = None, up: int = 1,
                    down: int = 1, padding: int = 0) -> torch.Tensor:
    """2-D convolution (correlation) with optional x2 upsampling before or /2 downsampling after.

    The resampling uses the FIR filter ``f``: ``up=2`` is a transposed strided convolution
    followed by the filter; ``down=2`` filters first, then convolves with stride 2.

    Parameters
    ----------
    x : Tensor
        ``(n, in, h, w)``.
    weight : Tensor
        ``(out, in, k, k)``.
    f : Tensor, optional
        The resampling filter (needed when ``up`` or ``down`` is 2).
    up, down : int
        1 or 2 (not both 2).
    padding : int
        Padding of the convolution at the input resolution (``k // 2``).
    """
    kh, kw = int(weight.shape[2]), int(weight.shape[3])
    weight = weight.to(x.dtype)
    if up == 1 and down == 1:
        return F.conv2d(x, weight, padding=padding)
    assert f is not None
    fw, fh = filter_size(f)
    if down > 1:
        px0, px1 = padding + (fw - down + 1) // 2, padding + (fw - down) // 2
        py0, py1 = padding + (fh - down + 1) // 2, padding + (fh - down) // 2
        if kh == 1 and kw == 1:
            return F.conv2d(fir_filter(x, f, (px0, px1, py0, py1), down=down), weight)
        return F.conv2d(fir_filter(x, f, (px0, px1, py0, py1)), weight, stride=down)
    # up == 2
    px0, px1 = padding + (fw + up - 1) // 2, padding + (fw - up) // 2
    py0, py1 = padding + (fh + up - 1) // 2, padding + (fh - up) // 2
    if kh == 1 and kw == 1:
        return upfirdn2d(F.conv2d(x, weight), f, up=up, pad=(px0, px1, py0, py1), gain=up * up)
    px0, px1, py0, py1 = px0 - (kw - 1), px1 - (kw - up), py0 - (kh - 1), py1 - (kh - up)
    x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=up)
    return fir_filter(x, f, (px0, px1, py0, py1), gain=up * up)


def upsample_conv_weight(weight: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """The weight of :func:`upsample_conv2d`: ``(4 * out, in, k', k')`` phases of the composite kernel.

    The transposed convolution with ``weight`` followed by the FIR filter (gain 4) is one
    transposed convolution with their composite kernel ``K = weight (*) 4 f`` (a full 2-D
    convolution; ``k + fk - 1`` taps). Split into its four phases (even/odd output rows and
    columns), that is one ordinary convolution at the input resolution with ``4 * out``
    outputs followed by a pixel shuffle.
    """
    out_channels, in_channels, kh, kw = weight.shape
    fh, fw = int(f.shape[0]), int(f.shape[1])
    taps = (f * 4).to(weight.dtype)
    composite = weight.new_zeros(out_channels, in_channels, kh + fh - 1, kw + fw - 1)
    for p in range(fh):
        for q in range(fw):
            composite[:, :, p:p + kh, q:q + kw] += taps[p, q] * weight
    phases = [composite[:, :, ry::2, rx::2].flip((2, 3)) for ry in (0, 1) for rx in (0, 1)]
    return torch.stack(phases, dim=1).reshape(out_channels * 4, in_channels, *phases[0].shape[2:])


def upsample_conv2d(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor,
                    phase_weight: torch.Tensor | None = None) -> torch.Tensor:
    """x2 upsampling (filter ``f``) then a 3x3 convolution (padding 1), as in ``conv2d_resample(up=2)``.

    Computed as one convolution at the input resolution with the phases of the composite
    kernel (:func:`upsample_conv_weight`) and a pixel shuffle: no zero insertion, no padding
    copies, no separate filter pass. Only for 3x3 weights and 4x4 filters (the official
    sizes); :func:`conv2d_resample` covers the rest. ``phase_weight``: the precomputed
    :func:`upsample_conv_weight` of ``weight`` and ``f``.
    """
    if phase_weight is None:
        phase_weight = upsample_conv_weight(weight, f)
    return F.pixel_shuffle(F.conv2d(x, phase_weight.to(x.dtype), padding=1), 2)


def _modulated_conv(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, up: int, padding: int,
                    f: torch.Tensor | None, phase_weight: torch.Tensor | None = None) -> torch.Tensor:
    """``conv(x * styles)`` with the fast paths (1x1: a batched matrix product with per-sample weights;
    x2 upsampling: by phases)."""
    if up == 1 and weight.shape[2:] == (1, 1):
        n, c, h, w = x.shape
        modulated = weight.reshape(1, -1, c) * styles[:, None, :]  # (n, out, in)
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            pixels = x.permute(0, 2, 3, 1).reshape(n, h * w, c)  # a view of channels-last data
            return torch.bmm(pixels, modulated.transpose(1, 2)).reshape(n, h, w, -1).permute(0, 3, 1, 2)
        return torch.bmm(modulated, x.reshape(n, c, h * w)).reshape(n, -1, h, w)
    x = x * styles[:, :, None, None]
    if phase_weight is not None and up == 2 and weight.shape[2:] == (3, 3) and padding == 1:
        return upsample_conv2d(x, weight, f, phase_weight)
    return conv2d_resample(x, weight, f, up=up, padding=padding)


def demodulation(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """``1 / sqrt(sum_{i,k} (w[o, i, k] * s[b, i])**2 + 1e-8)`` per sample and output channel ``(n, out)``."""
    return torch.rsqrt(styles.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8)


def modulated_conv_bias_act(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, bias: torch.Tensor,
                            up: int = 1, padding: int = 1, f: torch.Tensor | None = None,
                            noise: torch.Tensor | None = None, gain: float = 1.0,
                            clamp: float | None = None, phase_weight: torch.Tensor | None = None) -> torch.Tensor:
    """A demodulated convolution, noise, bias, leaky ReLU (times ``gain``) and clamp, in few passes.

    Equal to ``bias_act(modulated_conv2d(x, weight, styles, True, up, padding, f, noise), bias,
    "lrelu", gain, clamp)``: as the leaky ReLU is positively homogeneous, the gain is folded
    into the demodulation factors and into ``noise + bias``, so the output is one
    multiply-add over the convolution's result and an activation. ``phase_weight``: the
    precomputed :func:`upsample_conv_weight` for ``up=2``.
    """
    dtype = x.dtype
    styles, weight = styles.to(dtype), weight.to(dtype)
    out = _modulated_conv(x, weight, styles, up, padding, f, phase_weight)
    scale = (demodulation(weight, styles) * gain)[:, :, None, None]
    offset = bias.to(dtype).reshape(1, -1, 1, 1)
    if noise is not None:
        offset = offset + noise.to(dtype)
    offset = offset * gain
    if out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous():
        offset = offset.contiguous(memory_format=torch.channels_last)  # keep the output channels-last
    out = torch.addcmul(offset, out, scale)
    inplace = not (torch.is_grad_enabled() and out.requires_grad)
    out = F.leaky_relu_(out, LRELU_SLOPE) if inplace else F.leaky_relu(out, LRELU_SLOPE)
    if clamp is not None and clamp >= 0:
        out = out.clamp_(-clamp, clamp) if inplace else out.clamp(-clamp, clamp)
    return out


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     up: int = 1, padding: int = 0, f: torch.Tensor | None = None,
                     noise: torch.Tensor | None = None) -> torch.Tensor:
    """A modulated convolution (StyleGAN2's weight (de)modulation), on the activations.

    ``w'[b, o, i] = w[o, i] * s[b, i]``, demodulated by ``1 / sqrt(sum_{i,k} w'[b, o, i, k]**2 + 1e-8)``;
    computed as ``conv(x * s) * d`` so the convolution weight is shared by the batch.

    Parameters
    ----------
    x : Tensor
        ``(n, in, h, w)``.
    weight : Tensor
        ``(out, in, k, k)``.
    styles : Tensor
        ``(n, in)``.
    demodulate : bool
    up : int
        1, or 2 to upsample (with filter ``f``) before the convolution.
    padding : int
    f : Tensor, optional
    noise : Tensor, optional
        Added after the (de)modulation (broadcast to ``(n, out, H, W)``).
    """
    dtype = x.dtype
    styles = styles.to(dtype)
    weight = weight.to(dtype)
    x = _modulated_conv(x, weight, styles, up, padding, f)
    if demodulate:
        x = x * demodulation(weight, styles)[:, :, None, None]
    if noise is not None:
        x = x + noise.to(dtype)
    return x
