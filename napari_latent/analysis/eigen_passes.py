"""The two streaming passes of the eigen analysis (:mod:`napari_latent.analysis.eigen`).

Pass 1 (:func:`iter_moments`) walks the slabs of planes that hold mask voxels and
accumulates the A x A sums of products in float64; :func:`decompose` turns them into the
covariance's eigenvalues and K sign-oriented eigenvectors; pass 2 (:func:`iter_projections`)
computes the component values at the mask's voxels, slab by slab, and the difference maps
on the way. Both passes are generators of progress events that return None when a stop is
requested.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..progress import Operation, ProgressEvent, StopFlag, stop_requested
from ..volumes.grid import Grid
from .eigen_result import Center

#: Share of an eigenvector's energy along the constant vector above which it counts as constant.
NEAR_CONSTANT = 0.95

#: Default slab size: about this many bytes of float32 values of every alpha per slab.
CHUNK_BYTES = 16 << 20


class TraversalLike(Protocol):
    """What the analysis needs of a traversal (:class:`Traversal` and :class:`LazyTraversal`)."""

    alphas: np.ndarray
    grid: Grid
    baseline_index: int
    units: str

    def __len__(self) -> int: ...

    @property
    def latent_alphas(self) -> np.ndarray: ...

    @property
    def working_shape(self) -> tuple[int, int, int]: ...

    def frame(self, index: int) -> np.ndarray: ...

    def modelled_mask(self) -> np.ndarray: ...

    def to_working(self, array: np.ndarray) -> np.ndarray: ...

    def from_working(self, array: np.ndarray) -> np.ndarray: ...

    def iter_blocks(self, chunk: int | None = None, start: int = 0,
                    stop: int | None = None) -> Iterable[tuple[int, int, np.ndarray]]: ...

    def to_json(self) -> dict[str, Any]: ...

    # A chunked store (:class:`~napari_latent.latent.traversal.StoredTraversal`) also has
    # ``block_alignment`` (planes per chunk) and ``default_chunk()``: slabs then start on
    # chunk boundaries and hold whole chunks.


@dataclass(frozen=True)
class SlabPlan:
    """Which planes (axis 0 of the working orientation) each pass reads, in slabs of ``chunk``.

    Attributes
    ----------
    chunk : int
        Planes per slab.
    first, last : int
        Planes of pass 1: those holding a mask voxel.
    second_first, second_last : int
        Planes of pass 2: every plane when difference maps are made, else those of pass 1.
    blocks : int
        Slabs of both passes, the progress total.
    """

    chunk: int
    first: int
    last: int
    second_first: int
    second_last: int
    blocks: int


@dataclass
class Moments:
    """What pass 1 accumulates over the masked voxels.

    Attributes
    ----------
    gram : numpy.ndarray
        ``(A, A)`` float64 sums of products of the (shifted) values.
    sums : numpy.ndarray
        ``(A,)`` float64 sums of the (shifted) values.
    shift : numpy.ndarray
        ``(A,)`` the first slab's column means (zero unless ``center is True``).
    voxels : int
        Masked voxels seen.
    done : int
        Slabs read (the progress count pass 2 continues from).
    """

    gram: np.ndarray
    sums: np.ndarray
    shift: np.ndarray
    voxels: int
    done: int


@dataclass
class Decomposition:
    """The covariance's eigendecomposition.

    Attributes
    ----------
    values : numpy.ndarray
        ``(A,)`` every eigenvalue, descending.
    ratio : numpy.ndarray
        ``(A,)`` explained variance ratio (negative round-off clipped to 0).
    vectors : numpy.ndarray
        ``(A, K)`` the first K eigenvectors, signs per :func:`orient_signs`.
    means : numpy.ndarray
        ``(A,)`` column means over the mask.
    """

    values: np.ndarray
    ratio: np.ndarray
    vectors: np.ndarray
    means: np.ndarray


def plan_slabs(traversal: TraversalLike, work_mask: np.ndarray, chunk: int | None, whole_volume: bool) -> SlabPlan:
    """The slabs both passes read.

    Parameters
    ----------
    traversal : TraversalLike
    work_mask : numpy.ndarray
        The mask in the traversal's working orientation.
    chunk : int or None
        Planes per slab; None for about :data:`CHUNK_BYTES` of float32 values of every alpha.
    whole_volume : bool
        Pass 2 reads every plane (difference maps cover the volume).
    """
    count = len(traversal)
    work_shape = traversal.working_shape
    align = int(getattr(traversal, "block_alignment", 1))
    if chunk is None and align > 1:  # a chunked store: whole chunks per slab
        chunk = traversal.default_chunk()  # type: ignore[attr-defined]
    if chunk is None:
        plane = int(np.prod(work_shape[1:])) * count * 4
        chunk = max(1, CHUNK_BYTES // max(plane, 1))
    chunk = max(1, int(chunk))
    first, last = _plane_extent(work_mask)
    first -= first % align  # slabs start on chunk boundaries, so no chunk is read twice
    # Difference maps need every plane; the analysis only the planes of the mask.
    second_first, second_last = (0, work_shape[0]) if whole_volume else (first, last)
    blocks = -(-(last - first) // chunk) + -(-(second_last - second_first) // chunk)
    return SlabPlan(chunk, first, last, second_first, second_last, blocks)


def iter_moments(traversal: TraversalLike, work_mask: np.ndarray, plan: SlabPlan, center: Center,
                 baseline: int, stop: StopFlag | None = None) -> Operation[Moments | None]:
    """Pass 1: the A x A sums of products over the masked voxels of each slab, in float64.

    With ``center is True`` every slab is shifted by the first slab's column means, so that
    the final centring (:func:`decompose`) is numerically exact. Returns None when stopped.
    """
    count = len(traversal)
    gram = np.zeros((count, count))
    sums = np.zeros(count)
    shift = np.zeros(count)
    voxels = 0
    shifted = False
    done = 0
    for start, stop_, block in traversal.iter_blocks(plan.chunk, plan.first, plan.last):
        indices = np.flatnonzero(work_mask[start:stop_])
        if indices.size:
            if center is True and not shifted:  # the first slab's column means
                shift = _gather(block, indices, None, center, baseline)[:count].mean(axis=1)
                shifted = True
            values = _gather(block, indices, shift if center is True else None, center, baseline)
            products = values @ values.T
            gram += products[:count, :count]
            sums += products[:count, count]
            voxels += indices.size
        done += 1
        yield ProgressEvent(done, plan.blocks, "covariance over slabs", {"voxels": float(voxels)}, stage="eigen")
        if stop_requested(stop):
            return None
    return Moments(gram, sums, shift, voxels, done)


def decompose(moments: Moments, center: Center, keep: int, alphas: np.ndarray) -> Decomposition:
    """The covariance of pass 1's sums, its eigenvalues (descending) and first ``keep`` eigenvectors."""
    gram, sums, voxels = moments.gram, moments.sums, moments.voxels
    if center is True:
        mean_shifted = sums / voxels
        covariance = (gram - voxels * np.outer(mean_shifted, mean_shifted)) / (voxels - 1)
        means = moments.shift + mean_shifted
    else:
        covariance = gram / (voxels - 1)
        means = sums / voxels
    covariance = 0.5 * (covariance + covariance.T)
    values, vectors = np.linalg.eigh(covariance)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    positive = np.clip(values, 0.0, None)
    ratio = positive / positive.sum() if positive.sum() > 0 else np.zeros_like(values)
    return Decomposition(values, ratio, orient_signs(vectors[:, :keep], alphas), means)


