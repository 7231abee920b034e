"""Exact rewrites of a trained network for faster inference (on a private copy of the model).

* **Nearest upsampling followed by a 3x3 convolution** (the up path of our autoencoders):
  every output pixel of the pair sees only a 2x2 neighbourhood of the low-resolution input,
  with a kernel that depends on the pixel's phase (its row and column parity). The pair is
  therefore one transposed convolution (stride 2, 4x4 kernel, padding 1) on the
  low-resolution input: 16 instead of 36 multiply-adds per input channel and
  low-resolution pixel, and no upsampled intermediate. This is the identity behind
  sub-pixel convolution (Shi et al. 2016, "Real-time single image and video
  super-resolution using an efficient sub-pixel convolutional neural network", CVPR;
  Odena et al. 2016, "Deconvolution and checkerboard artifacts", Distill, on the resize-
  convolution it replaces); the result equals the original up to float rounding.
* **SiLU in place** where its input is a temporary (after a normalisation layer).

:func:`rewrite_for_inference` applies them to a module tree in place; callers compare the
rewritten copy with the original on probe inputs before they use it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# For output phase a (row parity), which of the 3 kernel rows fall on low-resolution rows
# (offset -1, 0) for a = 0 and (0, +1) for a = 1.
_PHASE_TAPS = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]],
                            [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)


#: Row (or column) of the 4x4 transposed-convolution kernel that holds tap p of phase a.
_TRANSPOSED_TAP = {(0, 0): 3, (0, 1): 1, (1, 0): 2, (1, 1): 0}


class UpsampleConv(nn.Module):
    """``Conv2d(3x3, padding 1)(Upsample(scale 2, nearest)(x))`` as one transposed convolution of ``x``.

    Parameters
    ----------
    conv : torch.nn.Conv2d
        A 3x3 convolution with stride 1, padding 1, no dilation and one group, whose input
        is the nearest-neighbour 2x upsampling of this module's input.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if not is_plain_3x3(conv):
            raise ValueError("UpsampleConv needs a 3x3 convolution with stride 1, padding 1, one group")
        weight = conv.weight.detach().double()
        out_channels, in_channels = weight.shape[:2]
        # phase kernels K[o, a, b, i, p, q] = (T[a] w[o, i] T[b]^T)[p, q]: output pixel (2y+a, 2x+b) is
        # sum over taps p, q of K * x[y + p - 1 + a, x + q - 1 + b]
        phases = torch.einsum("apk,oikl,bql->oabipq", _PHASE_TAPS, weight, _PHASE_TAPS)
        # a transposed convolution with stride 2 and padding 1 adds x[i] * W[k] to output 2i - 1 + k
        transposed = torch.zeros(in_channels, out_channels, 4, 4, dtype=torch.float64)
        for (a, p), row in _TRANSPOSED_TAP.items():
            for (b, q), col in _TRANSPOSED_TAP.items():
                transposed[:, :, row, col] = phases[:, a, b, :, p, q].T
        self.register_buffer("weight", transposed.to(conv.weight.dtype))
        bias = conv.bias.detach().clone() if conv.bias is not None else None
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(x, self.weight, self.bias, stride=2, padding=1)


def is_plain_3x3(conv: nn.Module) -> bool:
    """Whether ``conv`` is a 3x3 Conv2d with stride 1, padding 1, no dilation, one group, zero padding."""
    return (isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros")


def _is_nearest_2x(module: nn.Module) -> bool:
    return (isinstance(module, nn.Upsample) and module.mode == "nearest" and module.size is None
            and module.scale_factor in (2, 2.0, (2, 2), (2.0, 2.0)))


def rewrite_for_inference(module: nn.Module) -> int:
    """Apply the rewrites to every ``nn.Sequential`` under ``module``, in place.

    Returns
    -------
    int
        How many layers were rewritten.
    """
    count = 0
    for child in list(module.modules()):
        if not isinstance(child, nn.Sequential):
            continue
        layers = list(child)
        rewritten: list[nn.Module] = []
        before = count
        i = 0
        while i < len(layers):
            layer = layers[i]
            if _is_nearest_2x(layer) and i + 1 < len(layers) and is_plain_3x3(layers[i + 1]):
                rewritten.append(UpsampleConv(layers[i + 1]))
                count += 1
                i += 2
                continue
            if (isinstance(layer, nn.SiLU) and not layer.inplace and rewritten
                    and isinstance(rewritten[-1], nn.GroupNorm | nn.BatchNorm2d | nn.LayerNorm)):
                rewritten.append(nn.SiLU(inplace=True))
                count += 1
                i += 1
                continue
            rewritten.append(layer)
            i += 1
        if count > before:
            for index in range(len(child) - 1, -1, -1):
                del child[index]
            for layer in rewritten:
                child.append(layer)
    return count
