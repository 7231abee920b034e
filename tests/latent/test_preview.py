"""The Qt-free slice preview: plane mapping, shift, decode and paste, restoring planes."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_latent.errors import MismatchError, UserInputError
from napari_latent.latent import invert
from napari_latent.latent.directions import Directions
from napari_latent.latent.preview import SlicePreview
from napari_latent.models.base import build_model, model_fingerprint
from napari_latent.volumes import SliceSpec, Volume, display_geometry
from tests.conftest import reoriented_copy

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(plane: str):
    torch.manual_seed(0)
    model = build_model("vae", image_size=32, latent_dim=8, base_channels=8, max_channels=32).eval()
    model.slice_spec = SliceSpec(plane=plane, size=32)  # type: ignore[arg-type]
    model.fingerprint = model_fingerprint(model)
    return model


@pytest.fixture(scope="module", params=[("axial", None), ("coronal", ("P", "L", "I")), ("sagittal", ("I", "R", "A"))],
                ids=["axial", "coronal-PLI", "sagittal-IRA"])
def setup(request, phantom_volume):
    """A model, a volume in some array orientation, its codes and three directions."""
    plane, codes = request.param
    volume = phantom_volume
    if codes is not None:  # the same anatomy stored in another array order
        image = reoriented_copy(nib.Nifti1Image(volume.data, volume.affine), codes)
        volume = Volume(np.asarray(image.dataobj, dtype=np.float32), image.affine, name="phantom")
    model = _model(plane)
    latent = invert(model, volume, method="encoder")
    generator = torch.Generator().manual_seed(1)
    vectors = torch.nn.functional.normalize(torch.randn(3, 8, generator=generator), dim=1)
    directions = Directions(vectors, "z", model.name, model.fingerprint, "test", code_std=[0.5, 2.0, 1.0])
    return model, volume, latent, directions


def _expected(model, codes, volume, code: torch.Tensor, plane: int) -> np.ndarray:
    """The plain way: decode, map the one slice back onto the grid over the source (file order)."""
    with torch.no_grad():
        image = model.decode(code[None], codes.space)
    return codes.geometry.to_volume(image, indices=np.array([plane]), fill=volume)


def _difference(model, codes, code: torch.Tensor, base: torch.Tensor, plane: int) -> np.ndarray:
    with torch.no_grad():
        images = model.decode(torch.stack([code, base]), codes.space)
    return codes.geometry.to_volume(images[:1] - images[1:], indices=np.array([plane]), kind="difference")


def test_plane_mapping_matches_the_reorientation(setup) -> None:
    model, volume, codes, directions = setup
    preview = SlicePreview(model, codes, directions, volume)
    geometry = codes.geometry
    # a ramp of plane indices, mapped back to the source order: each voxel's plane
    planes_of_voxels = geometry.reorientation.invert(
        np.broadcast_to(np.arange(geometry.plane_shape[0])[:, None, None], geometry.plane_shape))
    axis, plane_of = preview.plane_axis()
    assert np.ptp(planes_of_voxels, axis=tuple(a for a in range(3) if a != axis)).max() == 0
    np.testing.assert_array_equal(np.moveaxis(planes_of_voxels, axis, 0)[:, 0, 0], plane_of)
    for index in (0, 7, len(plane_of) - 1):
        position = [5.0, 5.0, 5.0]
        position[axis] = index + 0.2
        assert preview.plane_at(position) == plane_of[index]
    # the display order (napari): the same voxel, the same plane
    display = display_geometry(volume.grid)
    shown = display.to_display(planes_of_voxels)
    d_axis, d_plane_of = preview.plane_axis(display.reorientation)
    np.testing.assert_array_equal(np.moveaxis(shown, d_axis, 0)[:, 0, 0], d_plane_of)
    position = [0.0, 0.0, 0.0]
    position[d_axis] = 9.0
    assert preview.plane_at([1.0, *position], display.reorientation) == d_plane_of[9]  # a leading axis is ignored
    position[d_axis] = 1e6  # clipped to the volume
    assert preview.plane_at(position, display.reorientation) == d_plane_of[-1]


def test_update_pastes_the_shifted_decode_and_its_difference(setup) -> None:
    model, volume, codes, directions = setup
    preview = SlicePreview(model, codes, directions, volume)
    np.testing.assert_array_equal(preview.preview, volume.data)
    np.testing.assert_array_equal(preview.difference, 0.0)
    row = len(codes) // 2
    plane = int(codes.indices[row])
    assert preview.row_of(plane) == row
    # values at 0: the plain reconstruction, no difference anywhere
    changed = preview.update(plane)
    assert preview.plane == plane and len(changed) == 1
    np.testing.assert_allclose(preview.preview, _expected(model, codes, volume, codes.codes[row], plane), atol=2e-5)
    np.testing.assert_array_equal(preview.difference, 0.0)
    # only the returned region differs from the source
    outside = np.ones(volume.grid.shape, dtype=bool)
    outside[changed[0]] = False
    np.testing.assert_array_equal(preview.preview[outside], volume.data[outside])
    assert np.abs(preview.preview[changed[0]] - volume.data[changed[0]]).max() > 1e-3
    # two directions: the code moves by value * code_std * d
    preview.set_values({0: 1.5, 2: -0.5})
    assert preview.values == {0: 1.5, 2: -0.5}
    expected_shift = 1.5 * 0.5 * directions.vectors[0] - 0.5 * 1.0 * directions.vectors[2]
    torch.testing.assert_close(preview.shift(), expected_shift)
    preview.update(plane)
    shifted = codes.codes[row] + expected_shift
    np.testing.assert_allclose(preview.preview, _expected(model, codes, volume, shifted, plane), atol=2e-5)
    difference = _difference(model, codes, shifted, codes.codes[row], plane)
    np.testing.assert_allclose(preview.difference, difference, atol=2e-5)
    assert np.abs(preview.difference).max() > 1e-3
    np.testing.assert_array_equal(preview.difference[outside], 0.0)
    # back to 0: the difference is zero again
    preview.set_values({})
    preview.update(plane)
    np.testing.assert_array_equal(preview.difference, 0.0)


def test_moving_to_another_plane_restores_the_source_exactly(setup) -> None:
    model, volume, codes, directions = setup
    preview = SlicePreview(model, codes, directions, volume)
    preview.set_values({1: 2.0})
    row = len(codes) // 2
    first, second = int(codes.indices[row]), int(codes.indices[row + 1])
    preview.update(first)
    changed = preview.update(second)
    assert len(changed) == 2  # the restored plane, then the new box
    shifted = codes.codes[row + 1] + 2.0 * 2.0 * directions.vectors[1]
    np.testing.assert_allclose(preview.preview, _expected(model, codes, volume, shifted, second), atol=2e-5)
    # the first plane holds the source's voxels again, bit for bit, and no difference
    planes = codes.geometry.reorientation.apply
    np.testing.assert_array_equal(planes(preview.preview)[first], planes(volume.data)[first])
    np.testing.assert_array_equal(planes(preview.difference)[first], 0.0)
    # a plane without a code shows the source only
    missing = sorted(set(range(codes.geometry.plane_shape[0])) - set(codes.indices.tolist()))
    assert missing and preview.row_of(missing[0]) is None
    changed = preview.update(missing[0])
    assert len(changed) == 1
    np.testing.assert_array_equal(preview.preview, volume.data)
    np.testing.assert_array_equal(preview.difference, 0.0)
    preview.update(None)
    assert preview.plane is None


def test_writes_into_given_views_and_checks_its_inputs(setup, phantom_volume) -> None:
    model, volume, codes, directions = setup
    display = display_geometry(volume.grid)
    shown = np.zeros(display.reorientation.target_shape, dtype=np.float32)  # e.g. a napari layer's data
    preview = SlicePreview(model, codes, directions, volume, preview=display.from_display(shown))
    np.testing.assert_array_equal(shown, display.to_display(volume.data))
    plane = int(codes.indices[len(codes) // 2])
    preview.set_values({0: 1.0})
    preview.update(plane)
    np.testing.assert_array_equal(display.from_display(shown), preview.preview)
    assert not np.array_equal(display.from_display(shown), volume.data)
    with pytest.raises(UserInputError, match="out of range"):
        preview.set_values({3: 1.0})
    with pytest.raises(MismatchError, match="not on the codes' grid"):
        SlicePreview(model, codes, directions, volume.data[:-1])
    other = Directions(directions.vectors, "z", model.name, "0" * 16, "test")
    with pytest.raises(MismatchError):
        SlicePreview(model, codes, other, volume)


def test_a_zeroed_difference_is_only_written_where_the_preview_changes(setup) -> None:
    model, volume, codes, directions = setup
    marked = np.full(volume.grid.shape, np.nan, dtype=np.float32)  # NaN: never written
    preview = SlicePreview(model, codes, directions, volume, difference=marked, difference_zeroed=True)
    assert np.isnan(marked).all()  # not filled (a fresh numpy.zeros would cost no memory)
    plane = int(codes.indices[len(codes) // 2])
    preview.set_values({0: 1.0})
    changed = preview.update(plane)
    assert np.isfinite(marked[changed[0]]).all() and np.abs(marked[changed[0]]).max() > 1e-3
    assert np.isnan(marked).sum() == marked.size - marked[changed[0]].size
    # without the flag, a given array is set to zero
    SlicePreview(model, codes, directions, volume, difference=marked)
    np.testing.assert_array_equal(marked, 0.0)
