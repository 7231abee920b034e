"""Image quality metrics and Fréchet distances between image sets.

Images are torch tensors ``(n, 1, H, W)`` (normally square, ``S`` = 32, 64, 128 or 256) with
values in [-1, 1], hence the default ``data_range`` of 2. Every pixel metric returns one value
per image with ``reduction="none"`` (shape ``(n,)``) or their mean with ``reduction="mean"``
(a 0-d tensor).

Window sizes adapt to small images (all windows are Gaussian with sigma 1.5, constants
K1 = 0.01 and K2 = 0.03 as in Wang et al. 2004):

* :func:`ssim` uses an 11-pixel window when the smaller image side is at least 64 pixels and a
  7-pixel window below (32-pixel images).
* :func:`ms_ssim` keeps the coarsest scale at least 16 pixels wide, like the standard
  configuration (5 scales, 11-pixel window) on 256-pixel images, and uses the first weights of
  the standard set (0.0448, 0.2856, 0.3001, 0.2363, 0.1333) renormalised to sum to one
  (all five unchanged from 256 pixels on):

  ======== ====== ====== ==================================================
  side     scales window weights (finest to coarsest)
  ======== ====== ====== ==================================================
  7-31     1      7      1.0 (plain SSIM, clamped at 0)
  32-63    2      7      0.1356, 0.8644
  64-127   3      7      0.0711, 0.4530, 0.4760
  128-255  4      11     0.0517, 0.3295, 0.3462, 0.2726
  >= 256   5      11     0.0448, 0.2856, 0.3001, 0.2363, 0.1333 (standard)
  ======== ====== ====== ==================================================

Fréchet distances compare the Gaussian statistics of features of two image sets. The
default feature extractor is :class:`RandomConvFeatures`, a fixed, seeded random conv net
reported as ``"FD-randconv64"``; the name ``"FID"`` is reserved for :class:`InceptionFeatures`,
the InceptionV3 network of pytorch-fid loaded from a local ``.safetensors`` file. Nothing is
ever downloaded and no pickle is ever loaded.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..device import get_device
from ..errors import MismatchError, UserInputError

__all__ = [
    "MS_SSIM_WEIGHTS",
    "PSNR_CAP_DB",
    "FeatureExtractor",
    "InceptionFeatures",
    "RandomConvFeatures",
    "frechet_distance",
    "frechet_from_features",
    "image_metrics",
    "ms_ssim",
    "ms_ssim_settings",
    "mse",
    "psnr",
    "ssim",
    "ssim_window",
]

Reduction = Literal["mean", "none"]

#: PSNR reported for identical images (and the upper bound of every PSNR value), in dB.
PSNR_CAP_DB = 100.0

#: The standard MS-SSIM scale weights of Wang, Simoncelli and Bovik (2003), finest scale first.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

_SIGMA = 1.5
_K1, _K2 = 0.01, 0.03
_MIN_SIDE = 7


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------
def _check_images(images: Tensor, name: str) -> None:
    if not isinstance(images, Tensor):
        raise MismatchError(f"{name} must be a torch tensor (n, 1, H, W), got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 1:
        raise MismatchError(f"{name} must be single-channel images of shape (n, 1, H, W), got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise MismatchError(f"{name} holds no images")


def _check_pair(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    _check_images(a, "the first image batch")
    _check_images(b, "the second image batch")
    if a.shape != b.shape:
        raise MismatchError(f"image batches must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return _as_float(a), _as_float(b).to(a.device)


def _as_float(images: Tensor) -> Tensor:
    """Float32 unless already float32 or float64 (half precision is too coarse for SSIM)."""
    return images if images.dtype in (torch.float32, torch.float64) else images.float()


def _check_range(data_range: float) -> float:
    if not (isinstance(data_range, int | float) and math.isfinite(data_range) and data_range > 0):
        raise UserInputError(f"data_range must be a positive number, got {data_range!r}")
    return float(data_range)


def _reduce(values: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return values
    if reduction == "mean":
        return values.mean()
    raise UserInputError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def _min_side(images: Tensor) -> int:
    side = min(images.shape[-2:])
    if side < _MIN_SIDE:
        raise MismatchError(f"images must be at least {_MIN_SIDE} pixels wide for SSIM, got {tuple(images.shape)}")
    return side


# --------------------------------------------------------------------------------------------
# pixel metrics
# --------------------------------------------------------------------------------------------
def mse(a: Tensor, b: Tensor, reduction: Reduction = "mean") -> Tensor:
    """Mean squared error between two image batches.

    Parameters
    ----------
    a, b : Tensor
        Images ``(n, 1, H, W)`` of the same shape.
    reduction : {"mean", "none"}
        ``"none"`` gives one value per image (shape ``(n,)``), ``"mean"`` their mean (0-d).

    Returns
    -------
    Tensor
        The mean squared error over the pixels of each image, or its mean over images.

    Raises
    ------
    MismatchError
        If the batches are not single-channel 4D tensors of the same shape.
    """
    a, b = _check_pair(a, b)
    return _reduce((a - b).square().flatten(1).mean(1), reduction)


def psnr(a: Tensor, b: Tensor, data_range: float = 2.0, reduction: Reduction = "mean") -> Tensor:
    """Peak signal-to-noise ratio ``10 log10(data_range² / MSE)`` in dB, per image.

    Identical images (MSE 0, PSNR +inf) get :data:`PSNR_CAP_DB` (100 dB) instead, and every
    value is capped there, so that means over images stay finite. With ``reduction="mean"``
    the result is the mean of the per-image PSNRs (not the PSNR of the mean MSE).

    Parameters
    ----------
    a, b : Tensor
        Images ``(n, 1, H, W)`` of the same shape.
    data_range : float
        Difference between the largest and smallest possible pixel value (2 for [-1, 1]).
    reduction : {"mean", "none"}
        ``"none"`` gives one value per image (shape ``(n,)``), ``"mean"`` their mean (0-d).

    Returns
    -------
    Tensor
        PSNR in dB, at most 100.

    Raises
    ------
    MismatchError
        If the batches are not single-channel 4D tensors of the same shape.
    """
    data_range = _check_range(data_range)
    errors = mse(a, b, reduction="none")
    values = 10.0 * torch.log10(data_range**2 / errors)  # +inf where errors == 0
    return _reduce(values.clamp(max=PSNR_CAP_DB), reduction)


def ssim_window(side: int) -> int:
    """Gaussian window width used by :func:`ssim` for images whose smaller side is ``side``."""
    return 11 if side >= 64 else 7


def ssim(a: Tensor, b: Tensor, data_range: float = 2.0, reduction: Reduction = "mean") -> Tensor:
    """Structural similarity (Wang et al. 2004), per image.

    Gaussian window with sigma 1.5 over the valid region (no padding), K1 = 0.01, K2 = 0.03:
    the same values as :func:`pytorch_msssim.ssim` (and as skimage's ``structural_similarity``
    with ``gaussian_weights=True, use_sample_covariance=False`` for the 11-pixel window), but
    the Gaussian filter runs as matrix products, about ten times faster on the CPU.
    The window is 11 pixels wide for images of at least 64 pixels and 7 pixels wide for
    smaller ones (see :func:`ssim_window`). Values lie in [-1, 1]; 1 for identical images.

    Parameters
    ----------
    a, b : Tensor
        Images ``(n, 1, H, W)`` of the same shape, at least 7 pixels on each side.
    data_range : float
        Difference between the largest and smallest possible pixel value (2 for [-1, 1]).
    reduction : {"mean", "none"}
        ``"none"`` gives one value per image (shape ``(n,)``), ``"mean"`` their mean (0-d).

    Returns
    -------
    Tensor
        SSIM per image or its mean.

    Raises
    ------
    MismatchError
        If the batches are not single-channel 4D tensors of the same shape, or too small.
    """
    a, b = _check_pair(a, b)
    data_range = _check_range(data_range)
    values, _ = _ssim_and_cs(a, b, data_range, ssim_window(_min_side(a)))
    return _reduce(values, reduction)


def ms_ssim_settings(side: int) -> tuple[int, tuple[float, ...]]:
    """The window width and scale weights :func:`ms_ssim` uses for images of smaller side ``side``.

    The number of scales is the largest (at most 5) that keeps the coarsest scale at least 16
    pixels wide; the weights are the first standard weights renormalised to sum to one (all
    five standard weights unchanged from 256 pixels on). The window is 11 pixels wide from 128
    pixels on, 7 below.

    Parameters
    ----------
    side : int
        Smaller side of the images in pixels (at least 7).

    Returns
    -------
    tuple of (int, tuple of float)
        Window width and weights, finest scale first.
    """
    if side < _MIN_SIDE:
        raise MismatchError(f"images must be at least {_MIN_SIDE} pixels wide for MS-SSIM, got {side}")
    levels = min(len(MS_SSIM_WEIGHTS), max(1, (side // 16).bit_length()))
    window = 11 if side >= 128 else 7
    if levels == len(MS_SSIM_WEIGHTS):
        return window, MS_SSIM_WEIGHTS  # as published (they sum to 1.0001), as pytorch_msssim
    chosen = MS_SSIM_WEIGHTS[:levels]
    total = sum(chosen)
    return window, tuple(w / total for w in chosen)


def _gaussian_window(width: int) -> Tensor:
    coords = torch.arange(width, dtype=torch.float64) - width // 2
    g = torch.exp(-(coords**2) / (2 * _SIGMA**2))
    return g / g.sum()


def _band(size: int, g: Tensor) -> Tensor:
    """Matrix ``(size - w + 1, size)`` applying the 1-D filter ``g`` over the valid region."""
    width = g.numel()
    rows = torch.arange(size - width + 1).unsqueeze(1)
    band = torch.zeros(size - width + 1, size, dtype=g.dtype)
    band[rows, rows + torch.arange(width)] = g
    return band


def _ssim_and_cs(x: Tensor, y: Tensor, data_range: float, window: int) -> tuple[Tensor, Tensor]:
    """Per-image SSIM and contrast-structure term over the valid region, as pytorch_msssim's ``_ssim``.

    The separable Gaussian filter is applied as two matrix products with banded matrices,
    which is about ten times faster on the CPU than single-channel convolutions.
    """
    g = _gaussian_window(window)
    rows = _band(x.shape[-2], g).to(x.device, x.dtype)
    cols = _band(x.shape[-1], g).to(x.device, x.dtype).T
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    mu_x, mu_y, xx, yy, xy = (rows @ stack @ cols).unbind(1)
    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    var_x, var_y, cov = xx - mu_x.square(), yy - mu_y.square(), xy - mu_x * mu_y
    cs_map = (2 * cov + c2) / (var_x + var_y + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x.square() + mu_y.square() + c1) * cs_map
    return ssim_map.flatten(1).mean(1), cs_map.flatten(1).mean(1)


def ms_ssim(a: Tensor, b: Tensor, data_range: float = 2.0, reduction: Reduction = "mean") -> Tensor:
    """Multi-scale structural similarity (Wang, Simoncelli and Bovik 2003), per image.

    The product over scales of the contrast-structure terms (finest scales) and the full SSIM
    (coarsest scale), each raised to its weight, computed exactly as
    :func:`pytorch_msssim.ms_ssim` (2x2 average pooling between scales, negative terms clamped
    to 0 so that the result is never NaN) but with scales adapted to the image size, since
    pytorch_msssim needs images larger than 160 pixels:

    ======== ====== ====== ==================================================
    side     scales window weights (finest to coarsest)
    ======== ====== ====== ==================================================
    7-31     1      7      1.0 (plain SSIM, clamped at 0)
    32-63    2      7      0.1356, 0.8644
    64-127   3      7      0.0711, 0.4530, 0.4760
    128-255  4      11     0.0517, 0.3295, 0.3462, 0.2726
    >= 256   5      11     0.0448, 0.2856, 0.3001, 0.2363, 0.1333 (standard)
    ======== ====== ====== ==================================================

    The coarsest scale is always at least 16 pixels wide (as in the standard 256-pixel case);
    the weights are the first standard weights renormalised to sum to one (from 256 pixels on,
    the five standard weights unchanged), so that from 256 pixels on the result equals
    ``pytorch_msssim.ms_ssim`` with its defaults (window 11, sigma 1.5).

    Parameters
    ----------
    a, b : Tensor
        Images ``(n, 1, H, W)`` of the same shape, at least 7 pixels on each side.
    data_range : float
        Difference between the largest and smallest possible pixel value (2 for [-1, 1]).
    reduction : {"mean", "none"}
        ``"none"`` gives one value per image (shape ``(n,)``), ``"mean"`` their mean (0-d).

    Returns
    -------
    Tensor
        MS-SSIM in [0, 1] per image or its mean; 1 for identical images.

    Raises
    ------
    MismatchError
        If the batches are not single-channel 4D tensors of the same shape, or too small.
    """
    x, y = _check_pair(a, b)
    data_range = _check_range(data_range)
    window, weights = ms_ssim_settings(_min_side(x))
    terms = []
    for level in range(len(weights)):
        ssim_value, cs = _ssim_and_cs(x, y, data_range, window)
        if level < len(weights) - 1:
            terms.append(torch.relu(cs))
            padding = [s % 2 for s in x.shape[2:]]
            x = F.avg_pool2d(x, kernel_size=2, padding=padding)
            y = F.avg_pool2d(y, kernel_size=2, padding=padding)
    terms.append(torch.relu(ssim_value))
    exponents = torch.tensor(weights, dtype=x.dtype, device=x.device).view(-1, 1)
    values = torch.prod(torch.stack(terms) ** exponents, dim=0)
    return _reduce(values, reduction)


def image_metrics(reconstructions: Tensor, targets: Tensor, batch_size: int = 256) -> dict[str, float]:
    """MSE, PSNR, SSIM and MS-SSIM of reconstructions against their targets, averaged over images.

    Computed in batches of ``batch_size`` images so that memory stays bounded, without
    gradients. PSNR is the mean of per-image PSNRs, each capped at :data:`PSNR_CAP_DB`.

    Parameters
    ----------
    reconstructions, targets : Tensor
        Images ``(n, 1, H, W)`` in [-1, 1] of the same shape.
    batch_size : int
        Number of images per batch.

    Returns
    -------
    dict of str to float
        Keys ``"mse"``, ``"psnr"``, ``"ssim"`` and ``"ms_ssim"``.

    Raises
    ------
    MismatchError
        If the batches are not single-channel 4D tensors of the same shape, or too small.
    """
    _check_pair(reconstructions, targets)
    _min_side(reconstructions)
    if int(batch_size) < 1:
        raise UserInputError(f"batch_size must be at least 1, got {batch_size!r}")
    functions = {"mse": mse, "psnr": psnr, "ssim": ssim, "ms_ssim": ms_ssim}
    sums = dict.fromkeys(functions, 0.0)
    n = reconstructions.shape[0]
    with torch.no_grad():
        for start in range(0, n, int(batch_size)):
            a = reconstructions[start : start + int(batch_size)]
            b = targets[start : start + int(batch_size)]
            for key, function in functions.items():
                sums[key] += float(function(a, b, reduction="none").double().sum())
    return {key: total / n for key, total in sums.items()}


# --------------------------------------------------------------------------------------------
# feature extractors
# --------------------------------------------------------------------------------------------
@runtime_checkable
class FeatureExtractor(Protocol):
    """Maps images ``(n, 1, S, S)`` in [-1, 1] to features ``(n, d)`` for Fréchet distances.

    ``name`` is the name the distance is reported under; ``"FID"`` only for InceptionV3.
    """

    name: str

    def __call__(self, images: Tensor) -> Tensor: ...


class RandomConvFeatures:
    """The default feature extractor: a fixed, seeded, randomly initialised conv net.

    Architecture: the images are resized to 64 x 64 (bilinear, antialiased), then pass four
    3 x 3 convolutions with stride 2 and padding 1 (1 -> 32 -> 64 -> 128 -> 256 channels, with
    bias 0), each followed by LeakyReLU(0.2), giving 256 maps of 4 x 4; the features are the
    per-channel spatial means followed by the per-channel spatial (population) standard
    deviations, 512 values per image, returned as float64 on the CPU.

    The weights are drawn from N(0, 2 / ((1 + 0.2²) fan_in)) (He initialisation for
    LeakyReLU) with a CPU :class:`torch.Generator` seeded with ``seed``, layer by layer, so the
    same seed gives the same network on every machine. Distances computed with it are reported
    as ``"FD-randconv64"``: they compare image sets with each other but are not FIDs and are not
    comparable with FIDs in the literature.

    Parameters
    ----------
    seed : int
        Seed of the weights.
    device : str or torch.device
        Where to compute (``"auto"``, ``"cpu"``, ``"cuda"``, ...).
    """

    name = "FD-randconv64"
    size = 64
    channels = (32, 64, 128, 256)
    negative_slope = 0.2

    def __init__(self, seed: int = 0, device: str | torch.device = "cpu") -> None:
        self.seed = int(seed)
        self.device = get_device(device)
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        self.weights: list[Tensor] = []
        fan_in_channels = 1
        for out_channels in self.channels:
            fan_in = fan_in_channels * 9
            std = math.sqrt(2.0 / ((1 + self.negative_slope**2) * fan_in))
            weight = torch.randn((out_channels, fan_in_channels, 3, 3), generator=generator, dtype=torch.float32)
            self.weights.append((weight * std).to(self.device))
            fan_in_channels = out_channels

    @property
    def dim(self) -> int:
        """Number of features per image."""
        return 2 * self.channels[-1]

    def __call__(self, images: Tensor) -> Tensor:
        """Features ``(n, 512)`` float64 of images ``(n, 1, H, W)`` in [-1, 1]."""
        _check_images(images, "images")
        with torch.no_grad():
            x = images.to(self.device, torch.float32)
            if tuple(x.shape[-2:]) != (self.size, self.size):
                x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
            for weight in self.weights:
                x = F.leaky_relu(F.conv2d(x, weight, stride=2, padding=1), self.negative_slope)
            flat = x.flatten(2)
            features = torch.cat([flat.mean(2), flat.std(2, correction=0)], dim=1)
        return features.to("cpu", torch.float64)


class _Conv(nn.Module):
    """Convolution without bias, batch norm (eps 0.001) and ReLU: torchvision's BasicConv2d."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _add(module: nn.Module, **specs: tuple) -> None:
    for name, spec in specs.items():
        setattr(module, name, _Conv(*spec))


