"""Pixel-wise image quality metrics: MSE, PSNR, SSIM and MS-SSIM.

Images are torch tensors ``(n, 1, H, W)`` (normally square, ``S`` = 32, 64, 128 or 256) with
values in [-1, 1], hence the default ``data_range`` of 2. Every metric returns one value
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

The SSIM filter is applied as two small matrix products (separable Gaussian), which on the
CPU is about ten times faster than a depthwise convolution; results equal
``pytorch_msssim`` within 1e-5 (the tests check it).

Fréchet distances between image sets are in :mod:`napari_latent.analysis.frechet`.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import MismatchError, UserInputError

__all__ = [
    "MS_SSIM_WEIGHTS",
    "PSNR_CAP_DB",
    "check_images",
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
def check_images(images: Tensor, name: str) -> None:
    """Check that ``images`` is a non-empty batch of single-channel images ``(n, 1, H, W)``.

    Parameters
    ----------
    images : Tensor
        The batch to check.
    name : str
        What the batch is, for the message ("the real images").

    Raises
    ------
    MismatchError
        When ``images`` is not a tensor, not ``(n, 1, H, W)`` or empty.
    """
    if not isinstance(images, Tensor):
        raise MismatchError(f"{name} must be a torch tensor (n, 1, H, W), got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 1:
        raise MismatchError(f"{name} must be single-channel images of shape (n, 1, H, W), got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise MismatchError(f"{name} holds no images")


def _check_pair(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    check_images(a, "the first image batch")
    check_images(b, "the second image batch")
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
