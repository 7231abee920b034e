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


# -- fixed intensity windows (CT) ------------------------------------------------------------

def _ct_like(seed: int, lung_fraction: float, bone_hu: float, shape: tuple[int, int, int] = (40, 36, 24)) -> Volume:
    """A CT-like volume in Hounsfield units: air, a soft-tissue body, lungs and a bone column."""
    rng = np.random.default_rng(seed)
    i, j, _ = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    data = np.full(shape, -1000.0, np.float32)
    body = (i / 0.8) ** 2 + (j / 0.7) ** 2 < 1.0
    data[body] = 40.0
    lungs = (np.abs(i) - 0.35) ** 2 / (0.25 * lung_fraction) ** 2 + (j / (0.4 * lung_fraction)) ** 2 < 1.0
    data[lungs] = -850.0
    data[body & (i ** 2 + (j + 0.45) ** 2 < 0.02)] = bone_hu
    data += rng.normal(0.0, 10.0, shape).astype(np.float32)
    affine = np.diag([1.5, 1.5, 3.0, 1.0])
    return Volume(data, affine, name=f"ct-{seed}")


def _normalised(geometry: SliceGeometry, hu: float) -> float:
    """The model value of ``hu`` under the geometry (the centre of a constant image)."""
    images = geometry.images(np.full(geometry.grid.shape, hu, np.float32))
    size = geometry.spec.size
    return float(images[0, 0, size // 2, size // 2])


def test_a_fixed_window_maps_the_same_hu_to_the_same_value_in_every_volume() -> None:
    small, large = _ct_like(0, lung_fraction=0.4, bone_hu=400.0), _ct_like(1, lung_fraction=1.0, bone_hu=1200.0)
    fixed = SliceSpec(size=32, fixed_window=(-1000.0, 400.0))
    percentile = SliceSpec(size=32)
    geometries = [slice_volume(v, fixed)[1] for v in (small, large)]
    assert [g.window_values for g in geometries] == [(-1000.0, 400.0)] * 2
    for hu, expected in ((-1000.0, -1.0), (-300.0, 0.0), (100.0, 2 * 1100 / 1400 - 1), (400.0, 1.0),
                         (1000.0, 1.0), (-2000.0, -1.0)):  # outside the window: clipped
        assert [_normalised(g, hu) for g in geometries] == pytest.approx([expected] * 2, abs=1e-6)
    # per-volume percentiles: the two subjects map the same HU differently
    auto = [slice_volume(v, percentile)[1] for v in (small, large)]
    assert auto[0].window_values != auto[1].window_values
    assert abs(_normalised(auto[0], 0.0) - _normalised(auto[1], 0.0)) > 0.05


def test_a_fixed_window_maps_images_back_to_hounsfield_units() -> None:
    volume = _ct_like(2, lung_fraction=0.8, bone_hu=700.0)
    images, geometry = slice_volume(volume, SliceSpec(size=32, fixed_window=(-160.0, 240.0), window_name="soft_tissue"))
    assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0
    inside = geometry.slice_mask()
    back = geometry.to_volume(torch.zeros_like(images))  # model value 0 is the window's centre
    np.testing.assert_allclose(back[inside], 40.0, atol=1e-3)
    assert np.all(back[~inside] == -160.0)  # filled with the window's lower value
    again = geometry.to_volume(geometry.images(np.full(volume.shape, 100.0, np.float32)))
    np.testing.assert_allclose(again[inside], 100.0, atol=1e-3)
    diff = geometry.to_volume(torch.full_like(images, 0.5), kind="difference")
    np.testing.assert_allclose(diff[inside], 100.0, rtol=1e-5)  # half of the 400 HU width / 2


def test_the_foreground_mask_finds_the_body_of_a_ct_volume() -> None:
    from napari_latent.volumes import foreground_mask

    volume = _ct_like(3, lung_fraction=1.0, bone_hu=1000.0)
    i, j, _ = np.meshgrid(*(np.linspace(-1, 1, n) for n in volume.shape), indexing="ij")
    body = (i / 0.8) ** 2 + (j / 0.7) ** 2 < 1.0
    mask = foreground_mask(volume)  # Otsu between air and tissue; the lungs are holes in every axial slice
    assert (mask != body).mean() < 0.002
    assert mask[body & (volume.data < -700)].all()  # the lungs are in, the air (-1000) is out
    images, geometry = slice_volume(volume, SliceSpec(size=32, fixed_window=(-1350.0, 150.0), window_name="lung"))
    r0, r1, c0, c1 = geometry.box
    rows, cols = geometry.plane_shape[1:]
    # the box is the body's (70% and 80% of the in-plane extent) plus the margin, not the whole field of view
    assert (r1 - r0) < rows or (c1 - c0) < cols
    assert len(geometry.indices) == volume.shape[2]  # every axial slice has the body
    # the lungs (-850 HU) are inside the body and kept: mid-grey in the lung window, not air (-1000)
    lung_value = 2 * (-850 + 1350) / 1500 - 1
    assert float((images - lung_value).abs().min()) < 0.05


def test_fixed_window_spec_json_round_trips_and_old_specs_still_load() -> None:
    spec = SliceSpec(plane="coronal", size=64, fixed_window=(-1350, 150), window_name="lung")
    data = json.loads(json.dumps(spec.to_json()))
    assert data["fixed_window"] == [-1350.0, 150.0] and data["window_name"] == "lung"
    assert SliceSpec.from_json(data) == spec
    assert spec.window_text == "lung" and spec.describe_window() == "lung (-1350 to 150)"
    custom = SliceSpec(fixed_window=(-1000.0, 400.0))
    assert "window_name" not in custom.to_json() and SliceSpec.from_json(custom.to_json()) == custom
    assert custom.window_text == "-1000:400"
    old = {"plane": "axial", "size": 64, "window": [0.5, 99.5], "crop": True, "margin": 0.05, "min_foreground": 0.05}
    assert SliceSpec.from_json(old) == SliceSpec()
    assert SliceSpec.from_json(old).fixed_window is None and SliceSpec().window_text == "auto"
    # a percentile spec serialises exactly as before (the subject split hashes this dict)
    assert SliceSpec().to_json() == old


def test_fixed_window_survives_a_saved_checkpoint(tmp_path: Path) -> None:
    from napari_latent.models.base import build_model
    from napari_latent.models.checkpoint import load_model, read_checkpoint, save_checkpoint

    model = build_model("vae", image_size=32, latent_dim=4, base_channels=8, max_channels=16)
    spec = SliceSpec(size=32, fixed_window=(-500.0, 1300.0), window_name="bone")
    path = save_checkpoint(tmp_path / "ct.safetensors", model, spec)
    assert read_checkpoint(path, device="cpu").slice_spec == spec
    loaded = load_model(path, device="cpu")
    assert loaded.slice_spec.fixed_window == (-500.0, 1300.0) and loaded.slice_spec.window_name == "bone"
    # and a checkpoint written before fixed windows existed (no such keys) loads with the percentile default
    path = save_checkpoint(tmp_path / "old.safetensors", model, SliceSpec(size=32))
    assert "fixed_window" not in read_checkpoint(path, device="cpu").header["slice_spec"]
    assert load_model(path, device="cpu").slice_spec == SliceSpec(size=32)


@pytest.mark.parametrize("kwargs, message", [
    ({"fixed_window": (400.0, -1000.0)}, "low < high"),
    ({"fixed_window": (10.0, 10.0)}, "low < high"),
    ({"fixed_window": (float("nan"), 400.0)}, "finite"),
    ({"fixed_window": (-1000.0, float("inf"))}, "finite"),
    ({"fixed_window": (1.0, 2.0, 3.0)}, "two numbers"),
    ({"fixed_window": ("low", "high")}, "two numbers"),
    ({"window_name": "lung"}, "without a fixed_window"),
    ({"fixed_window": (0.0, 80.0), "window_name": " "}, "non-empty"),
])
def test_bad_fixed_windows_are_clear(kwargs: dict, message: str) -> None:
    with pytest.raises(VolumeError, match=message):
        SliceSpec(**kwargs)