def iter_projections(traversal: TraversalLike, source_mask: np.ndarray, work_mask: np.ndarray, plan: SlabPlan,
                     which: np.ndarray, center: Center, baseline: int, found: Decomposition, voxels: int,
                     done: int, stop: StopFlag | None = None) -> Operation[tuple[np.ndarray, np.ndarray | None] | None]:
    """Pass 2: the component values at the masked voxels (source order) and the difference maps.

    Component k = v_k . (x - c) at each masked voxel of a slab, as one float32 product of the
    differences from the baseline frame (small numbers: float32 keeps ~7 digits of the
    change, not of the anatomy): v.(x - c) = sum over a != b of v_a (x_a - x_b) + (sum of v)
    x_b - v.c, the baseline's row of the gathered values carrying x_b itself. Rows come in
    the working order of the mask; ``rank`` (only for a reoriented traversal) says where each
    goes in the source order. Progress continues from ``done`` slabs. Returns
    ``(projections, differences)``, or None when stopped.
    """
    vectors, means = found.vectors, found.means
    keep = vectors.shape[1]
    rank = _SourceRanks.of(traversal, source_mask, work_mask)
    projections = np.empty((voxels, keep), dtype=np.float32)
    diffs = np.zeros((len(which), *traversal.grid.shape), dtype=np.float32) if len(which) else None
    diffs_view = None if diffs is None else traversal.to_working(diffs)
    weights = vectors.astype(np.float32)
    weights[baseline] = 0.0 if center == "baseline" else vectors.sum(axis=0)
    offset = (vectors.T @ means if center is True else np.zeros(keep)).astype(np.float32)
    is_baseline = np.asarray(which) == baseline
    row = 0
    for start, stop_, block in traversal.iter_blocks(plan.chunk, plan.second_first, plan.second_last):
        if diffs_view is not None:  # whole planes: the difference maps cover the volume
            diffs_view[:, start:stop_] = block[which] - block[baseline]
        indices = np.flatnonzero(work_mask[start:stop_])
        if indices.size:
            change = _take(block, indices)
            reference = change[baseline].copy()
            change -= reference
            change[baseline] = reference
            if rank is None:
                target = projections[row:row + indices.size]
                np.matmul(change.T, weights, out=target)
                target -= offset
            else:
                projections[rank.of_slab(start, stop_, work_mask, row, indices.size)] = change.T @ weights - offset
            row += indices.size
        done += 1
        yield ProgressEvent(done, plan.blocks, "component maps", stage="eigen")
        if stop_requested(stop):
            return None
    if diffs is not None and is_baseline.any():
        diffs[is_baseline] = 0.0
    return projections, diffs