_ROW7, _COL7 = ((1, 7), 1, (0, 3)), ((7, 1), 1, (3, 0))
_ROW3, _COL3 = ((1, 3), 1, (0, 1)), ((3, 1), 1, (1, 0))


def _avg3(x: Tensor) -> Tensor:
    # TensorFlow's average pooling ignores the zero padding (pytorch-fid's FID patch)
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        _add(self, branch1x1=(cin, 64, 1), branch5x5_1=(cin, 48, 1), branch5x5_2=(48, 64, 5, 1, 2),
             branch3x3dbl_1=(cin, 64, 1), branch3x3dbl_2=(64, 96, 3, 1, 1), branch3x3dbl_3=(96, 96, 3, 1, 1),
             branch_pool=(cin, pool_features, 1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg3(x)),
        ], 1)


class _InceptionB(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        _add(self, branch3x3=(cin, 384, 3, 2), branch3x3dbl_1=(cin, 64, 1), branch3x3dbl_2=(64, 96, 3, 1, 1),
             branch3x3dbl_3=(96, 96, 3, 2))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, kernel_size=3, stride=2),
        ], 1)


class _InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        _add(self, branch1x1=(cin, 192, 1), branch7x7_1=(cin, c7, 1), branch7x7_2=(c7, c7, *_ROW7),
             branch7x7_3=(c7, 192, *_COL7), branch7x7dbl_1=(cin, c7, 1), branch7x7dbl_2=(c7, c7, *_COL7),
             branch7x7dbl_3=(c7, c7, *_ROW7), branch7x7dbl_4=(c7, c7, *_COL7), branch7x7dbl_5=(c7, 192, *_ROW7),
             branch_pool=(cin, 192, 1))

    def forward(self, x: Tensor) -> Tensor:
        dbl = x
        for i in range(1, 6):
            dbl = getattr(self, f"branch7x7dbl_{i}")(dbl)
        return torch.cat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            dbl,
            self.branch_pool(_avg3(x)),
        ], 1)


