"""Slicing volumes into model images and back onto the source grid."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_latent.errors import MismatchError, VolumeError
from napari_latent.volumes import SliceGeometry, SliceSpec, Volume, open_volume, slice_volume
from napari_latent.volumes.slicing import PLANES
from tests.conftest import reoriented_copy


def _plain_round_trip_error(volume: Volume, geometry: SliceGeometry) -> float:
    """Mean error of resizing the same crops down and up again, without our code."""
    lo, hi = geometry.window_values
    planes = geometry.reorientation.apply(volume.data)[geometry.indices]
    r0, r1, c0, c1 = geometry.box
    padded = np.full((planes.shape[0], r1 - r0, c1 - c0), lo, np.float32)
    rr0, cc0 = max(r0, 0), max(c0, 0)
    rr1, cc1 = min(r1, planes.shape[1]), min(c1, planes.shape[2])
    padded[:, rr0 - r0:rr1 - r0, cc0 - c0:cc1 - c0] = planes[:, rr0:rr1, cc0:cc1]
    crops = torch.from_numpy(padded)[:, None]
    size = geometry.spec.size
    down = F.interpolate(crops, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=size < crops.shape[-1])
    up = F.interpolate(down, size=crops.shape[-2:], mode="bilinear", align_corners=False,
                       antialias=crops.shape[-1] < size)
    inside = (slice(None), slice(None), slice(rr0 - r0, rr1 - r0), slice(cc0 - c0, cc1 - c0))
    return float((up - crops)[inside].abs().mean()) / (hi - lo)


@pytest.mark.parametrize("plane", PLANES)
def test_forward_then_inverse_recovers_the_volume_within_resampling_error(anatomical_path: Path, plane: str) -> None:
    volume = open_volume(anatomical_path)
    spec = SliceSpec(plane=plane, size=64, window=(0.0, 100.0), min_foreground=0.0)
    images, geometry = slice_volume(volume, spec)
    assert images.shape == (len(geometry.indices), 1, 64, 64)
    assert images.dtype == torch.float32
    assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0
    back = geometry.to_volume(images, fill=volume)
    assert back.shape == volume.shape
    inside = geometry.slice_mask()
    lo, hi = geometry.window_values
    ours = float(np.abs(back - volume.data)[inside].mean()) / (hi - lo)
    plain = _plain_round_trip_error(volume, geometry)
    assert ours < 0.03
    assert ours <= plain * 1.5 + 1e-3  # nothing lost beyond what resampling itself loses


@pytest.mark.parametrize("plane", PLANES)
def test_inverse_is_exact_without_resizing(anatomical_path: Path, plane: str) -> None:
    volume = open_volume(anatomical_path)
    probe = slice_volume(volume, SliceSpec(plane=plane, size=64, window=(0.0, 100.0), min_foreground=0.0))[1]
    rows, cols = probe.box_shape
    assert rows == cols
    spec = SliceSpec(plane=plane, size=rows, window=(0.0, 100.0), min_foreground=0.0)
    images, geometry = slice_volume(volume, spec)
    back = geometry.to_volume(images, fill=volume)
    np.testing.assert_allclose(back, volume.data, atol=1e-6 * (geometry.window_values[1] - geometry.window_values[0]))


@pytest.mark.parametrize("codes", [("R", "A", "S"), ("P", "I", "R"), ("S", "L", "A")])
@pytest.mark.parametrize("plane", PLANES)
def test_images_do_not_depend_on_the_files_array_order(anatomical_path: Path, tmp_path: Path,
                                                      codes: tuple[str, str, str], plane: str) -> None:
    reference = open_volume(anatomical_path)
    path = tmp_path / "copy.nii"
    nib.save(reoriented_copy(nib.load(anatomical_path), codes), path)
    volume = open_volume(path)
    spec = SliceSpec(plane=plane, size=32)
    ref_images, ref_geometry = slice_volume(reference, spec)
    images, geometry = slice_volume(volume, spec)
    np.testing.assert_array_equal(geometry.indices, ref_geometry.indices)
    torch.testing.assert_close(images, ref_images)
    # and the inverse lands on each file's own grid, overlaying the same anatomy
    back = geometry.to_volume(images)
    ref_back = ref_geometry.to_volume(ref_images)
    transform = nib.orientations.ornt_transform(nib.io_orientation(volume.affine), nib.io_orientation(reference.affine))
    np.testing.assert_allclose(nib.orientations.apply_orientation(back, transform), ref_back, atol=1e-3)


def test_axial_slices_run_inferior_to_superior_with_anterior_up(anatomical_path: Path) -> None:
    volume = open_volume(anatomical_path)
    _, geometry = slice_volume(volume, SliceSpec(plane="axial", size=32, min_foreground=0.0))
    marker = np.zeros(volume.shape, np.float32)
    # the voxel nearest world (x=+20 right... ) : mark a superior, anterior, left voxel
    ijk = np.round(np.linalg.inv(volume.affine) @ np.array([-20.0, 10.0, 20.0, 1.0]))[:3].astype(int)
    marker[tuple(ijk)] = 1.0
    planes = geometry.reorientation.apply(marker)
    s, r, c = np.argwhere(planes)[0]
    # superior -> high slice index; anterior -> upper rows; patient's left -> right columns
    ijk_lo = np.round(np.linalg.inv(volume.affine) @ np.array([20.0, -10.0, -10.0, 1.0]))[:3].astype(int)
    marker2 = np.zeros_like(marker)
    marker2[tuple(ijk_lo)] = 1.0
    s2, r2, c2 = np.argwhere(geometry.reorientation.apply(marker2))[0]
    assert s > s2 and r < r2 and c > c2


def test_min_foreground_drops_empty_slices_and_window_maps_to_unit_range(anatomical_path: Path) -> None:
    volume = open_volume(anatomical_path)
    all_slices = slice_volume(volume, SliceSpec(size=32, min_foreground=0.0))[1]
    some = slice_volume(volume, SliceSpec(size=32, min_foreground=0.4))[1]
    assert 0 < len(some.indices) < len(all_slices.indices)
    images, geometry = slice_volume(volume, SliceSpec(size=32, window=(1.0, 99.0)))
    assert 0.95 < float(images.max()) <= 1.0  # the 99th percentile maps to 1 (then anti-aliased)
    assert float(images.min()) == pytest.approx(-1.0)
    assert geometry.window_values[0] < geometry.window_values[1]


def test_spec_and_geometry_serialise_to_json(anatomical_path: Path) -> None:
    spec = SliceSpec(plane="coronal", size=64, window=(2.0, 98.0), crop=False, margin=0.1, min_foreground=0.1)
    assert SliceSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    volume = open_volume(anatomical_path)
    images, geometry = slice_volume(volume, spec)
    again = SliceGeometry.from_json(json.loads(json.dumps(geometry.to_json())))
    np.testing.assert_array_equal(again.to_volume(images), geometry.to_volume(images))


def test_difference_and_raw_maps(anatomical_path: Path) -> None:
    volume = open_volume(anatomical_path)
    images, geometry = slice_volume(volume, SliceSpec(size=32, min_foreground=0.0))
    diff = geometry.to_volume(torch.full_like(images, 0.5), kind="difference")
    lo, hi = geometry.window_values
    inside = geometry.slice_mask()
    np.testing.assert_allclose(diff[inside], 0.25 * (hi - lo), rtol=1e-5)
    assert np.all(diff[~inside] == 0.0)
    raw = geometry.to_volume(torch.ones_like(images), kind="raw")
    assert np.all(np.isclose(raw, 0.0) | np.isclose(raw, 1.0))
    np.testing.assert_array_equal(np.isclose(raw, 1.0), inside)


def test_bad_settings_and_mismatches_are_clear(anatomical_path: Path) -> None:
    with pytest.raises(VolumeError, match="unknown plane"):
        SliceSpec(plane="oblique")  # type: ignore[arg-type]
    with pytest.raises(VolumeError, match="window"):
        SliceSpec(window=(90.0, 10.0))
    with pytest.raises(VolumeError, match="unknown slice settings"):
        SliceSpec.from_json({"plane": "axial", "colour": "red"})
    volume = open_volume(anatomical_path)
    images, geometry = slice_volume(volume, SliceSpec(size=32))
    with pytest.raises(MismatchError, match="images given"):
        geometry.to_volume(images[:-1])
    with pytest.raises(MismatchError, match="not on this geometry's grid"):
        geometry.images(np.zeros((3, 3, 3), np.float32))
    with pytest.raises(VolumeError, match="no foreground"):
        slice_volume(volume, SliceSpec(size=32), mask=np.zeros(volume.shape, bool))
    with pytest.raises(VolumeError, match="no axial slice"):
        slice_volume(volume, SliceSpec(size=32, min_foreground=0.99))
