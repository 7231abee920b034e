"""Image quality metrics and Fréchet distances."""

from __future__ import annotations

import contextlib
import itertools
import math

import numpy as np
import pytest
import pytorch_msssim
import scipy.linalg
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.metrics import structural_similarity

from napari_latent.analysis import metrics
from napari_latent.analysis.metrics import (
    PSNR_CAP_DB,
    InceptionFeatures,
    RandomConvFeatures,
    frechet_distance,
    frechet_from_features,
    image_metrics,
    ms_ssim,
    mse,
    psnr,
    ssim,
)
from napari_latent.errors import MismatchError, UserInputError


@pytest.fixture(autouse=True)
def _one_blas_thread():
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


# ------------------------------------------------------------------------------------------
# MSE and PSNR
# ------------------------------------------------------------------------------------------
def test_mse_and_psnr_match_numpy() -> None:
    a, b = smooth_images(5, 32, seed=0), noisy(smooth_images(5, 32, seed=0), 0.1)
    x, y = a.double().numpy(), b.double().numpy()
    expected_mse = ((x - y) ** 2).reshape(5, -1).mean(axis=1)
    expected_psnr = 10 * np.log10(4.0 / expected_mse)

    per_image = mse(a, b, reduction="none")
    assert per_image.shape == (5,)
    np.testing.assert_allclose(per_image.numpy(), expected_mse, rtol=1e-5)
    np.testing.assert_allclose(float(mse(a, b)), expected_mse.mean(), rtol=1e-5)
    np.testing.assert_allclose(psnr(a, b, reduction="none").numpy(), expected_psnr, rtol=1e-5)
    np.testing.assert_allclose(float(psnr(a, b)), expected_psnr.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(psnr(a, b, data_range=1.0)), (10 * np.log10(1.0 / expected_mse)).mean(), rtol=1e-5)


def test_psnr_of_identical_images_is_the_cap() -> None:
    a = smooth_images(3, 32, seed=0)
    b = a.clone()
    b[1] = noisy(a[1:2], 0.2)[0]
    values = psnr(a, b, reduction="none")
    assert values.shape == (3,)
    assert torch.isfinite(values).all()
    assert values[0] == PSNR_CAP_DB == values[2]
    assert values[1] < 40
    assert float(psnr(a, a)) == PSNR_CAP_DB


# ------------------------------------------------------------------------------------------
# SSIM
# ------------------------------------------------------------------------------------------
def _reference_ssim(x: np.ndarray, y: np.ndarray, window: int, data_range: float = 2.0) -> float:
    """Plain numpy/scipy SSIM: Gaussian window (sigma 1.5, ``window`` taps), valid region."""
    coords = np.arange(window) - window // 2
    g = np.exp(-(coords**2) / (2 * 1.5**2))
    g /= g.sum()

    def blur(z: np.ndarray) -> np.ndarray:
        z = ndimage.correlate1d(ndimage.correlate1d(z, g, axis=0), g, axis=1)
        r = window // 2
        return z[r:-r, r:-r]

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    s = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())


@pytest.mark.parametrize("size", [64, 128])
def test_ssim_matches_skimage(size: int) -> None:
    a = smooth_images(3, size, seed=2)
    b = noisy(blurred(a, 3), 0.15)
    ours = ssim(a, b, reduction="none").numpy()
    expected = [
        structural_similarity(
            a[i, 0].double().numpy(), b[i, 0].double().numpy(), data_range=2.0, gaussian_weights=True,
            sigma=1.5, use_sample_covariance=False,
        )
        for i in range(3)
    ]
    assert metrics.ssim_window(size) == 11  # skimage's Gaussian window at sigma 1.5 is 11 taps
    np.testing.assert_allclose(ours, expected, atol=1e-3)
    assert float(ssim(a, b)) == pytest.approx(np.mean(expected), abs=1e-3)


