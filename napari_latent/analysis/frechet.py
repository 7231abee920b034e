"""Fréchet distances between image sets, with pluggable feature extractors.

A Fréchet distance compares the Gaussian statistics (mean and covariance) of features of
two image sets. The default feature extractor is :class:`RandomConvFeatures`, a fixed,
seeded random conv net reported as ``"FD-randconv64"``; the name ``"FID"`` is reserved for
:class:`~napari_latent.analysis.inception.InceptionFeatures`, the InceptionV3 network of
pytorch-fid loaded from a local ``.safetensors`` file. Nothing is ever downloaded and no
pickle is ever loaded.
"""

from __future__ import annotations

import math
import warnings
from typing import Protocol, runtime_checkable

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import Tensor

from ..device import get_device
from ..errors import MismatchError, UserInputError
from ..metrics import check_images

__all__ = ["FeatureExtractor", "RandomConvFeatures", "batch_features", "extractor_name", "frechet_distance",
           "frechet_from_features", "frechet_of_features", "stack_features"]

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
        check_images(images, "images")
        with torch.no_grad():
            x = images.to(self.device, torch.float32)
            if tuple(x.shape[-2:]) != (self.size, self.size):
                x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
            for weight in self.weights:
                x = F.leaky_relu(F.conv2d(x, weight, stride=2, padding=1), self.negative_slope)
            flat = x.flatten(2)
            features = torch.cat([flat.mean(2), flat.std(2, correction=0)], dim=1)
        return features.to("cpu", torch.float64)


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


def batch_features(batch: Tensor, extractor: FeatureExtractor, name: str) -> np.ndarray:
    """Features of one image batch, one finite float64 row per image.

    Parameters
    ----------
    batch : Tensor
        Images ``(b, 1, S, S)`` in [-1, 1].
    extractor : FeatureExtractor
    name : str
        What the images are, for messages (``"the real images"``).

    Raises
    ------
    MismatchError
        For a batch that is not single-channel 4D, or features that are not one finite row
        per image.
    """
    check_images(batch, name)
    with torch.no_grad():
        chunk = torch.as_tensor(extractor(batch)).detach().to("cpu", torch.float64).numpy()
    if chunk.ndim != 2 or chunk.shape[0] != batch.shape[0]:
        raise MismatchError(f"the feature extractor gave shape {chunk.shape} for {batch.shape[0]} images")
    if not np.isfinite(chunk).all():
        raise MismatchError(f"the feature extractor gave non-finite features for {name}")
    return chunk


def stack_features(chunks: list[np.ndarray], name: str) -> np.ndarray:
    """The features of batches (:func:`batch_features`) as one ``(n, d)`` array of at least 2 rows."""
    count = sum(len(c) for c in chunks)
    if count < 2:
        raise MismatchError(f"{name} must hold at least 2 images for a Fréchet distance, got {count}")
    return np.concatenate(chunks)


def frechet_of_features(real: np.ndarray, fake: np.ndarray) -> float:
    """The Fréchet distance between two feature sets ``(n, d)`` and ``(m, d)`` (their means and covariances)."""
    if real.shape[1] != fake.shape[1]:
        raise MismatchError(f"feature sizes differ: {real.shape[1]} and {fake.shape[1]}")
    return frechet_from_features(real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False))


def extractor_name(extractor: FeatureExtractor) -> str:
    """The name a distance with ``extractor``'s features is reported under."""
    return str(getattr(extractor, "name", type(extractor).__name__))


def _features(images: Tensor, extractor: FeatureExtractor, batch_size: int, name: str) -> np.ndarray:
    check_images(images, name)
    if images.shape[0] < 2:
        raise MismatchError(f"{name} must hold at least 2 images for a Fréchet distance, got {images.shape[0]}")
    return stack_features([batch_features(images[start:start + batch_size], extractor, name)
                           for start in range(0, images.shape[0], batch_size)], name)


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
    check_images(real, "the real images")
    check_images(fake, "the generated images")
    if real.shape[1:] != fake.shape[1:]:
        raise MismatchError(f"image sizes differ: {tuple(real.shape[1:])} and {tuple(fake.shape[1:])}")
    if int(batch_size) < 1:
        raise UserInputError(f"batch_size must be at least 1, got {batch_size!r}")
    extractor = RandomConvFeatures() if extractor is None else extractor
    f1 = _features(real, extractor, int(batch_size), "the real images")
    f2 = _features(fake, extractor, int(batch_size), "the generated images")
    return frechet_of_features(f1, f2), extractor_name(extractor)