class _InceptionD(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        _add(self, branch3x3_1=(cin, 192, 1), branch3x3_2=(192, 320, 3, 2), branch7x7x3_1=(cin, 192, 1),
             branch7x7x3_2=(192, 192, *_ROW7), branch7x7x3_3=(192, 192, *_COL7), branch7x7x3_4=(192, 192, 3, 2))

    def forward(self, x: Tensor) -> Tensor:
        b7 = x
        for i in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class _InceptionE(nn.Module):
    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool  # pytorch-fid: the last block max-pools (a quirk of the TF graph)
        _add(self, branch1x1=(cin, 320, 1), branch3x3_1=(cin, 384, 1), branch3x3_2a=(384, 384, *_ROW3),
             branch3x3_2b=(384, 384, *_COL3), branch3x3dbl_1=(cin, 448, 1), branch3x3dbl_2=(448, 384, 3, 1, 1),
             branch3x3dbl_3a=(384, 384, *_ROW3), branch3x3dbl_3b=(384, 384, *_COL3), branch_pool=(cin, 192, 1))

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_1(x)
        dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _avg3(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(dbl), self.branch3x3dbl_3b(dbl),
            self.branch_pool(pooled),
        ], 1)


class _FIDInceptionV3(nn.Module):
    """pytorch-fid's FID InceptionV3 up to the 2048-d pool3 features, with its state-dict key names."""

    def __init__(self) -> None:
        super().__init__()
        _add(self, Conv2d_1a_3x3=(3, 32, 3, 2), Conv2d_2a_3x3=(32, 32, 3), Conv2d_2b_3x3=(32, 64, 3, 1, 1),
             Conv2d_3b_1x1=(64, 80, 1), Conv2d_4a_3x3=(80, 192, 3))
        self.Mixed_5b = _InceptionA(192, 32)
        self.Mixed_5c = _InceptionA(256, 64)
        self.Mixed_5d = _InceptionA(288, 64)
        self.Mixed_6a = _InceptionB(288)
        self.Mixed_6b = _InceptionC(768, 128)
        self.Mixed_6c = _InceptionC(768, 160)
        self.Mixed_6d = _InceptionC(768, 160)
        self.Mixed_6e = _InceptionC(768, 192)
        self.Mixed_7a = _InceptionD(768)
        self.Mixed_7b = _InceptionE(1280, max_pool=False)
        self.Mixed_7c = _InceptionE(2048, max_pool=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), kernel_size=3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean(dim=(2, 3))


