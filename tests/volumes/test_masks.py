"""Foreground masks and bounding boxes."""

from __future__ import annotations

import numpy as np
import pytest

from napari_latent.errors import VolumeError
from napari_latent.volumes import Volume, bounding_box, foreground_mask, open_volume
from napari_latent.volumes.phantoms import PhantomFactors, make_phantom


def test_phantom_mask_matches_the_head(phantom_volume: Volume) -> None:
    phantom = make_phantom(PhantomFactors(), size=48, seed=3)
    head = phantom.labels > 0
    mask = foreground_mask(phantom_volume)
    dice = 2 * np.logical_and(mask, head).sum() / (mask.sum() + head.sum())
    assert dice > 0.95
    # holes are filled: the dark skull and the ventricles are inside the mask
    assert mask[phantom.labels == 2].mean() > 0.97
    assert mask[phantom.labels == 6].all()


def test_largest_component_drops_specks(anatomical_path) -> None:
    volume = open_volume(anatomical_path)
    data = volume.data.copy()
    data[0, 0, 0] = data.max()  # an isolated bright voxel in the corner
    mask = foreground_mask(data)
    assert not mask[0, 0, 0]
    assert 0.2 < mask.mean() < 0.9


def test_bounding_box_and_errors() -> None:
    mask = np.zeros((5, 6, 7), bool)
    mask[1:3, 2:5, 4] = True
    assert bounding_box(mask) == ((1, 3), (2, 5), (4, 5))
    assert bounding_box(np.zeros((2, 2, 2), bool)) is None
    with pytest.raises(VolumeError, match="constant"):
        foreground_mask(np.ones((4, 4, 4)))
    with pytest.raises(VolumeError, match="3D"):
        foreground_mask(np.ones((4, 4)))
