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


def _separable(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(fy, fx)`` with ``f == outer(fy, fx)`` when the filter is separable (to float precision), else None."""
    total = f.sum()
    if float(total) == 0.0:
        return None
    fy, fx = f.sum(dim=1), f.sum(dim=0) / total
    if torch.allclose(torch.outer(fy, fx), f, rtol=1e-6, atol=1e-7 * float(f.abs().max())):
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
    x = x * styles[:, :, None, None]
    x = conv2d_resample(x, weight, f, up=up, padding=padding)
    if demodulate:
        squared = weight.square().sum(dim=(2, 3))  # (out, in)
        coefficients = torch.rsqrt(styles.square() @ squared.t() + 1e-8)  # (n, out)
        x = x * coefficients[:, :, None, None]
    if noise is not None:
        x = x + noise.to(dtype)
    return x
