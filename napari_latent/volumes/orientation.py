"""Exact reorientation of voxel arrays (axis permutations and flips, never resampling).

Two canonical orientations matter in napari-latent:

* the *display* orientation for napari, array axes ``(S, P, L)``: axis 0 runs inferior to
  superior (the slider), rows run anterior to posterior (anterior at the top) and columns
  run from the patient's right to left (radiological convention). napari's world
  coordinates are then ``(S, P, L)`` in mm, i.e. DICOM patient (LPS) coordinates.
* the *slicing* orientation per anatomical plane (see :data:`PLANE_CODES`).

Oblique grids are reoriented to their closest axis-aligned orientation; the residual
rotation is not applied to the voxels (no resampling) and the full affine is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
from nibabel import orientations as ornts

from .grid import Grid

#: napari display orientation (array axes 0, 1, 2).
DISPLAY_CODES: tuple[str, str, str] = ("S", "P", "L")

#: Slicing orientation per plane: slice axis first, then image rows (top to bottom) and
#: columns (left to right) as seen on screen.
PLANE_CODES: dict[str, tuple[str, str, str]] = {
    "axial": ("S", "P", "L"),
    "coronal": ("A", "I", "L"),
    "sagittal": ("L", "I", "P"),
}


@dataclass(frozen=True, eq=False)
class Reorientation:
    """A fixed permutation and flip of the last three axes of an array.

    Attributes
    ----------
    source_shape : tuple of int
        Shape of the 3D source grid.
    transform : numpy.ndarray
        nibabel orientation transform (3 x 2): for source axis ``i``, the target axis and
        whether it is flipped (-1).
    target_codes : tuple of str
        Orientation code of the target array.
    """

    source_shape: tuple[int, int, int]
    transform: np.ndarray
    target_codes: tuple[str, str, str]

    @property
    def target_shape(self) -> tuple[int, int, int]:
        """Shape of the reoriented array."""
        shape = [0, 0, 0]
        for axis, (target_axis, _flip) in enumerate(self.transform):
            shape[int(target_axis)] = self.source_shape[axis]
        return tuple(shape)  # type: ignore[return-value]

    @property
    def is_identity(self) -> bool:
        """True when the arrays are already in the target orientation."""
        return bool(np.array_equal(self.transform, [[0, 1], [1, 1], [2, 1]]))

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Reorient the last three axes of ``array`` (a view, no copy)."""
        return _apply(array, self.transform)

    def invert(self, array: np.ndarray) -> np.ndarray:
        """Undo :meth:`apply` on the last three axes of ``array`` (a view, no copy)."""
        return _apply(array, _inverse(self.transform))

    def source_region(self, region: tuple[slice, slice, slice]) -> tuple[slice, slice, slice]:
        """The source-array slices of a box of the reoriented array.

        ``region`` holds three step-1 slices (explicit start and stop) of the target
        array; ``source[result]`` holds the same voxels as ``apply(source)[region]``,
        and ``invert(block)`` of a block shaped like that region lines up with it.
        """
        out = []
        for axis, (target_axis, flip) in enumerate(self.transform):
            part = region[int(target_axis)]
            start, stop = int(part.start), int(part.stop)
            if flip == -1:
                length = self.source_shape[axis]
                start, stop = length - stop, length - start
            out.append(slice(start, stop))
        return tuple(out)  # type: ignore[return-value]

    def target_region(self, region: tuple[slice, slice, slice]) -> tuple[slice, slice, slice]:
        """The reoriented array's slices of a box of the source array (the inverse of :meth:`source_region`).

        ``region`` holds three step-1 slices (explicit start and stop) of the source array;
        ``apply(source)[result]`` holds the same voxels as ``source[region]``.
        """
        out: list[slice] = [slice(0, 0)] * 3
        for axis, (target_axis, flip) in enumerate(self.transform):
            start, stop = int(region[axis].start), int(region[axis].stop)
            if flip == -1:
                length = self.source_shape[axis]
                start, stop = length - stop, length - start
            out[int(target_axis)] = slice(start, stop)
        return tuple(out)  # type: ignore[return-value]

    def target_affine(self, source_affine: np.ndarray) -> np.ndarray:
        """The affine of the reoriented array (same world positions for every voxel)."""
        return np.asarray(source_affine) @ ornts.inv_ornt_aff(self.transform, self.source_shape)


