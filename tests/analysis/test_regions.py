"""Region-of-interest curves along a traversal: exact numbers, in memory and from a store."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_latent.analysis.eigen import eigencomponents
from napari_latent.analysis.regions import automatic_csf_mask, automatic_regions, region_curves
from napari_latent.errors import MismatchError, UserInputError
from napari_latent.latent import invert
from napari_latent.latent.traversal import LazyTraversal, StoredTraversal, Traversal
from napari_latent.latent.traversal.store import write_store
from napari_latent.models.base import build_model
from napari_latent.volumes import Volume
from napari_latent.volumes.grid import Grid
from napari_latent.volumes.phantoms import PhantomFactors, make_phantom

SHAPE = (6, 8, 10)
AFFINE = np.diag([0.5, 2.0, 3.0, 1.0])  # a voxel is 3 mm³
ALPHAS = np.array([0.0, 1.0, 2.0, 3.0])


def synthetic() -> tuple[Traversal, np.ndarray]:
    """Background 0; region 1 (a box) goes 10 + 2 alpha; region 2 grows one plane per alpha at 100."""
    labels = np.zeros(SHAPE, dtype=np.int32)
    labels[1:3, 2:6, 2:8] = 1          # 2 * 4 * 6 = 48 voxels
    labels[3:6, :, :] = 2              # 3 * 8 * 10 = 240 voxels
    images = np.zeros((len(ALPHAS), *SHAPE), dtype=np.float32)
    for a, alpha in enumerate(ALPHAS):
        images[a][labels == 1] = 10 + 2 * alpha
        images[a][labels == 2] = 20.0
        images[a][3:3 + int(alpha), :, :] = 100.0  # alpha planes of region 2 are bright (80 voxels each)
    return Traversal(images, ALPHAS, Grid(SHAPE, AFFINE)), labels


def test_mean_intensity_and_thresholded_volume_are_exact() -> None:
    traversal, labels = synthetic()
    curves = region_curves(traversal, labels, threshold=50.0)
    assert curves.voxel_mm3 == pytest.approx(3.0)
    np.testing.assert_array_equal(curves.labels, [1, 2])
    np.testing.assert_array_equal(curves.voxels, [48, 240])
    np.testing.assert_allclose(curves.volume_mm3, [144.0, 720.0])
    np.testing.assert_allclose(curves.mean_intensity[0], 10 + 2 * ALPHAS)
    np.testing.assert_allclose(curves.mean_intensity[1], (80 * ALPHAS * 100 + (240 - 80 * ALPHAS) * 20) / 240)
    np.testing.assert_array_equal(curves.threshold_voxels, [[0, 0, 0, 0], [0, 80, 160, 240]])
    np.testing.assert_allclose(curves.threshold_mm3[1], 240.0 * ALPHAS)
    below = region_curves(traversal, labels == 1, threshold=13.0, below=True)
    np.testing.assert_array_equal(below.threshold_voxels, [[48, 48, 0, 0]])  # 10, 12 < 13; 14, 16 not


def test_a_store_gives_the_same_curves_slab_by_slab(tmp_path: Path) -> None:
    traversal, labels = synthetic()
    stored = StoredTraversal.open(write_store(traversal, tmp_path / "t.zarr"))
    ours, theirs = region_curves(stored, labels, threshold=50.0), region_curves(traversal, labels, threshold=50.0)
    np.testing.assert_allclose(ours.mean_intensity, theirs.mean_intensity, rtol=1e-12)
    np.testing.assert_array_equal(ours.threshold_voxels, theirs.threshold_voxels)
    # Streaming: blocks of one plane give the same numbers (the store's default slab is the whole grid here).
    stored.default_chunk = lambda: 1  # type: ignore[method-assign]
    np.testing.assert_allclose(region_curves(stored, labels).mean_intensity, theirs.mean_intensity, rtol=1e-12)


def test_regions_on_another_grid_are_refused(tmp_path: Path) -> None:
    traversal, labels = synthetic()
    with pytest.raises(MismatchError, match="grid"):
        region_curves(traversal, labels[:, :, :-1])
    path = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(labels.astype(np.float32), np.diag([1.0, 1.0, 1.0, 1.0])), path)
    with pytest.raises(MismatchError, match="affine"):
        region_curves(traversal, path)
    nib.save(nib.Nifti1Image(labels.astype(np.float32), AFFINE), path)
    np.testing.assert_array_equal(region_curves(traversal, path).voxels, [48, 240])  # the right grid is read
    with pytest.raises(UserInputError, match="no voxel"):
        region_curves(traversal, np.zeros(SHAPE, dtype=bool))


def test_csv_columns_rows_and_component_means(tmp_path: Path) -> None:
    traversal, labels = synthetic()
    eigen = eigencomponents(traversal, mask=labels > 0, n_components=2)
    curves = region_curves(traversal, labels, threshold=50.0, eigen=eigen, names=["box", "slab"])
    path = curves.to_csv(tmp_path / "regions.csv")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["region", "label", "region_voxels", "region_mm3", "alpha", "mean_intensity",
                             "above_threshold_voxels", "above_threshold_mm3", "component_1_mean",
                             "component_2_mean"]
    assert len(rows) == 2 * len(ALPHAS) and rows[0]["region"] == "box" and rows[-1]["region"] == "slab"
    assert float(rows[-1]["above_threshold_mm3"]) == pytest.approx(720.0)
    maps = [eigen.component_map(k) for k in range(2)]
    expected = [[float(m[labels == r].mean()) for m in maps] for r in (1, 2)]
    np.testing.assert_allclose(curves.component_means, expected, rtol=1e-5, atol=1e-6)
    figure = curves.figure()
    assert len(figure.axes) == 2
    assert "box" in curves.summary()


def test_automatic_csf_mask_finds_the_dark_voxels_inside_the_head() -> None:
    shape = (24, 24, 24)
    grid = np.indices(shape) - 11.5
    radius = np.sqrt((grid**2).sum(axis=0))
    image = np.zeros(shape, dtype=np.float32)
    image[radius < 11] = 60.0                               # grey matter
    image[radius < 8] = 90.0                                # white matter
    image[(radius < 3)] = 15.0                               # a ventricle
    found = automatic_csf_mask(image)
    np.testing.assert_array_equal(found.mask, radius < 3)
    assert 15.0 < found.threshold < 60.0
    traversal = Traversal(np.stack([image, image]), [0.0, 1.0], Grid(shape, np.eye(4)))
    labels, names, threshold = automatic_regions(traversal)
    assert names[0].startswith("csf") and threshold == found.threshold
    np.testing.assert_array_equal(labels == 1, radius < 3)


def test_a_lazy_traversal_is_decoded_slab_by_slab_with_the_same_curves() -> None:
    torch.manual_seed(0)
    model = build_model("vae", image_size=32, latent_dim=4, base_channels=4, max_channels=8).eval()
    phantom = make_phantom(PhantomFactors(), size=24, seed=3)
    volume = Volume(phantom.image, phantom.affine, name="phantom")
    lazy = LazyTraversal(model, invert(model, volume, method="encoder"), torch.ones(4), "0:2:3", source=volume)
    labels = np.zeros(volume.grid.shape, dtype=np.int32)
    labels[8:16, 8:16, 8:16] = 1
    labels[4:8] = 2
    threshold = float(np.median(volume.data))
    eager = region_curves(lazy.compute(), labels, threshold=threshold)
    lazy.default_chunk = lambda: 3  # type: ignore[method-assign]
    streamed = region_curves(lazy, labels, threshold=threshold)
    np.testing.assert_allclose(streamed.mean_intensity, eager.mean_intensity, rtol=1e-5)
    np.testing.assert_array_equal(streamed.threshold_voxels, eager.threshold_voxels)