class InceptionFeatures:
    """InceptionV3 pool3 features (2048-d) of pytorch-fid's FID network, from a local weights file.

    The network is pytorch-fid's ``FIDInceptionV3`` (TensorFlow's 2015-12-05 Inception graph,
    with its average pooling that ignores padding and its max-pooling last block), defined in
    this module. The weights are read from a ``.safetensors`` file holding the state dict of
    pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` with the same keys
    (``Conv2d_1a_3x3.conv.weight``, ``Mixed_7c.branch_pool.bn.running_var``, ...); the
    classifier (``fc.*``), ``AuxLogits.*`` and ``num_batches_tracked`` entries are ignored if
    present. Only safetensors files are accepted, since other formats (``.pth``, TorchScript)
    unpickle data. Nothing is downloaded. A file can be converted once, in a trusted
    environment, with::

        import torch
        from safetensors.torch import save_file
        state = torch.load("pt_inception-2015-12-05-6726825d.pth", weights_only=True)
        save_file({k: v.contiguous() for k, v in state.items()}, "pt_inception-2015-12-05.safetensors")

    Grey images are replicated to three channels and resized bilinearly to 299 x 299 (as
    pytorch-fid does); values in [-1, 1] are what the network expects. Distances computed
    with this extractor are reported as ``"FID"``.

    Parameters
    ----------
    weights : str or Path
        The ``.safetensors`` file.
    device : str or torch.device
        Where to compute.
    batch_size : int
        Images per forward pass (bounds memory: tens of MB per image).

    Raises
    ------
    UserInputError
        If the file is missing, not a safetensors file, or does not hold the expected weights.
    """

    name = "FID"
    dim = 2048

    def __init__(self, weights: str | Path, device: str | torch.device = "cpu", batch_size: int = 32) -> None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(weights).expanduser()
        if path.suffix.lower() != ".safetensors":
            raise UserInputError(
                f"InceptionV3 weights must be a .safetensors file (pickled .pt/.pth files are never loaded), got {path}"
            )
        if not path.is_file():
            raise UserInputError(f"InceptionV3 weights file not found: {path}")
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserInputError(f"cannot read InceptionV3 weights from {path}: {exc}") from exc
        network = _FIDInceptionV3()
        expected = network.state_dict()
        ignored = ("fc.", "AuxLogits.")
        state = {k: v for k, v in state.items() if not k.startswith(ignored) and not k.endswith("num_batches_tracked")}
        missing = sorted(k for k in expected if k not in state and not k.endswith("num_batches_tracked"))
        unexpected = sorted(k for k in state if k not in expected)
        wrong = sorted(k for k in state if k in expected and state[k].shape != expected[k].shape)
        if missing or unexpected or wrong:
            details = "; ".join(
                f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''} ({len(keys)})"
                for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
                if keys
            )
            raise UserInputError(f"{path} does not hold pytorch-fid's InceptionV3 (pt_inception-2015-12-05) weights: "
                                 f"{details}")
        network.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
        self.device = get_device(device)
        self.network = network.eval().requires_grad_(False).to(self.device)
        self.batch_size = max(1, int(batch_size))
        self.path = path

    def __call__(self, images: Tensor) -> Tensor:
        """Features ``(n, 2048)`` float64 of images ``(n, 1, H, W)`` in [-1, 1]."""
        _check_images(images, "images")
        out = []
        with torch.no_grad():
            for start in range(0, images.shape[0], self.batch_size):
                x = images[start : start + self.batch_size].to(self.device, torch.float32)
                x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)
                out.append(self.network(x.contiguous()).to("cpu", torch.float64))
        return torch.cat(out)


