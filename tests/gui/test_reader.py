"""The npe2 reader and sample data, alone and in a real napari viewer."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_latent.errors import VolumeError
from napari_latent.gui.layers import META_KEY, grid_layer_data, volume_from_layer
from napari_latent.gui.reader import get_reader, read_nifti
from napari_latent.volumes import open_volume, save_volume
from tests.conftest import reoriented_copy


def test_get_reader_claims_only_nifti(anatomical_path: Path) -> None:
    assert get_reader(str(anatomical_path)) is read_nifti
    assert get_reader("scan.nii.gz") is read_nifti
    assert get_reader("picture.png") is None
    assert get_reader(["a.nii", "b.tif"]) is None


def test_reader_layer_is_display_oriented_with_mm_scale(anatomical_path: Path) -> None:
    [(data, kwargs, kind)] = read_nifti(str(anatomical_path))
    assert kind == "image"
    assert data.shape == (25, 41, 33)  # (S, P, L)
    assert kwargs["scale"] == pytest.approx((2.0, 2.0, 2.0))
    assert kwargs["translate"] == pytest.approx((-16.0, -40.0, -32.0))
    entry = kwargs["metadata"][META_KEY]
    np.testing.assert_allclose(entry["grid"]["affine"], nib.load(anatomical_path).affine)
    assert entry["source_orientation"] == "LAS"
    back = volume_from_layer(data, kwargs["metadata"], kwargs["scale"], kwargs["translate"])
    np.testing.assert_array_equal(back.data, open_volume(anatomical_path).data)


def test_reader_series_has_a_frame_axis(example4d_path: Path) -> None:
    [(data, kwargs, _)] = read_nifti(str(example4d_path))
    assert data.ndim == 4 and data.shape[0] == 2
    assert kwargs["axis_labels"][0] == "frame"
    assert kwargs["metadata"][META_KEY]["oblique"] is True
    assert len(kwargs["scale"]) == 4


def test_reader_raises_specific_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.nii"
    bad.write_text("not an image")
    with pytest.raises(VolumeError, match="not a valid NIfTI"):
        read_nifti(str(bad))


@pytest.mark.gui
def test_layers_from_any_file_orientation_overlay_in_napari(make_napari_viewer, anatomical_path: Path,
                                                            tmp_path: Path) -> None:
    viewer = make_napari_viewer()
    other = tmp_path / "other.nii.gz"
    nib.save(reoriented_copy(nib.load(anatomical_path), ("P", "I", "R")), other)
    [a] = viewer.open(str(anatomical_path), plugin="napari-latent")
    [b] = viewer.open(str(other), plugin="napari-latent")
    np.testing.assert_array_equal(a.data, b.data)
    for index in [(0, 0, 0), (10, 20, 30), (24, 40, 32)]:
        np.testing.assert_allclose(a.data_to_world(index), b.data_to_world(index))
    # a map computed on the volume and added as a layer overlays voxel for voxel
    volume = open_volume(anatomical_path)
    derived = grid_layer_data(volume.data > volume.data.mean(), volume.grid, "mask", layer_type="labels")
    viewer._add_layer_from_data(derived[0].astype(np.uint8), derived[1], derived[2])
    mask_layer = viewer.layers["mask"]
    assert mask_layer.data.shape == a.data.shape
    np.testing.assert_allclose(mask_layer.scale, a.scale)
    np.testing.assert_allclose(mask_layer.translate, a.translate)
    # the world position napari reports for a voxel is its (S, P, L) position in mm per the affine
    index_volume = np.arange(volume.data.size).reshape(volume.shape)
    shown_index = grid_layer_data(index_volume, volume.grid, "index")[0]
    for display_voxel in [(3, 4, 5), (20, 30, 10)]:
        i, j, k = np.unravel_index(shown_index[display_voxel], volume.shape)
        x, y, z = (volume.affine @ np.array([i, j, k, 1.0]))[:3]
        np.testing.assert_allclose(a.data_to_world(display_voxel), [z, -y, -x])


@pytest.mark.gui
def test_sample_data_opens_in_napari(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    viewer.open_sample("napari-latent", "disease_phantom")
    names = [layer.name for layer in viewer.layers]
    assert "disease phantom" in names
    image = viewer.layers["disease phantom"]
    labels = viewer.layers["disease phantom tissue labels"]
    assert image.data.shape == labels.data.shape == (128, 128, 128)
    np.testing.assert_allclose(image.scale, labels.scale)
    assert set(np.unique(labels.data)) >= {0, 4, 5, 6, 7}  # grey, white matter, ventricles, lesions


def test_saved_map_reopens_on_the_source_grid(anatomical_path: Path, tmp_path: Path) -> None:
    volume = open_volume(anatomical_path)
    path = save_volume(volume.data * 0.5, tmp_path / "half.nii.gz", like=volume)
    [(data, kwargs, _)] = read_nifti(str(path))
    [(ref, ref_kwargs, _)] = read_nifti(str(anatomical_path))
    assert data.shape == ref.shape
    assert kwargs["scale"] == pytest.approx(ref_kwargs["scale"])
    assert kwargs["translate"] == pytest.approx(ref_kwargs["translate"])
    np.testing.assert_allclose(data, ref * 0.5)
