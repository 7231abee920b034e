"""Pixel metrics: MSE, PSNR, SSIM, MS-SSIM."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import pytorch_msssim
import torch
from scipy import ndimage
from skimage.metrics import structural_similarity

from napari_latent import metrics
from napari_latent.errors import MismatchError, UserInputError
from napari_latent.metrics import PSNR_CAP_DB, image_metrics, ms_ssim, mse, psnr, ssim
from tests.analysis._images import blurred, noisy, one_blas_thread, smooth_images  # noqa: F401


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
