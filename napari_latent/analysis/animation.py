"""Animations of a traversal: frames as RGB images, written as GIF or MP4.

:func:`traversal_slice_frames` renders one slice of every alpha of a traversal (grey
anatomy with the diverging difference overlay of :mod:`napari_latent.analysis.plots`, and
the alpha as a caption); :func:`save_animation` writes any ``(F, H, W, 3)`` frames (these,
or napari screenshots of a 3D view) as an animated GIF with imageio (always available:
napari depends on it) or as an MP4 when the ``imageio-ffmpeg`` package is installed.
Writes are atomic.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .._atomic import atomic_path
from ..errors import UserInputError
from .eigen import TraversalLike
from .plots import (
    _alpha_label,
    _foreground,
    _grey_limits,
    _hide_axes,
    _overlay,
    _plane_of,
    _PlaneView,
    _symmetric_limit,
)

FORMATS = (".gif", ".mp4")


def mp4_available() -> bool:
    """True when MP4 can be written (the ``imageio-ffmpeg`` package is installed)."""
    return importlib.util.find_spec("imageio_ffmpeg") is not None


def _figure_rgb(figure: Figure) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def traversal_slice_frames(traversal: TraversalLike, position: int | None = None, plane: str | None = None,
                           overlay: bool = True, opacity: float = 0.85, size_inches: float = 3.2,
                           dpi: int = 100) -> np.ndarray:
    """One slice of every frame of a traversal, rendered as RGB images.

    Parameters
    ----------
    traversal : Traversal or LazyTraversal
        A lazy traversal decodes one frame at a time.
    position : int, optional
        Plane index in ``plane`` orientation (default: the middle of the foreground).
    plane : str, optional
        ``"axial"``, ``"coronal"`` or ``"sagittal"`` (default: the model's plane).
    overlay : bool
        Draw the difference from the baseline in blue (darker) and red (brighter).
    opacity : float
        Largest opacity of the overlay.
    size_inches, dpi : float, int
        Size of each frame.

    Returns
    -------
    numpy.ndarray
        ``(A, H, W, 3)`` uint8 frames in alpha order.
    """
    view = _PlaneView(traversal.grid, plane or _plane_of(traversal))
    baseline = np.asarray(traversal.frame(traversal.baseline_index), dtype=np.float32)
    foreground = _foreground(baseline, traversal)
    if position is None:
        position = view.positions(foreground, 1)[0]
    if not 0 <= int(position) < view.count:
        raise UserInputError(f"slice position {position} is outside 0..{view.count - 1} of the {view.plane} plane")
    base_slice = view.slice(baseline, int(position))
    slices = [base_slice if i == traversal.baseline_index else view.slice(np.asarray(traversal.frame(i)), position)
              for i in range(len(traversal.alphas))]
    differences = [s - base_slice for s in slices]
    limit = _symmetric_limit(np.concatenate([d.ravel() for d in differences]))
    low, high = _grey_limits(baseline, foreground)
    frames = []
    for index, (image, difference) in enumerate(zip(slices, differences)):
        figure = Figure(figsize=(size_inches, size_inches * 1.08), dpi=dpi, layout="constrained")
        ax = figure.add_subplot()
        ax.imshow(image, cmap="gray", vmin=low, vmax=high, aspect=view.aspect, interpolation="nearest")
        if overlay and index != traversal.baseline_index:
            ax.imshow(_overlay(difference, limit, opacity), aspect=view.aspect, interpolation="nearest")
        _hide_axes(ax)
        ax.set_title(_alpha_label(float(traversal.alphas[index]), traversal.units), fontsize=10)
        frames.append(_figure_rgb(figure))
    return np.stack(frames)


def save_animation(frames: np.ndarray, path: str | os.PathLike[str], fps: float = 5.0, loop: bool = True) -> Path:
    """Write RGB frames as an animated GIF or an MP4, atomically.

    Parameters
    ----------
    frames : numpy.ndarray
        ``(F, H, W, 3)`` (or ``(F, H, W, 4)``, alpha dropped) uint8 frames.
    path : path-like
        Ends in ``.gif`` or ``.mp4``.
    fps : float
        Frames per second.
    loop : bool
        GIF only: loop forever (else play once).

    Returns
    -------
    Path
    """
    import imageio.v3 as iio

    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in FORMATS:
        raise UserInputError(f"{target}: an animation is written as .gif or .mp4, not {suffix or 'no suffix'}")
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] not in (3, 4) or len(frames) == 0:
        raise UserInputError(f"animation frames must be (F, H, W, 3), got shape {frames.shape}")
    if not fps > 0:
        raise UserInputError(f"frames per second must be positive, got {fps}")
    frames = np.ascontiguousarray(frames[..., :3]).astype(np.uint8, copy=False)
    if suffix == ".mp4":
        if not mp4_available():
            raise UserInputError("MP4 needs the imageio-ffmpeg package (pip install imageio-ffmpeg); "
                                 "a .gif works without it")
        # H.264 encoders work on 16-pixel macroblocks and would rescale other sizes: pad instead.
        pad_h, pad_w = -frames.shape[1] % 16, -frames.shape[2] % 16
        if pad_h or pad_w:
            frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        with atomic_path(target) as tmp:
            iio.imwrite(tmp, frames, extension=".mp4", plugin="FFMPEG", fps=fps)
        return target
    with atomic_path(target) as tmp:
        iio.imwrite(tmp, frames, extension=".gif", duration=1000.0 / fps, loop=0 if loop else 1)
    return target


def write_traversal_animation(traversal: TraversalLike, path: str | os.PathLike[str], position: int | None = None,
                              plane: str | None = None, fps: float = 5.0, overlay: bool = True) -> Path:
    """Render one slice of a traversal over alpha and write it as GIF or MP4 (see the functions above)."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UserInputError(f"{path}: an animation is written as .gif or .mp4, not {suffix or 'no suffix'}")
    frames = traversal_slice_frames(traversal, position=position, plane=plane, overlay=overlay)
    return save_animation(frames, path, fps=fps)
