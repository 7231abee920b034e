"""Synthetic test images shared by the analysis tests."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F


@pytest.fixture(autouse=True)
def one_blas_thread():
    """Matrix square roots are much slower with competing BLAS threads on small shared machines."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings it along
        threadpool_limits = contextlib.nullcontext
    with threadpool_limits(1):
        yield


def smooth_images(n: int, size: int, seed: int) -> torch.Tensor:
    """Smooth random images in [-1, 1] (blurred noise, like blobs of anatomy)."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand((n, 1, size, size), generator=generator) * 2 - 1
    blurred = F.avg_pool2d(noise, 9, stride=1, padding=4, count_include_pad=False)
    return (blurred / blurred.abs().amax(dim=(1, 2, 3), keepdim=True)).clamp(-1, 1)


def noisy(images: torch.Tensor, level: float, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (images + level * torch.randn(images.shape, generator=generator)).clamp(-1, 1)


def blurred(images: torch.Tensor, width: int) -> torch.Tensor:
    return F.avg_pool2d(images, width, stride=1, padding=width // 2, count_include_pad=False)


