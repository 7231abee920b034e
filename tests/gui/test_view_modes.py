"""The numbers of the Views widget's 3D copies: block means, their placement, slab-wise reading (no napari)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from napari_latent.gui.view_modes import (
    FrameSequence,
    block_factors,
    block_mean,
    downsampled_placement,
    downsampled_shape,
    iter_block_mean,
    volume_colors,
)
from napari_latent.progress import StopFlag, run_operation


def reference_block_mean(array: np.ndarray, factors: tuple[int, ...]) -> np.ndarray:
    """Block means by brute force: a loop over the blocks, partial blocks averaged over their voxels."""
    out_shape = tuple(-(-n // f) for n, f in zip(array.shape, factors, strict=True))
    out = np.empty(out_shape, dtype=np.float64)
    for index in np.ndindex(*out_shape):
        block = array[tuple(slice(i * f, (i + 1) * f) for i, f in zip(index, factors, strict=True))]
        out[index] = block.astype(np.float64).mean()
    return out


def test_block_factors_keep_every_axis_within_the_limit() -> None:
    assert block_factors((512, 512, 300), 192) == (3, 3, 2)
    assert downsampled_shape((512, 512, 300), (3, 3, 2)) == (171, 171, 150)
    assert block_factors((64, 64, 64), 192) == (1, 1, 1)  # small volumes are not downsampled
    assert block_factors((300, 200, 100), 100) == (3, 2, 1)


@pytest.mark.parametrize("factors", [(2, 2, 2), (3, 4, 1), (5, 3, 7)])
def test_block_mean_equals_the_mean_of_every_block(factors) -> None:
    rng = np.random.default_rng(0)
    array = rng.normal(size=(13, 17, 10)).astype(np.float32)
    result = block_mean(array, factors)
    assert result.dtype == np.float32 and result.shape == downsampled_shape(array.shape, factors)
    np.testing.assert_allclose(result, reference_block_mean(array, factors), rtol=1e-5, atol=1e-6)
    # leading axes are kept
    stacked = block_mean(np.stack([array, 2 * array]), factors)
    np.testing.assert_allclose(stacked[1], 2 * result, rtol=1e-5, atol=1e-6)


def test_the_placement_puts_each_block_at_the_centre_of_its_voxels() -> None:
    scale, translate = (1.0, 0.7, 0.7, 2.5), (-2.0, -90.0, 10.0, 3.0)
    factors = (3, 3, 2)
    new_scale, new_translate = downsampled_placement(scale, translate, factors)
    assert new_scale == pytest.approx((1.0, 2.1, 2.1, 5.0))
    assert new_translate == pytest.approx((-2.0, -90.0 + 0.7, 10.0 + 0.7, 3.0 + 1.25))
    # world position of block k = the mean of the world positions of its voxels
    shape = (10, 9, 7)
    for axis in range(3):
        n, f = shape[axis], factors[axis]
        for k in range(n // f):
            voxels = [translate[axis + 1] + scale[axis + 1] * (k * f + i) for i in range(f)]
            assert new_translate[axis + 1] + new_scale[axis + 1] * k == pytest.approx(np.mean(voxels))
    # a rotation moves the shift along the rotated axes
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    _, rotated = downsampled_placement(scale[1:], translate[1:], factors, rotation)
    assert rotated == pytest.approx((-90.0 - 0.7, 10.0 + 0.7, 3.0 + 1.25))


def test_iter_block_mean_reads_lazy_frames_slab_by_slab() -> None:
    rng = np.random.default_rng(1)
    frames = rng.normal(size=(3, 23, 12, 11)).astype(np.float32)
    lazy = da.from_array(frames, chunks=(1, 4, 12, 11))
    factors = (3, 2, 2)
    # a budget of two planes: many slabs, each a multiple of the block size along axis 0
    result = run_operation(iter_block_mean(FrameSequence(lazy), factors, budget=2 * 12 * 11 * 4))
    assert result.shape == (3, *downsampled_shape((23, 12, 11), factors))
    for k in range(3):
        np.testing.assert_allclose(result[k], reference_block_mean(frames[k], factors), rtol=1e-5, atol=1e-6)
    stop = StopFlag()
    stop.request()
    assert run_operation(iter_block_mean(FrameSequence(lazy), factors, stop)) is None


def test_the_3d_colormap_is_transparent_around_zero_and_opaque_at_the_limits() -> None:
    colors, controls = volume_colors()
    assert np.all(np.diff(controls) > 0) and controls[0] == 0 and controls[-1] == 1
    alpha = np.interp(np.linspace(0, 1, 101), controls, colors[:, 3])
    assert np.all(alpha[30:71] < 1e-9)  # |value| below 40% of the limit: invisible
    assert alpha[0] >= 0.8 and alpha[-1] >= 0.8
    assert np.all(np.diff(alpha[:31]) <= 0) and np.all(np.diff(alpha[70:]) >= 0)  # rising with |value|
    assert colors[0, 2] > colors[0, 0] and colors[-1, 0] > colors[-1, 2]  # blue below zero, red above
