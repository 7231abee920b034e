"""Fréchet distances and the default feature extractor."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from napari_latent.analysis import frechet
from napari_latent.analysis.frechet import RandomConvFeatures, frechet_distance, frechet_from_features
from napari_latent.errors import MismatchError
from tests.analysis._images import blurred, noisy, one_blas_thread, smooth_images  # noqa: F401


# ------------------------------------------------------------------------------------------
# Fréchet distance
# ------------------------------------------------------------------------------------------
def test_frechet_from_features_matches_the_closed_form_for_diagonal_gaussians() -> None:
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.1, 3.0, size=6), rng.uniform(0.1, 3.0, size=6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet_from_features(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)
    # rotating both Gaussians alike changes nothing
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    rotated = frechet_from_features(q @ mu1, q @ np.diag(s1) @ q.T, q @ mu2, q @ np.diag(s2) @ q.T)
    assert rotated == pytest.approx(expected, rel=1e-8)
    assert frechet_from_features(mu1, np.diag(s1), mu1, np.diag(s1)) == pytest.approx(0.0, abs=1e-10)


def test_frechet_from_features_survives_singular_covariances() -> None:
    rng = np.random.default_rng(1)
    f1, f2 = rng.normal(size=(5, 20)), rng.normal(size=(5, 20)) + 1.0  # rank 4 covariances in 20-d
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    distance = frechet_from_features(f1.mean(0), s1, f2.mean(0), s2)
    # tr sqrt(s1 s2) lies between 0 and sqrt(tr s1 tr s2) (Cauchy-Schwarz)
    diff = f1.mean(0) - f2.mean(0)
    upper = diff @ diff + np.trace(s1) + np.trace(s2)
    lower = upper - 2 * np.sqrt(np.trace(s1) * np.trace(s2))
    assert math.isfinite(distance)
    assert lower - 1e-9 <= distance <= upper + 1e-9
    with pytest.raises(MismatchError):
        frechet_from_features(f1.mean(0), s1, f2.mean(0)[:3], s2)


def test_frechet_from_features_falls_back_when_sqrtm_fails(monkeypatch) -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(8, 8)), rng.normal(size=(8, 8))
    s1, s2 = a @ a.T + 0.1 * np.eye(8), b @ b.T + 0.1 * np.eye(8)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    expected = frechet_from_features(mu1, s1, mu2, s2)
    w1, v1 = np.linalg.eigh(s1)
    root1 = (v1 * np.sqrt(w1)) @ v1.T
    closed = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1 + s2) - 2 * np.trace(scipy.linalg.sqrtm(root1 @ s2 @ root1)).real
    assert expected == pytest.approx(closed, rel=1e-9)
    for broken in (np.full((8, 8), np.nan), np.full((8, 8), 1j)):
        monkeypatch.setattr(frechet.scipy.linalg, "sqrtm", lambda m, broken=broken: broken)
        assert frechet_from_features(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_separates_distributions() -> None:
    blobs = smooth_images(160, 64, seed=10)
    generator = torch.Generator().manual_seed(11)
    noise = torch.rand((80, 1, 64, 64), generator=generator) * 2 - 1

    itself, name = frechet_distance(blobs, blobs)
    assert name == "FD-randconv64"
    features = RandomConvFeatures()(blobs).numpy()
    scale = np.trace(np.cov(features, rowvar=False))
    assert 0 <= itself < 1e-6 * scale

    halves, _ = frechet_distance(blobs[:80], blobs[80:])
    different, _ = frechet_distance(blobs[:80], noise)
    assert halves > 0
    assert different > 10 * halves, (halves, different)


def test_random_conv_features_are_fixed_by_the_seed() -> None:
    images = smooth_images(6, 128, seed=12)
    first, second = RandomConvFeatures(seed=0), RandomConvFeatures(seed=0)
    features = first(images)
    assert features.shape == (6, first.dim) == (6, 512)
    assert features.dtype == torch.float64
    assert torch.equal(features, second(images))
    assert not torch.allclose(features, RandomConvFeatures(seed=1)(images))
    assert first.name == "FD-randconv64"
    assert "FID" not in first.name
    assert isinstance(first, frechet.FeatureExtractor)
    # images are resized to 64 pixels first: a 64-pixel version gives nearly the same features
    small = F.interpolate(images, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
    torch.testing.assert_close(first(small), features)


def test_frechet_distance_reports_the_extractor_name_and_checks_inputs() -> None:
    class Moments:
        name = "FD-moments"

        def __call__(self, images: torch.Tensor) -> torch.Tensor:
            flat = images.flatten(1).double()
            return torch.stack([flat.mean(1), flat.std(1), flat.abs().mean(1)], dim=1)

    a, b = smooth_images(20, 32, seed=13), noisy(smooth_images(20, 32, seed=14), 0.3)
    distance, name = frechet_distance(a, b, extractor=Moments(), batch_size=7)
    assert name == "FD-moments"
    assert distance > 0
    with pytest.raises(MismatchError, match="at least 2 images"):
        frechet_distance(a[:1], b, extractor=Moments())
    with pytest.raises(MismatchError, match="sizes differ"):
        frechet_distance(a, smooth_images(20, 64, seed=0), extractor=Moments())
    with pytest.raises(MismatchError, match="single-channel"):
        frechet_distance(a[:, 0], b[:, 0], extractor=Moments())
