"""A live preview of latent shifts on one slice of a volume (the Explore widget's core, no Qt).

:class:`SlicePreview` holds a volume's codes and directions. Its values say how far to
shift along each direction, in standard deviations of the codes along it
(:attr:`Directions.code_std`): the code of a slice becomes
``c + sum_k value_k * code_std_k * d_k``. :meth:`SlicePreview.update` decodes that one code
and pastes the image into two arrays on the source grid, in place:

``preview``
    a copy of the source volume in which only the current model slice (its slicing box)
    holds the decoded, shifted code;
``difference``
    ``decode(shifted) - decode(unshifted)`` on that slice, zero elsewhere: the change the
    shift causes, without the reconstruction error.

Moving to another slice restores the previous one (the source's voxels, zero difference).
Decoding one code takes a few milliseconds to tens of milliseconds on the CPU
(``benchmarks/bench_explore.py``): it runs on the calling thread with one intra-op thread
(for one small image as fast, and far faster on a busy CPU), in fp32 (bfloat16 autocast is
slower for single images on the CPU and not pixel-identical), by the channels-last inference
copy of :class:`~napari_latent.latent.traversal.Decoder`. The unshifted decode of each slice
is kept, so a slider change costs one decode.

    preview = SlicePreview(model, codes, directions, volume)
    preview.set_values({0: 2.0})          # 2 standard deviations along direction 0
    changed = preview.update(preview.plane_at((40, 64, 64)))
    preview.preview[changed[-1]]          # the voxels that now show the shifted decode
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ..errors import MismatchError, UserInputError
from ..models.base import GenerativeModel
from ..volumes.io import Volume
from ..volumes.orientation import Reorientation
from ..volumes.slicing import SliceGeometry, paste, resize_images
from .codes import LatentCodes
from .directions import Directions
from .traversal import Decoder

#: A box of the source array: three step-1 slices in the source's array order.
Region = tuple[slice, slice, slice]


class SlicePreview:
    """Shifted decodes of one slice at a time, pasted into arrays on the source grid.

    Parameters
    ----------
    model : GenerativeModel
        The model the codes and directions belong to (copied for decoding, never modified).
    codes : LatentCodes
        The codes of the source volume.
    directions : Directions
        The directions to shift along (indices as in ``directions``).
    source : Volume or numpy.ndarray
        The source volume on the codes' grid, in its array order. Restoring a slice copies
        its voxels back from here, so it must not change while the preview is used.
    preview, difference : numpy.ndarray, optional
        Arrays of the grid's shape to write into (views are written through, e.g. views of
        napari layer data); new float32 arrays by default. ``preview`` is set to the source,
        ``difference`` to 0 (unless ``difference_zeroed``).
    difference_zeroed : bool
        The given ``difference`` is already all zeros (a fresh ``numpy.zeros``, whose memory
        pages the system provides only when they are written): it is not written, so a
        CT-sized difference costs only the planes the preview touches.

    Raises
    ------
    MismatchError
        The codes, directions and model do not belong together, or an array is not on the
        codes' grid.
    """

    def __init__(self, model: GenerativeModel, codes: LatentCodes, directions: Directions,
                 source: Volume | np.ndarray, *, preview: np.ndarray | None = None,
                 difference: np.ndarray | None = None, difference_zeroed: bool = False) -> None:
        codes.check_model(model)
        directions.check_model(model)
        directions.check_codes(codes)
        self.codes = codes
        self.directions = directions
        self.geometry = codes.geometry
        shape = self.geometry.grid.shape
        data = source.data if isinstance(source, Volume) else np.asarray(source)
        self.preview = np.empty(shape, dtype=np.float32) if preview is None else preview
        self.difference = np.zeros(shape, dtype=np.float32) if difference is None else difference
        for name, array in (("source", data), ("preview", self.preview), ("difference", self.difference)):
            if tuple(np.shape(array)) != tuple(shape):
                raise MismatchError(f"the {name} array of shape {np.shape(array)} is not on the codes' grid {shape}")
        self.preview[...] = data
        if difference is not None and not difference_zeroed:
            self.difference[...] = 0.0
        to_planes = self.geometry.reorientation.apply
        self._source_planes = to_planes(data)
        self._preview_planes = to_planes(self.preview)
        self._difference_planes = to_planes(self.difference)
        self.decoder = Decoder(model, codes.space, 1, False, True, codes.codes, streams=False)
        self.plane: int | None = None
        self._values: dict[int, float] = {}
        self._base_images: dict[int, torch.Tensor] = {}

    # -- where ----------------------------------------------------------------------------------
    def plane_axis(self, orientation: Reorientation | None = None) -> tuple[int, np.ndarray]:
        """The array axis of the model's slices and the plane at each index along it (:func:`plane_axis`)."""
        return plane_axis(self.geometry, orientation)

    def plane_at(self, position: Sequence[float] | np.ndarray, orientation: Reorientation | None = None) -> int:
        """The model slice (plane index) at a voxel position (:func:`plane_at`)."""
        return plane_at(self.geometry, position, orientation)

    def row_of(self, plane: int | None) -> int | None:
        """The row of ``plane``'s code in :attr:`codes`, or None when the slice has no code."""
        if plane is None:
            return None
        indices = self.codes.indices
        row = int(np.searchsorted(indices, plane))
        return row if row < len(indices) and indices[row] == plane else None

    # -- how far --------------------------------------------------------------------------------
    @property
    def values(self) -> dict[int, float]:
        """The shift: direction index -> standard deviations (a copy)."""
        return dict(self._values)

    def set_values(self, values: Mapping[int, float]) -> None:
        """Set the shift: ``values[k]`` standard deviations along direction ``k``, every other at 0.

        Takes effect at the next :meth:`update`.

        Raises
        ------
        UserInputError
            An index that is not one of the directions.
        """
        checked = {}
        for k, value in values.items():
            if not 0 <= int(k) < len(self.directions):
                raise UserInputError(f"direction index {k} is out of range; there are {len(self.directions)}")
            checked[int(k)] = float(value)
        self._values = checked

    def shift(self) -> torch.Tensor:
        """The latent shift of the values: ``sum_k value_k * code_std_k * d_k``."""
        directions = self.directions
        shift = torch.zeros(directions.dim)
        for k in sorted(self._values):
            value = self._values[k]
            if value:
                shift += value * float(directions.code_std[k]) * directions.vectors[k]
        return shift

    # -- the preview ----------------------------------------------------------------------------
    def update(self, plane: int | None) -> list[Region]:
        """Show the shifted decode of ``plane`` (None: no plane); restore the previous plane.

        A plane without a code (outside the slices the model covers) shows the source.

        Returns
        -------
        list of tuple of slice
            The regions of :attr:`preview` and :attr:`difference` (source array order) that
            were written: the restored previous plane, then the current plane's box.
        """
        changed: list[Region] = []
        previous = self.plane
        if previous is not None and previous != plane:
            self._preview_planes[previous] = self._source_planes[previous]
            self._difference_planes[previous] = 0.0
            _, rows, cols = self.geometry.plane_shape
            changed.append(self._region(previous, (0, rows, 0, cols)))
        self.plane = plane
        row = self.row_of(plane)
        if row is None:
            return changed
        assert plane is not None
        image, base = self._decode(row)
        geometry = self.geometry
        resized = resize_images(torch.cat([image, base]).float(), geometry.box_shape)[:, 0].numpy()
        lo, hi = geometry.window_values
        position = np.array([plane])
        paste(self._preview_planes, position, (resized[:1] + 1.0) * 0.5 * (hi - lo) + lo, geometry.box)
        paste(self._difference_planes, position, (resized[:1] - resized[1:]) * 0.5 * (hi - lo), geometry.box)
        _, rows, cols = geometry.plane_shape
        r0, r1, c0, c1 = geometry.box
        box = (max(r0, 0), min(r1, rows), max(c0, 0), min(c1, cols))
        if box[1] > box[0] and box[3] > box[2]:
            changed.append(self._region(plane, box))
        return changed

    def _decode(self, row: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The shifted and the unshifted decode of code ``row``, ``(1, 1, S, S)`` each."""
        codes = self.codes.codes[row:row + 1]
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one small image: a single thread is as fast, and far faster on a busy CPU
        try:
            base = self._base_images.get(row)
            if base is None:
                base = self._base_images[row] = self.decoder(codes)
            shift = self.shift()
            image = self.decoder(codes + shift[None]) if bool(shift.any()) else base
        finally:
            torch.set_num_threads(threads)
        return image, base

    def _region(self, plane: int, box: tuple[int, int, int, int]) -> Region:
        r0, r1, c0, c1 = box
        return self.geometry.reorientation.source_region((slice(plane, plane + 1), slice(r0, r1), slice(c0, c1)))


def plane_axis(geometry: SliceGeometry, orientation: Reorientation | None = None) -> tuple[int, np.ndarray]:
    """The array axis along which a slicing geometry's slices run, and the plane at each index along it.

    Parameters
    ----------
    geometry : SliceGeometry
        Where a model's slices lie in a volume (``codes.geometry``).
    orientation : Reorientation, optional
        Answer for arrays in this reorientation's target order (for napari's display order:
        ``display_geometry(grid).reorientation``); the source's array order by default.

    Returns
    -------
    axis : int
        The array axis (0, 1 or 2).
    plane_of : numpy.ndarray
        ``plane_of[i]`` is the plane index (slicing orientation) at index ``i`` along ``axis``.
    """
    transform = geometry.reorientation.transform
    axis = int(np.flatnonzero(transform[:, 0] == 0)[0])  # the source axis that becomes the slice axis
    plane_of = np.arange(geometry.grid.shape[axis], dtype=np.int64)
    if transform[axis, 1] == -1:
        plane_of = plane_of[::-1]
    if orientation is None:
        return axis, plane_of
    target, flip = (int(v) for v in orientation.transform[axis])
    return target, plane_of if flip == 1 else plane_of[::-1]


def plane_at(geometry: SliceGeometry, position: Sequence[float] | np.ndarray,
             orientation: Reorientation | None = None) -> int:
    """The model slice (plane index) at a voxel position.

    Parameters
    ----------
    geometry : SliceGeometry
        Where a model's slices lie in a volume (``codes.geometry``).
    position : sequence of float
        Voxel coordinates; the last three are used (rounded, clipped to the volume).
    orientation : Reorientation, optional
        ``position`` is in this reorientation's target order (see :func:`plane_axis`); the
        source's array order by default.
    """
    axis, plane_of = plane_axis(geometry, orientation)
    coords = np.asarray(position, dtype=np.float64)[-3:]
    index = int(np.clip(np.round(coords[axis]), 0, len(plane_of) - 1))
    return int(plane_of[index])