# --------------------------------------------------------------------------------------------
# Fréchet distance
# --------------------------------------------------------------------------------------------
def _trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray, eps: float) -> float:
    """``trace(sqrtm(sigma1 @ sigma2))`` with pytorch-fid's handling of numerical trouble."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if np.isfinite(covmean).all() and np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            covmean = covmean.real
        else:
            covmean = None
    if covmean is None or not np.isfinite(covmean).all():
        # sqrtm failed (near-singular product): sigma1 @ sigma2 is similar to the symmetric PSD
        # matrix sqrt(sigma1) @ sigma2 @ sqrt(sigma1), whose eigenvalues give the same trace.
        values, vectors = np.linalg.eigh(sigma1)
        root1 = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
        inner = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
        return float(np.sqrt(np.clip(inner, 0, None)).sum())
    return float(np.trace(covmean))


def frechet_from_features(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Fréchet distance between two Gaussians ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    ``|mu1 - mu2|² + tr(sigma1) + tr(sigma2) - 2 tr(sqrtm(sigma1 sigma2))``, in float64, as in
    pytorch-fid: the matrix square root comes from :func:`scipy.linalg.sqrtm`; if it is not
    finite, ``eps * I`` is added to both covariances and it is computed again; negligible
    imaginary parts (diagonal below 1e-3) are dropped. Where pytorch-fid would fail (large
    imaginary parts), the trace is computed from the eigenvalues of the symmetric matrix
    ``sqrt(sigma1) sigma2 sqrt(sigma1)`` instead. Tiny negative results from round-off are
    returned as 0.

    Parameters
    ----------
    mu1, mu2 : array_like
        Means ``(d,)``.
    sigma1, sigma2 : array_like
        Covariances ``(d, d)``.
    eps : float
        Diagonal offset used when the product of the covariances is singular.

    Returns
    -------
    float
        The distance (non-negative).

    Raises
    ------
    MismatchError
        If the shapes do not fit together.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.ndim != 1 or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise MismatchError(
            f"means and covariances do not fit: {mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}"
        )
    diff = mu1 - mu2
    trace = _trace_sqrt_product(sigma1, sigma2, eps)
    distance = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace)
    return max(distance, 0.0)


def _features(images: Tensor, extractor: FeatureExtractor, batch_size: int, name: str) -> np.ndarray:
    _check_images(images, name)
    if images.shape[0] < 2:
        raise MismatchError(f"{name} must hold at least 2 images for a Fréchet distance, got {images.shape[0]}")
    chunks = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            chunk = extractor(images[start : start + batch_size])
            chunks.append(torch.as_tensor(chunk).detach().to("cpu", torch.float64).numpy())
    features = np.concatenate(chunks)
    if features.ndim != 2 or features.shape[0] != images.shape[0]:
        raise MismatchError(f"the feature extractor gave shape {features.shape} for {images.shape[0]} images")
    if not np.isfinite(features).all():
        raise MismatchError(f"the feature extractor gave non-finite features for {name}")
    return features


def frechet_distance(
    real: Tensor, fake: Tensor, extractor: FeatureExtractor | None = None, batch_size: int = 128
) -> tuple[float, str]:
    """Fréchet distance between the feature statistics of two image sets.

    Features are extracted in batches, converted to float64, and summarised by their mean and
    (unbiased) covariance; see :func:`frechet_from_features` for the formula. With the
    default extractor (:class:`RandomConvFeatures` with seed 0) the distance is reported as
    ``"FD-randconv64"``; it is an FID only with :class:`InceptionFeatures`.

    Parameters
    ----------
    real, fake : Tensor
        Image sets ``(n, 1, H, W)`` and ``(m, 1, H, W)`` in [-1, 1], at least 2 images each, of
        the same image size.
    extractor : FeatureExtractor, optional
        Maps image batches to features ``(n, d)``.
    batch_size : int
        Images per call of the extractor.

    Returns
    -------
    tuple of (float, str)
        The distance and the name to report it under (the extractor's ``name``).

    Raises
    ------
    MismatchError
        If a set is not single-channel 4D, holds fewer than 2 images, or the image sizes differ.
    """
    _check_images(real, "the real images")
    _check_images(fake, "the generated images")
    if real.shape[1:] != fake.shape[1:]:
        raise MismatchError(f"image sizes differ: {tuple(real.shape[1:])} and {tuple(fake.shape[1:])}")
    if int(batch_size) < 1:
        raise UserInputError(f"batch_size must be at least 1, got {batch_size!r}")
    extractor = RandomConvFeatures() if extractor is None else extractor
    f1 = _features(real, extractor, int(batch_size), "the real images")
    f2 = _features(fake, extractor, int(batch_size), "the generated images")
    if f1.shape[1] != f2.shape[1]:
        raise MismatchError(f"feature sizes differ: {f1.shape[1]} and {f2.shape[1]}")
    distance = frechet_from_features(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False))
    return distance, str(getattr(extractor, "name", type(extractor).__name__))