def orient_signs(vectors: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Apply the sign convention (:mod:`napari_latent.analysis.eigen`) to eigenvector columns; returns a copy."""
    vectors = np.array(vectors, dtype=np.float64)
    count = vectors.shape[0]
    centred_alphas = np.asarray(alphas, dtype=np.float64) - np.mean(alphas)
    for k in range(vectors.shape[1]):
        v = vectors[:, k]
        constant_fraction = float(np.sum(v)) ** 2 / count
        trend = float(v @ centred_alphas)
        tolerance = 1e-8 * float(np.linalg.norm(centred_alphas)) * float(np.linalg.norm(v))
        if constant_fraction > NEAR_CONSTANT or abs(trend) <= tolerance:
            key = float(np.sum(v))
            if abs(key) <= 1e-8 * np.sqrt(count):
                key = float(v[int(np.argmax(np.abs(v)))])
        else:
            key = trend
        if key < 0:
            vectors[:, k] = -v
    return vectors


# -- gathering a slab's masked voxels -------------------------------------------------------------

def _take(block: np.ndarray, flat_indices: np.ndarray) -> np.ndarray:
    """``(A, voxels)`` float32 values of a ``(A, ...)`` block at flat voxel indices.

    One contiguous ``take`` per alpha is several times faster than boolean indexing of the
    4D block.
    """
    flat = block.reshape(block.shape[0], -1)
    out = np.empty((block.shape[0], flat_indices.size), dtype=np.float32)
    for a in range(block.shape[0]):
        np.take(flat[a], flat_indices, out=out[a])
    return out


def _gather(block: np.ndarray, flat_indices: np.ndarray, shift: np.ndarray | None,
            center: Center, baseline: int) -> np.ndarray:
    """``(A + 1, voxels)`` float64: the block's values at flat voxel indices, and a row of ones.

    The values (:func:`_take`) are widened to float64 (and shifted by ``shift``, in float64)
    in one step. The row of ones makes one matrix product give the sums beside
    the sums of products.
    """
    count = block.shape[0]
    buffer = _take(block, flat_indices)
    values = np.empty((count + 1, flat_indices.size))
    if shift is None:
        values[:count] = buffer
    else:
        np.subtract(buffer, shift[:, None], out=values[:count])
    values[count] = 1.0
    if center == "baseline":
        values[:count] -= values[baseline]
    return values


def _plane_extent(mask: np.ndarray) -> tuple[int, int]:
    """First and last-plus-one plane (axis 0) holding a voxel of ``mask``."""
    planes = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    return int(planes[0]), int(planes[-1]) + 1


class _SourceRanks:
    """Where each masked voxel of a slab of the working order goes among the mask's voxels in source order.

    With the traversal's ``working_reorientation`` (stores and lazy traversals have one) it is
    found slab by slab: a slab of the working order is a box of the source, whose masked
    voxels' source-order ranks follow from the number of masked voxels before each source row
    (``(i, j)``, made once) and before the box within each row; the box is then reoriented
    like the slab. Otherwise the ranks come from one int32 volume made before the
    projections exist (the rows in the working order).
    """

    def __init__(self, source_mask: np.ndarray | None, table: np.ndarray | None, reorientation: Any | None) -> None:
        self.mask, self.table, self.reorientation = source_mask, table, reorientation
        self._before: tuple[int, np.ndarray] | None = None  # (k0, masked voxels of each row before k0)

    @classmethod
    def of(cls, traversal: TraversalLike, source_mask: np.ndarray, work_mask: np.ndarray) -> _SourceRanks | None:
        """None when the working order is the source order (no reordering needed)."""
        view = traversal.to_working(source_mask)
        if view.strides == source_mask.strides and view.ctypes.data == source_mask.ctypes.data:
            return None
        reorientation = getattr(traversal, "working_reorientation", None)
        if reorientation is not None:
            counts = source_mask.sum(axis=2, dtype=np.int64)
            row_starts = (np.cumsum(counts.ravel()) - counts.ravel()).reshape(counts.shape)
            return cls(source_mask, row_starts, reorientation)
        order = np.zeros(source_mask.shape, dtype=np.int32)
        order[source_mask] = np.arange(int(work_mask.sum()), dtype=np.int32)
        return cls(None, traversal.to_working(order)[work_mask], None)

    def of_slab(self, start: int, stop: int, work_mask: np.ndarray, row: int, count: int) -> np.ndarray:
        """Source-order ranks of the masked voxels of working planes ``[start, stop)``, in the working order."""
        if self.reorientation is None:
            return self.table[row:row + count]  # type: ignore[index]
        assert self.mask is not None and self.table is not None
        _, rows, cols = work_mask.shape
        box = self.reorientation.source_region((slice(start, stop), slice(0, rows), slice(0, cols)))
        (i0, i1), (j0, j1), (k0, _) = ((b.start, b.stop) for b in box)
        inside = self.mask[box]
        before = self._count_before(k0)[i0:i1, j0:j1, None]
        ranks = self.table[i0:i1, j0:j1, None] + before + np.cumsum(inside, axis=2, dtype=np.int64) - inside
        return self.reorientation.apply(ranks)[work_mask[start:stop]]  # the box in the slab's order

    def _count_before(self, k0: int) -> np.ndarray:
        """Masked voxels of each source row ``(i, j)`` before column ``k0`` (carried forward between slabs)."""
        cached = self._before
        if cached is not None and cached[0] == k0:
            return cached[1]
        if cached is not None and cached[0] < k0:
            counts = cached[1] + self.mask[:, :, cached[0]:k0].sum(axis=2, dtype=np.int64)  # type: ignore[index]
        else:
            counts = self.mask[:, :, :k0].sum(axis=2, dtype=np.int64)  # type: ignore[index]
        self._before = (k0, counts)
        return counts
