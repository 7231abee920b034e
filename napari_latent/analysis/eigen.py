"""Eigencomponents of a traversal (the MS paper's method), and plain difference maps.

The public entry points are here (:func:`eigencomponents`, :func:`iter_eigencomponents`,
:func:`difference_maps`, :func:`select_alphas`, :func:`resolve_mask`); the streaming passes
are in :mod:`napari_latent.analysis.eigen_passes` and the result object with its files in
:mod:`napari_latent.analysis.eigen_result` (their public names are importable from here too).

The method (Güllmar, Hsu, Reichenbach; ``seeds/001``): the foreground voxels of every
alpha image form the columns of ``M`` (voxels x A, columns ordered by alpha); the
covariance of ``M`` (A x A, the columns' covariance as ``numpy.cov(M, rowvar=False)``) is
eigendecomposed; eigenvector ``v_k`` (over alpha) says how component ``k`` evolves with
alpha, and the component map ``M @ v_k`` remapped onto the volume says where. The paper
reports that the eigenvectors look like a polynomial series: the first is nearly constant
(the anatomy, an offset common to all alphas), the second nearly linear in alpha (the
change the direction causes, which shows it better than a plain subtraction from the
baseline).

Computation
-----------
``M`` is never built. Pass 1 walks the slabs of planes that hold mask voxels, gathers each
slab's masked voxels (one ``take`` per alpha) and accumulates the A x A sums of products in
float64, each slab shifted by the first slab's column means so that the final centring is
numerically exact. Pass 2 computes the component values of each slab's masked voxels as
one float32 product of the K eigenvectors with the differences from the baseline frame
(small numbers, so float32 keeps about 7 significant digits of the change, not of the
anatomy) plus exact per-voxel corrections; the difference maps fall out of the same pass.
The result keeps the component values only at the mask's voxels, ``(voxels, K)`` like
``M @ V`` itself, and makes a map on the volume grid when one is asked for
(:meth:`EigenResult.component_map`); on a brain mask that is a third to a quarter of K
whole volumes. Memory stays at O(A^2 + one slab) besides those values (slabs of
about 16 MiB by default); with a :class:`~napari_latent.latent.traversal.LazyTraversal`
the slabs are decoded on demand (once per pass, only the planes the passes need), so A x
the volume is never in memory.

Centring (``center``)
---------------------
``True`` (the paper)
    Column means subtracted, like ``numpy.cov``; map ``k`` = ``(M - mean) @ v_k``.
``False``
    The uncentred second-moment matrix ``M.T @ M / (n - 1)``; map ``k`` = ``M @ v_k``.
``"baseline"`` (cleaner variant)
    Each voxel's baseline value is subtracted first, ``D = M - M[:, baseline]``, without
    column centring: ``D.T @ D / (n - 1)`` is decomposed and map ``k`` = ``D @ v_k``.
    The anatomy cancels exactly, so the dynamic change is component **1** (there is no
    offset component), a map's zero means "unchanged", and nothing of the anatomy leaks
    into it.

The anatomy leak of the paper's variant
---------------------------------------
With ``images = anatomy + alpha * pattern`` the covariance has rank 2 and its eigenvectors
span ``{1, alpha}``; the first is only *nearly* constant, so the second keeps a small
constant part ``(1 . v_2)`` and map 2 = ``pattern_c (alpha_c . v_2) + anatomy_c (1 . v_2)``
(``_c``: centred over the mask): some anatomy leaks into map 2, the more the weaker the
change is relative to the anatomy. Measured on phantoms (size cubed) with the pattern of a
full ventricle enlargement (``PhantomFactors(ventricle_enlargement=1)`` minus the healthy
phantom, up to 0.65-0.82 of the 0..1.07 intensity range), alphas 0..50 in 15 steps, the
change at alpha 50 being the pattern times ``s`` (``tests/analysis/test_eigen.py`` runs the
32-cube cases):

=====  ====  =====================  ==================  =========================
``s``  size  eigenvector 2 vs alpha map 2 vs pattern    anatomy share of map 2
=====  ====  =====================  ==================  =========================
1.0    32    r = 1.0000             r = 0.9935          1.4% of its variance
0.2    32    r = 1.0000             r = 0.9810          3.9% of its variance
1.0    48    r = 1.0000             r = 0.9974          0.53% of its variance
0.2    48    r = 1.0000             r = 0.9882          2.4% of its variance
=====  ====  =====================  ==================  =========================

What is left of map 2 after the pattern is removed is the anatomy (correlation 0.98). The
``center="baseline"`` variant gives map 1 = pattern exactly (r = 1.0000, leak 0) in both
cases.

Sign convention
---------------
Eigenvectors have no intrinsic sign. A (near) constant eigenvector (more than 95% of its
energy along the constant vector ``1/sqrt(A)``; at most one eigenvector can qualify) is
made to sum positive; every other one is made to rise with alpha (positive covariance with
the alphas); when that covariance is zero (an even pattern over symmetric alphas) its sum,
then its largest entry, is made positive. The maps follow their eigenvectors' signs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MismatchError, UserInputError
from ..progress import Operation, ProgressArg, StopFlag, run_operation
from ..volumes.arrays import contiguous
from ..volumes.io import Volume, open_volume
from ..volumes.masks import foreground_mask
from .eigen_passes import (
    CHUNK_BYTES,
    NEAR_CONSTANT,
    TraversalLike,
    decompose,
    iter_moments,
    iter_projections,
    orient_signs,
    plan_slabs,
)
from .eigen_result import EIGEN_FORMAT, EIGEN_VERSION, Center, EigenResult

__all__ = [
    "CHUNK_BYTES",
    "EIGEN_FORMAT",
    "EIGEN_VERSION",
    "NEAR_CONSTANT",
    "Center",
    "EigenResult",
    "TraversalLike",
    "Which",
    "difference_maps",
    "eigencomponents",
    "iter_eigencomponents",
    "orient_signs",
    "resolve_mask",
    "select_alphas",
]

#: Which alphas get a difference map: ``"all"``, ``"extreme"`` (the alpha farthest from the
#: baseline), ``"none"``, or indices (ints) and alpha values (floats).
Which = str | int | float | Sequence[int | float] | None


# -- selection of alphas and difference maps ----------------------------------------------------

def select_alphas(traversal: TraversalLike, which: Which = None) -> np.ndarray:
    """Indices of the alphas named by ``which``.

    Parameters
    ----------
    traversal : Traversal or LazyTraversal
    which : str, int, float, sequence or None
        ``None`` or ``"all"``: every alpha; ``"extreme"``: the alpha farthest from the
        baseline; ``"none"``: no alpha; ints are indices (negative from the end), floats
        are alpha values (in the traversal's units) that must be among its alphas.

    Raises
    ------
    UserInputError
        An index out of range or an alpha value the traversal does not have.
    """
    count = len(traversal)
    if which is None or (isinstance(which, str) and which == "all"):
        return np.arange(count)
    if isinstance(which, str):
        if which == "none":
            return np.zeros(0, dtype=np.int64)
        if which == "extreme":
            latent = np.asarray(traversal.latent_alphas)
            return np.array([int(np.argmax(np.abs(latent - latent[traversal.baseline_index])))])
        raise UserInputError(f"unknown alpha selection {which!r}; use 'all', 'extreme', 'none', indices or alphas")
    items = [which] if isinstance(which, int | float | np.integer | np.floating) else list(which)
    alphas = np.asarray(traversal.alphas, dtype=np.float64)
    out = []
    for item in items:
        if isinstance(item, bool):
            raise UserInputError(f"not an alpha index or value: {item!r}")
        if isinstance(item, int | np.integer):
            if not -count <= int(item) < count:
                raise UserInputError(f"alpha index {item} is out of range (0 to {count - 1})")
            out.append(int(item) % count)
            continue
        value = float(item)
        close = np.flatnonzero(np.isclose(alphas, value, rtol=1e-6, atol=1e-9))
        if close.size == 0:
            listed = ", ".join(f"{a:g}" for a in alphas)
            raise UserInputError(f"alpha {value:g} is not in the traversal (its alphas are {listed})")
        out.append(int(close[0]))
    return np.asarray(out, dtype=np.int64)


def difference_maps(traversal: TraversalLike, alphas_or_indices: Which = None) -> np.ndarray:
    """Plain subtraction from the baseline: ``image(alpha) - image(baseline)`` on the source grid.

    Parameters
    ----------
    traversal : Traversal or LazyTraversal
    alphas_or_indices : see :func:`select_alphas`
        Which alphas (default: every alpha, in order; the baseline's map is zero).

    Returns
    -------
    numpy.ndarray
        ``(D, i, j, k)`` float32 maps, one per selected alpha (a lazy traversal computes
        only the frames it needs).
    """
    indices = select_alphas(traversal, alphas_or_indices)
    baseline = np.asarray(traversal.frame(traversal.baseline_index), dtype=np.float32)
    out = np.empty((len(indices), *traversal.grid.shape), dtype=np.float32)
    for row, index in enumerate(indices):
        out[row] = 0.0 if index == traversal.baseline_index else traversal.frame(int(index)) - baseline
    return out


# -- the analysis -------------------------------------------------------------------------------

def resolve_mask(traversal: TraversalLike,
                 mask: np.ndarray | Volume | str | os.PathLike[str] | None) -> tuple[np.ndarray, dict[str, Any]]:
    """The boolean mask on the traversal's grid, and how it was chosen.

    ``None``: the foreground of the baseline frame (Otsu,
    :func:`~napari_latent.volumes.foreground_mask`) within the voxels the model produced.
    A file or :class:`Volume` must be on the traversal's grid (shape and affine); voxels
    above 0.5 count. A boolean (or numeric, > 0.5) array must have the grid's shape.
    """
    grid = traversal.grid
    if mask is None:
        own = getattr(traversal, "baseline_foreground", None)  # a store computes it in its own order
        if own is not None:
            chosen = own() & traversal.modelled_mask()
        else:
            baseline = np.asarray(traversal.frame(traversal.baseline_index), dtype=np.float32)
            chosen = foreground_mask(Volume(baseline, grid.affine)) & traversal.modelled_mask()
        info: dict[str, Any] = {"kind": "baseline foreground", "note": "Otsu foreground of the baseline frame, "
                                "within the voxels the model produced"}
    elif isinstance(mask, str | os.PathLike):
        volume = open_volume(mask)
        grid.check_same(volume.grid, f"the mask {Path(mask).name}")
        chosen, info = volume.data > 0.5, {"kind": "file", "path": str(mask)}
    elif isinstance(mask, Volume):
        grid.check_same(mask.grid, "the mask")
        chosen, info = mask.data > 0.5, {"kind": "volume", "name": mask.name}
    else:
        array = np.asarray(mask)
        if array.shape != grid.shape:
            raise MismatchError(f"the mask of shape {array.shape} is not on the traversal's grid {grid.shape}")
        chosen = array if array.dtype == bool else array > 0.5
        info = {"kind": "array"}
    chosen = np.ascontiguousarray(chosen, dtype=bool)  # no copy for a contiguous boolean mask
    if int(chosen.sum()) < 2:
        raise UserInputError("the mask selects fewer than 2 voxels; there is nothing to analyse")
    return chosen, info


def iter_eigencomponents(traversal: TraversalLike, mask: np.ndarray | Volume | str | os.PathLike[str] | None = None,
                         n_components: int = 5, center: Center = True, chunk: int | None = None,
                         differences: Which = "extreme",
                         stop: StopFlag | None = None) -> Operation[EigenResult | None]:
    """The eigen analysis as a generator of progress events (see :func:`eigencomponents`).

    Returns None when ``stop`` is requested (there is no meaningful partial result).
    """
    count = len(traversal)
    _check_settings(count, n_components, center)
    keep = min(int(n_components), count)
    baseline = int(traversal.baseline_index)
    which = np.zeros(0, dtype=np.int64) if differences is None else select_alphas(traversal, differences)
    source_mask, mask_info = resolve_mask(traversal, mask)
    work_mask = contiguous(traversal.to_working(source_mask))
    # A store's difference maps stay on disk (a lazy array, computed when saved or shown), and
    # pass 2 then reads only the planes of the mask.
    lazy_differences = getattr(traversal, "lazy_differences", None) if len(which) else None
    computed = np.zeros(0, dtype=np.int64) if lazy_differences is not None else which
    plan = plan_slabs(traversal, work_mask, chunk, whole_volume=bool(len(computed)))
    moments = yield from iter_moments(traversal, work_mask, plan, center, baseline, stop)
    if moments is None:
        return None
    found = decompose(moments, center, keep, traversal.alphas)
    maps = yield from iter_projections(traversal, source_mask, work_mask, plan, computed, center, baseline, found,
                                       moments.voxels, moments.done, stop)
    if maps is None:
        return None
    projections, diffs = maps
    if lazy_differences is not None:
        diffs = lazy_differences(which)
    return EigenResult(np.asarray(traversal.alphas, dtype=np.float64), found.values, found.ratio, found.vectors,
                       projections, source_mask, traversal.grid, baseline, center, found.means, moments.voxels, diffs,
                       np.asarray(which, dtype=np.int64), traversal.units, mask_info, _source_info(traversal))


def _check_settings(count: int, n_components: int, center: Center) -> None:
    """Reject fewer than 2 alphas, an unknown centring and fewer than 1 component."""
    if count < 2:
        raise UserInputError(f"the eigen analysis needs at least 2 alphas, the traversal has {count}")
    if center not in (True, False, "baseline"):
        raise UserInputError(f"unknown centring {center!r}; use True, False or 'baseline'")
    if int(n_components) < 1:
        raise UserInputError(f"n_components must be at least 1, got {n_components}")


def _source_info(traversal: TraversalLike) -> dict[str, Any]:
    """The traversal's facts the result keeps (its direction without the vector)."""
    source_info = {k: v for k, v in traversal.to_json().items()
                   if k in ("direction", "model", "model_fingerprint", "space", "source", "units", "alpha_scale",
                            "fill", "info")}
    if isinstance(source_info.get("direction"), dict):
        source_info["direction"] = {k: v for k, v in source_info["direction"].items() if k != "vector"}
    return source_info


def eigencomponents(traversal: TraversalLike, mask: np.ndarray | Volume | str | os.PathLike[str] | None = None,
                    n_components: int = 5, center: Center = True, chunk: int | None = None,
                    differences: Which = "extreme", progress: ProgressArg = None,
                    stop: StopFlag | None = None) -> EigenResult:
    """Eigencomponents of a traversal, after the MS paper (module docstring).

    Parameters
    ----------
    traversal : Traversal or LazyTraversal
        The frames (a lazy traversal is decoded slab by slab, twice, and never held whole).
    mask : numpy.ndarray, Volume, path or None
        Voxels forming the rows of ``M``. Default: the Otsu foreground of the baseline
        frame within the modelled voxels. A mask on another grid is an error.
    n_components : int
        Eigenvectors and maps to keep (at most A).
    center : True, False or "baseline"
        ``True``: the paper's covariance (column means removed). ``False``: uncentred.
        ``"baseline"``: the cleaner variant, the baseline frame subtracted voxel by voxel
        (no anatomy leak; the change becomes component 1).
    chunk : int, optional
        Planes per slab (of the traversal's block orientation); default about 16 MiB of
        float32 values of every alpha per slab.
    differences : see :func:`select_alphas`
        Difference maps to compute on the way (default ``"extreme"``: the alpha farthest
        from the baseline; ``"all"``, ``"none"``, indices or alpha values). For a traversal
        store they are lazy arrays over the store (computed when saved or shown).
    progress : callable, bool or None
        ``True`` for a terminal progress bar, a callable for every event.
    stop : StopFlag, optional
        Cancels; then :class:`UserInputError` is raised (there is no partial result).

    Returns
    -------
    EigenResult
        Eigenvalues (all, descending), explained variance ratio, K eigenvectors (A x K),
        the K components at the mask's voxels (``projections``; maps on the source grid, zero
        outside the mask, from :meth:`EigenResult.component_map`), difference maps, the mask.
    """
    result = run_operation(iter_eigencomponents(traversal, mask, n_components, center, chunk, differences, stop),
                           progress)
    if result is None:
        raise UserInputError("the eigen analysis was stopped")
    return result
