"""Display orientation: the same anatomy shows the same way whatever the file's array order."""

from __future__ import annotations

import itertools
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_latent.volumes import Grid, Volume, display_geometry, grid_from_display, open_volume
from tests.conftest import reoriented_copy

ORIENTATIONS = [("R", "A", "S"), ("L", "P", "I"), ("A", "S", "L"), ("S", "R", "P"), ("P", "I", "R")]


@pytest.mark.parametrize("codes", ORIENTATIONS)
def test_every_file_orientation_gives_the_same_display(anatomical_path: Path, tmp_path: Path,
                                                       codes: tuple[str, str, str]) -> None:
    reference = open_volume(anatomical_path)
    path = tmp_path / "reoriented.nii"
    nib.save(reoriented_copy(nib.load(anatomical_path), codes), path)
    volume = open_volume(path)
    assert volume.orientation == codes
    ref_geom, geom = display_geometry(reference.grid), display_geometry(volume.grid)
    np.testing.assert_array_equal(geom.to_display(volume.data), ref_geom.to_display(reference.data))
    assert geom.scale == pytest.approx(ref_geom.scale)
    assert geom.translate == pytest.approx(ref_geom.translate)


def test_napari_world_coordinates_are_patient_mm(anatomical_path: Path) -> None:
    volume = open_volume(anatomical_path)
    geometry = display_geometry(volume.grid)
    shown = geometry.to_display(np.arange(volume.data.size).reshape(volume.shape))
    index = np.indices(volume.shape).reshape(3, -1).T
    rng = np.random.default_rng(0)
    for d in rng.integers(0, shown.shape, size=(20, 3)):
        ijk = index[shown[tuple(d)]]
        x, y, z = (volume.affine @ np.r_[ijk, 1])[:3]
        world = np.asarray(geometry.translate) + np.asarray(geometry.scale) * d
        np.testing.assert_allclose(world, [z, -y, -x], atol=1e-6)  # (S, P, L) = DICOM LPS order


def test_display_round_trip_with_leading_axes(anatomical_path: Path) -> None:
    volume = open_volume(anatomical_path)
    geometry = display_geometry(volume.grid)
    stack = np.stack([volume.data, volume.data * 2, -volume.data])
    shown = geometry.to_display(stack)
    assert shown.shape == (3, *geometry.reorientation.target_shape)
    np.testing.assert_array_equal(geometry.from_display(shown), stack)
    assert geometry.layer_kwargs(1)["scale"] == (1.0, *geometry.scale)


def test_oblique_grid_is_shown_on_its_closest_axes_and_keeps_its_affine(example4d_path: Path) -> None:
    volume = open_volume(example4d_path, index=0)
    assert volume.grid.is_oblique
    assert np.degrees(volume.grid.obliquity) == pytest.approx(9.3, abs=0.3)
    geometry = display_geometry(volume.grid)
    np.testing.assert_allclose(geometry.grid.affine, volume.affine)  # the full affine is kept
    assert sorted(geometry.scale) == pytest.approx(sorted(volume.spacing))


def test_plain_display_array_gets_a_consistent_grid() -> None:
    grid = grid_from_display((10, 20, 30), (2.0, 1.0, 0.5), (5.0, -3.0, 7.0))
    assert grid.orientation == ("S", "P", "L")
    geometry = display_geometry(grid)
    assert geometry.reorientation.is_identity
    assert geometry.scale == pytest.approx((2.0, 1.0, 0.5))
    assert geometry.translate == pytest.approx((5.0, -3.0, 7.0))


def test_grid_equality_json_and_fingerprint() -> None:
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    grid = Grid((4, 5, 6), affine)
    assert Grid.from_json(grid.to_json()) == grid
    assert grid.fingerprint == Grid((4, 5, 6), affine + 1e-7).fingerprint
    assert grid != Grid((4, 5, 7), affine)
    assert Volume(np.zeros((4, 5, 6)), affine).grid == grid
    for a, b in itertools.combinations([grid, Grid((4, 5, 6), np.diag([1.0, 1.5, 2.0, 1.0]))], 2):
        assert a != b


def test_source_region_is_the_same_box_for_every_permutation_and_flip() -> None:
    from napari_latent.volumes.orientation import Reorientation

    source = np.random.default_rng(0).random((5, 6, 7))
    for permutation in itertools.permutations(range(3)):
        for flips in itertools.product((1, -1), repeat=3):
            transform = np.array([[permutation[axis], flips[axis]] for axis in range(3)])
            reorientation = Reorientation(source.shape, transform, ("S", "P", "L"))
            target = reorientation.apply(source)
            region = (slice(1, target.shape[0] - 1), slice(0, target.shape[1] - 2), slice(2, target.shape[2]))
            box = reorientation.source_region(region)
            np.testing.assert_array_equal(source[box], reorientation.invert(target[region]))