def test_ssim_of_small_images_uses_a_7_pixel_window() -> None:
    a = smooth_images(3, 32, seed=3)
    b = noisy(a, 0.2)
    assert metrics.ssim_window(32) == 7
    expected = [_reference_ssim(a[i, 0].double().numpy(), b[i, 0].double().numpy(), 7) for i in range(3)]
    np.testing.assert_allclose(ssim(a, b, reduction="none").numpy(), expected, atol=1e-4)
    # the reference itself agrees with skimage where the windows coincide (11 taps)
    x, y = a[0, 0].double().numpy(), b[0, 0].double().numpy()
    expected_11 = structural_similarity(x, y, data_range=2.0, gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False)
    assert _reference_ssim(x, y, 11) == pytest.approx(expected_11, abs=1e-6)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_ssim_equals_pytorch_msssim(size: int) -> None:
    a = smooth_images(3, size, seed=16)
    b = noisy(blurred(a, 3), 0.2)
    expected = pytorch_msssim.ssim(a, b, data_range=2.0, size_average=False, win_size=metrics.ssim_window(size))
    torch.testing.assert_close(ssim(a, b, reduction="none"), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ssim(a.double(), b.double(), reduction="none"), expected.double(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("size", [32, 64])
def test_ssim_is_one_for_identical_images_and_falls_with_noise(size: int) -> None:
    a = smooth_images(4, size, seed=4)
    assert float(ssim(a, a)) == pytest.approx(1.0, abs=1e-6)
    values = [float(ssim(a, noisy(a, level))) for level in (0.02, 0.05, 0.1, 0.2, 0.4)]
    assert all(x > y for x, y in itertools.pairwise(values)), values
    assert ssim(a, noisy(a, 0.1), reduction="none").shape == (4,)


# ------------------------------------------------------------------------------------------
# MS-SSIM
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("size", "scales", "window"), [(32, 2, 7), (64, 3, 7), (128, 4, 11), (256, 5, 11)])
def test_ms_ssim_settings(size: int, scales: int, window: int) -> None:
    chosen_window, weights = metrics.ms_ssim_settings(size)
    assert chosen_window == window
    assert len(weights) == scales
    assert size / 2 ** (scales - 1) >= 16  # the coarsest scale still holds a window comfortably
    assert sum(weights) == pytest.approx(1.0, abs=2e-4)
    standard = np.array(metrics.MS_SSIM_WEIGHTS[:scales])
    np.testing.assert_allclose(np.array(weights) / weights[0], standard / standard[0])


@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_ms_ssim_is_one_for_identical_images_and_falls_with_blur_and_noise(size: int) -> None:
    a = smooth_images(2, size, seed=5)
    assert float(ms_ssim(a, a)) == pytest.approx(1.0, abs=1e-5)
    by_noise = [float(ms_ssim(a, noisy(a, level))) for level in (0.05, 0.2, 0.5)]
    by_blur = [float(ms_ssim(a, blurred(a, width))) for width in (3, 5, 9)]
    for values in (by_noise, by_blur):
        assert all(math.isfinite(v) and 0 <= v <= 1 for v in values), values
        assert all(x > y for x, y in itertools.pairwise(values)), values
    assert ms_ssim(a, noisy(a, 0.1), reduction="none").shape == (2,)


def test_ms_ssim_equals_pytorch_msssim_on_large_images() -> None:
    a = smooth_images(2, 256, seed=6)
    b = noisy(blurred(a, 3), 0.1)
    expected = pytorch_msssim.ms_ssim(a, b, data_range=2.0, size_average=False)
    torch.testing.assert_close(ms_ssim(a, b, reduction="none"), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("size", [176, 200, 250])
def test_ms_ssim_equals_pytorch_msssim_with_our_settings_at_odd_scales(size: int) -> None:
    # sizes pytorch_msssim accepts; 200 and 250 reach odd sizes, which are padded before pooling
    window, weights = metrics.ms_ssim_settings(size)
    a = smooth_images(2, size, seed=17)
    b = noisy(blurred(a, 5), 0.1)
    expected = pytorch_msssim.ms_ssim(a, b, data_range=2.0, size_average=False, win_size=window, weights=list(weights))
    torch.testing.assert_close(ms_ssim(a, b, reduction="none"), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_ms_ssim_is_never_nan_for_unrelated_or_inverted_images(size: int) -> None:
    a = smooth_images(3, size, seed=7)
    generator = torch.Generator().manual_seed(8)
    for b in (-a, torch.rand(a.shape, generator=generator) * 2 - 1, torch.zeros_like(a), torch.ones_like(a)):
        values = ms_ssim(a, b, reduction="none")
        assert not torch.isnan(values).any(), values
        assert ((values >= 0) & (values <= 1)).all()
    assert float(ms_ssim(torch.zeros_like(a), torch.zeros_like(a))) == pytest.approx(1.0)


def test_image_metrics_averages_over_batches() -> None:
    a = smooth_images(10, 64, seed=9)
    b = noisy(a, 0.1)
    whole = image_metrics(b, a, batch_size=256)
    batched = image_metrics(b, a, batch_size=3)
    assert set(whole) == {"mse", "psnr", "ssim", "ms_ssim"}
    for key in whole:
        assert batched[key] == pytest.approx(whole[key], rel=1e-5)
    assert whole["mse"] == pytest.approx(float(mse(b, a)), rel=1e-5)
    assert whole["psnr"] == pytest.approx(float(psnr(b, a)), rel=1e-5)
    assert whole["ssim"] == pytest.approx(float(ssim(b, a)), rel=1e-5)
    assert whole["ms_ssim"] == pytest.approx(float(ms_ssim(b, a)), rel=1e-5)


@pytest.mark.parametrize("function", [mse, psnr, ssim, ms_ssim, image_metrics])
def test_mismatched_or_malformed_images_are_clear_errors(function) -> None:
    a = torch.zeros(2, 1, 32, 32)
    with pytest.raises(MismatchError, match="same shape"):
        function(a, torch.zeros(2, 1, 64, 64))
    with pytest.raises(MismatchError, match="same shape"):
        function(a, torch.zeros(3, 1, 32, 32))
    with pytest.raises(MismatchError, match="single-channel"):
        function(torch.zeros(2, 3, 32, 32), torch.zeros(2, 3, 32, 32))
    with pytest.raises(MismatchError, match="single-channel"):
        function(torch.zeros(2, 32, 32), torch.zeros(2, 32, 32))


def test_bad_options_are_clear_errors() -> None:
    a = torch.zeros(2, 1, 32, 32)
    with pytest.raises(UserInputError, match="reduction"):
        mse(a, a, reduction="sum")
    with pytest.raises(UserInputError, match="data_range"):
        psnr(a, a, data_range=0)
    with pytest.raises(MismatchError, match="at least 7 pixels"):
        ssim(torch.zeros(2, 1, 5, 5), torch.zeros(2, 1, 5, 5))


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
        monkeypatch.setattr(metrics.scipy.linalg, "sqrtm", lambda m, broken=broken: broken)
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
    assert isinstance(first, metrics.FeatureExtractor)
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


# ------------------------------------------------------------------------------------------
# InceptionV3 (structure only: the real weights cannot be downloaded here)
# ------------------------------------------------------------------------------------------
def test_inception_features_load_from_safetensors_and_are_called_fid(tmp_path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    state = metrics._FIDInceptionV3().state_dict()
    assert "Mixed_7c.branch3x3dbl_3b.bn.running_var" in state  # pytorch-fid's key names
    state["fc.weight"] = torch.zeros(1008, 2048)  # the classifier of the original file is ignored
    path = tmp_path / "inception.safetensors"
    save_file(state, str(path))

    extractor = InceptionFeatures(path)
    assert extractor.name == "FID"
    features = extractor(smooth_images(2, 32, seed=15))
    assert features.shape == (2, 2048)
    assert features.dtype == torch.float64
    assert torch.isfinite(features).all()


def test_inception_features_refuse_pickles_and_foreign_weights(tmp_path) -> None:
    from safetensors.torch import save_file

    pickled = tmp_path / "inception.pth"
    pickled.write_bytes(b"not even read")
    with pytest.raises(UserInputError, match="safetensors"):
        InceptionFeatures(pickled)
    with pytest.raises(UserInputError, match="not found"):
        InceptionFeatures(tmp_path / "missing.safetensors")
    foreign = tmp_path / "foreign.safetensors"
    save_file({"encoder.weight": torch.zeros(3, 3)}, str(foreign))
    with pytest.raises(UserInputError, match="missing"):
        InceptionFeatures(foreign)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(UserInputError, match="cannot read"):
        InceptionFeatures(garbage)