def _inverse(transform: np.ndarray) -> np.ndarray:
    inverse = np.zeros_like(transform)
    for axis, (target_axis, flip) in enumerate(transform):
        inverse[int(target_axis)] = (axis, flip)
    return inverse


def _apply(array: np.ndarray, transform: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    lead = array.ndim - 3
    if lead < 0:
        raise ValueError(f"need an array with at least 3 axes, got shape {array.shape}")
    for axis, flip in enumerate(transform[:, 1]):
        if flip == -1:
            array = np.flip(array, axis=lead + axis)
    order = list(range(array.ndim))
    order[lead:] = [lead + int(i) for i in np.argsort(transform[:, 0])]
    return array.transpose(order)


def reorientation(grid: Grid, codes: tuple[str, str, str]) -> Reorientation:
    """The reorientation taking arrays on ``grid`` to the orientation ``codes``.

    Parameters
    ----------
    grid : Grid
        The source grid.
    codes : tuple of str
        Target orientation, e.g. ``("S", "P", "L")``.
    """
    start = nib.io_orientation(grid.affine)
    target = ornts.axcodes2ornt(codes)
    transform = ornts.ornt_transform(start, target).astype(int)
    return Reorientation(grid.shape, transform, tuple(codes))  # type: ignore[arg-type]


@dataclass(frozen=True, eq=False)
class DisplayGeometry:
    """How a volume's arrays are shown in napari so that every layer overlays the source.

    Attributes
    ----------
    reorientation : Reorientation
        From the file's array order to the display orientation ``(S, P, L)``.
    scale : tuple of float
        napari ``scale`` (mm per voxel along each display axis).
    translate : tuple of float
        napari ``translate``: world ``(S, P, L)`` position in mm of display voxel 0.
    grid : Grid
        The source grid (the full affine, including any oblique rotation).
    """

    reorientation: Reorientation
    scale: tuple[float, float, float]
    translate: tuple[float, float, float]
    grid: Grid

    def to_display(self, array: np.ndarray) -> np.ndarray:
        """File-ordered array (leading axes allowed) to display order (a view)."""
        return self.reorientation.apply(array)

    def from_display(self, array: np.ndarray) -> np.ndarray:
        """Display-ordered array back to the file's array order (a view)."""
        return self.reorientation.invert(array)

    def layer_kwargs(self, leading: int = 0) -> dict[str, tuple[float, ...]]:
        """napari ``scale`` and ``translate`` for data with ``leading`` extra leading axes."""
        return {"scale": (1.0,) * leading + self.scale, "translate": (0.0,) * leading + self.translate}


def display_geometry(grid: Grid) -> DisplayGeometry:
    """Compute the napari display geometry of a grid (see the module docstring)."""
    reo = reorientation(grid, DISPLAY_CODES)
    affine = reo.target_affine(grid.affine)
    scale = tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))
    x0, y0, z0 = affine[:3, 3]
    translate = (float(z0), float(-y0), float(-x0))  # RAS -> (S, P, L)
    return DisplayGeometry(reo, scale, translate, grid)  # type: ignore[arg-type]


def grid_from_display(shape: tuple[int, int, int], scale: tuple[float, ...], translate: tuple[float, ...]) -> Grid:
    """The grid of a plain display-ordered array shown with napari ``scale``/``translate``.

    This is the inverse of :func:`display_geometry` for axis-aligned grids: a layer that
    did not come from a file gets an affine consistent with napari's world coordinates.
    """
    s0, s1, s2 = (float(v) for v in scale[-3:])
    t0, t1, t2 = (float(v) for v in translate[-3:])
    affine = np.array([
        [0.0, 0.0, -s2, -t2],
        [0.0, -s1, 0.0, -t1],
        [s0, 0.0, 0.0, t0],
        [0.0, 0.0, 0.0, 1.0],
    ])
    return Grid(tuple(int(n) for n in shape[-3:]), affine)  # type: ignore[arg-type]
