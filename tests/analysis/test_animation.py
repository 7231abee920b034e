"""Animations of traversals: GIF and MP4 frames that show the traversal."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from napari_latent.analysis.animation import (
    mp4_available,
    save_animation,
    traversal_slice_frames,
    write_traversal_animation,
)
from napari_latent.errors import UserInputError
from napari_latent.latent.traversal import Traversal
from napari_latent.volumes.grid import Grid
from napari_latent.volumes.phantoms import PhantomFactors, make_phantom


@pytest.fixture(scope="module")
def traversal() -> Traversal:
    """The anatomy brightening in one region linearly with alpha."""
    anatomy = make_phantom(PhantomFactors(), size=24, seed=1)
    pattern = np.zeros(anatomy.image.shape, np.float32)
    pattern[8:16, 8:16, 8:16] = anatomy.image.max()
    alphas = np.linspace(0.0, 2.0, 5)
    images = anatomy.image[None] + (alphas / 2.0)[:, None, None, None] * pattern[None]
    return Traversal(images.astype(np.float32), alphas, Grid(anatomy.image.shape, anatomy.affine))


def test_frames_follow_the_traversal(traversal: Traversal) -> None:
    frames = traversal_slice_frames(traversal, position=12)
    assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[0] == 5 and frames.shape[-1] == 3
    # The baseline has no overlay (grey: R == G == B inside the image); later frames turn red where it brightens.
    plain = traversal_slice_frames(traversal, position=12, overlay=False).astype(int)
    reddish = frames[..., 0].astype(int) > frames[..., 2].astype(int) + 20
    assert not reddish[0].any() and not (plain[..., 0] > plain[..., 2] + 20).any()  # grey without an overlay
    # The overlay is local (the brightened box) and grows stronger with alpha.
    assert all(0.01 < reddish[i].mean() < 0.3 for i in range(1, 5))
    strength = [np.abs(frames[i].astype(int) - plain[i]).mean() for i in range(5)]
    assert strength[0] == 0.0 and all(np.diff(strength) > 0)


def test_gif_round_trip(traversal: Traversal, tmp_path: Path) -> None:
    path = write_traversal_animation(traversal, tmp_path / "traversal.gif", position=12, fps=4)
    frames = iio.imread(path, index=None)
    assert frames.shape[0] == 5
    expected = traversal_slice_frames(traversal, position=12)
    assert frames.shape[1:3] == expected.shape[1:3]
    # GIF quantises colours to a palette: close, not identical.
    assert np.abs(frames[..., :3].astype(int) - expected.astype(int)).mean() < 6.0


@pytest.mark.skipif(not mp4_available(), reason="imageio-ffmpeg is not installed")
def test_mp4_has_every_frame(traversal: Traversal, tmp_path: Path) -> None:
    frames = traversal_slice_frames(traversal, position=12)
    path = save_animation(frames, tmp_path / "traversal.mp4", fps=5)
    decoded = iio.imread(path, index=None, plugin="FFMPEG")
    assert decoded.shape[0] == 5
    # Padded (never rescaled) to the codec's 16-pixel blocks.
    assert decoded.shape[1] % 16 == 0 and 0 <= decoded.shape[1] - frames.shape[1] < 16
    assert decoded.shape[2] % 16 == 0 and 0 <= decoded.shape[2] - frames.shape[2] < 16
    top_left = decoded[2, : frames.shape[1], : frames.shape[2]].astype(int)
    assert np.abs(top_left - frames[2].astype(int)).mean() < 8.0


def test_bad_requests_are_clear_and_write_nothing(traversal: Traversal, tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=r"\.gif or \.mp4"):
        write_traversal_animation(traversal, tmp_path / "traversal.avi")
    with pytest.raises(UserInputError, match="outside"):
        traversal_slice_frames(traversal, position=500)
    with pytest.raises(UserInputError, match=r"\(F, H, W, 3\)"):
        save_animation(np.zeros((4, 4)), tmp_path / "x.gif")
    assert list(tmp_path.iterdir()) == []
