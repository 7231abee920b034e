"""Non-square CT-sized slices at 512 px: a square box, padding recorded in the geometry, an exact way back."""

from __future__ import annotations

import numpy as np
import pytest

from napari_latent.volumes import SliceSpec, Volume, slice_volume


def _ct(spacing: tuple[float, float, float]) -> Volume:
    """512 x 384 x 40 voxels of 'air' (-1000) around an elliptic 'body' with a bright marker."""
    i, j = np.mgrid[0:512, 0:384].astype(np.float32)
    body = ((i - 256) / 200) ** 2 + ((j - 192) / 150) ** 2 <= 1.0
    data = np.full((512, 384, 40), -1000.0, np.float32)
    data[body] = (40.0 + (i[body] % 50))[:, None]  # texture, so that every voxel's value is checked
    data[300:304, 100:104, 10:30] = 900.0  # the marker
    return Volume(data, np.diag([*spacing, 1.0]), name="ct")


def test_the_whole_plane_at_512_is_padded_to_a_square_and_maps_back_exactly() -> None:
    volume = _ct((0.7, 0.7, 3.0))
    spec = SliceSpec(size=512, crop=False, margin=0.0, min_foreground=0.0, fixed_window=(-1000.0, 1000.0))
    images, geometry = slice_volume(volume, spec)
    assert images.shape == (40, 1, 512, 512)
    assert geometry.box_shape == (512, 512)  # the 384-voxel side is padded, not stretched
    r0, r1, c0, c1 = geometry.box
    _, rows, cols = geometry.plane_shape
    assert sorted((rows, cols)) == [384, 512]
    padded = (-r0, r1 - rows) if rows == 384 else (-c0, c1 - cols)
    assert padded == (64, 64)  # centred: 64 voxels of padding on either side
    assert geometry.to_json()["box"] == [r0, r1, c0, c1]  # recorded with the codes
    back = geometry.to_volume(images)
    assert back.shape == volume.shape
    np.testing.assert_allclose(back, volume.data, atol=1e-3)  # no resampling: only float32 rounding of the window
    assert float(images.min()) == -1.0  # the padding is the window's lower value (air)


def test_a_cropped_box_at_512_is_square_in_millimetres_and_keeps_positions() -> None:
    volume = _ct((0.6, 0.9, 3.0))  # anisotropic pixels
    images, geometry = slice_volume(volume, SliceSpec(size=512, fixed_window=(-1000.0, 1000.0)))
    assert images.shape[1:] == (1, 512, 512)
    rows, cols = geometry.box_shape
    spacing = np.linalg.norm(geometry.reorientation.target_affine(volume.affine)[:3, :3], axis=0)[1:]
    assert rows * spacing[0] == pytest.approx(cols * spacing[1], abs=max(spacing))
    back = geometry.to_volume(images, fill=volume)
    assert back.shape == volume.shape
    marker = np.unravel_index(np.argmax(np.where(back[..., 20:21] > 500, back[..., 20:21], -np.inf)),
                              back[..., 20:21].shape)
    assert 299 <= marker[0] <= 304 and 99 <= marker[1] <= 104  # the marker comes back where it was
    inside = geometry.slice_mask()
    error = np.abs(back - volume.data)[inside & (volume.data < 500)]
    assert float(np.median(error)) < 5.0  # resampling error only, in Hounsfield units
