"""Eigencomponents of a traversal (the MS paper's method), and plain difference maps.

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from .._atomic import write_json_atomic
from ..errors import MismatchError, UserInputError
from ..progress import Operation, ProgressArg, ProgressEvent, StopFlag, run_operation, stop_requested
from ..volumes.grid import Grid
from ..volumes.io import Volume, open_volume, save_volume
from ..volumes.masks import foreground_mask

EIGEN_FORMAT = "napari-latent-eigen"
EIGEN_VERSION = 1

#: Share of an eigenvector's energy along the constant vector above which it counts as constant.
NEAR_CONSTANT = 0.95

#: Default slab size: about this many bytes of float32 values of every alpha per slab.
CHUNK_BYTES = 16 << 20

Center = bool | Literal["baseline"]

#: Which alphas get a difference map: ``"all"``, ``"extreme"`` (the alpha farthest from the
#: baseline), ``"none"``, or indices (ints) and alpha values (floats).
Which = str | int | float | Sequence[int | float] | None


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


# -- the result ---------------------------------------------------------------------------------

@dataclass(eq=False)
class EigenResult:
    """Eigencomponents of a traversal.

    Attributes
    ----------
    alphas : numpy.ndarray
        ``(A,)`` alphas (ascending) in :attr:`units`.
    eigenvalues : numpy.ndarray
        ``(A,)`` every eigenvalue of the A x A covariance, descending.
    explained_variance_ratio : numpy.ndarray
        ``(A,)`` eigenvalues over their sum (negative round-off clipped to 0).
    eigenvectors : numpy.ndarray
        ``(A, K)`` the first K eigenvectors as columns, signs per the module docstring.
    projections : numpy.ndarray
        ``(voxels, K)`` float32: component ``k`` at each voxel of the mask (the rows of
        ``M``, in the mask's C order), i.e. ``M_c @ V``; :attr:`maps` and
        :meth:`component_map` put them on the volume grid.
    mask : numpy.ndarray
        Boolean mask (source grid) of the voxels that formed the rows of ``M``.
    grid : Grid
        The source grid.
    baseline_index : int
        The traversal's baseline frame.
    center : bool or "baseline"
        The centring used (module docstring).
    means : numpy.ndarray
        ``(A,)`` column means of ``M`` over the mask (of ``M - baseline`` for ``"baseline"``).
    n_voxels : int
        Rows of ``M``.
    differences : numpy.ndarray or None
        ``(D, i, j, k)`` difference maps ``image(alpha) - image(baseline)``.
    difference_indices : numpy.ndarray
        ``(D,)`` alpha indices of :attr:`differences`.
    units : str
        Units of the alphas.
    mask_info : dict
        How the mask was chosen.
    source_info : dict
        The traversal's facts (direction, model, source, sidecar path).
    """

    alphas: np.ndarray
    eigenvalues: np.ndarray
    explained_variance_ratio: np.ndarray
    eigenvectors: np.ndarray
    projections: np.ndarray
    mask: np.ndarray
    grid: Grid
    baseline_index: int = 0
    center: Center = True
    means: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n_voxels: int = 0
    differences: np.ndarray | None = None
    difference_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    units: str = "latent"
    mask_info: dict[str, Any] = field(default_factory=dict)
    source_info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_components(self) -> int:
        """K, the number of eigenvectors and maps kept."""
        return int(self.eigenvectors.shape[1])

    def component_map(self, k: int) -> np.ndarray:
        """Component map ``k`` (from 0) on the source grid ``(i, j, k)``, float32, zero outside the mask."""
        if not -self.n_components <= int(k) < self.n_components:
            raise UserInputError(f"component {k} is out of range (0 to {self.n_components - 1})")
        out = np.zeros(self.grid.shape, dtype=np.float32)
        out[self.mask] = self.projections[:, int(k)]
        return out

    @property
    def maps(self) -> np.ndarray:
        """``(K, i, j, k)`` float32 maps on the source grid, made on each access (K volumes).

        To hold one map at a time use :meth:`component_map`; the values inside the mask
        alone are the columns of :attr:`projections`.
        """
        out = np.zeros((self.n_components, *self.grid.shape), dtype=np.float32)
        for k in range(self.n_components):
            out[k][self.mask] = self.projections[:, k]
        return out

    def alpha_correlation(self) -> np.ndarray:
        """``(K,)`` Pearson correlation of each eigenvector with the alphas (nan when constant)."""
        alphas = np.asarray(self.alphas, dtype=np.float64)
        out = []
        for k in range(self.n_components):
            v = self.eigenvectors[:, k]
            if np.std(v) < 1e-12 or np.std(alphas) < 1e-12:
                out.append(float("nan"))
            else:
                out.append(float(np.corrcoef(v, alphas)[0, 1]))
        return np.asarray(out)

    def difference_names(self) -> list[str]:
        """File names of the difference maps (``difference_alpha<value>.nii.gz``)."""
        names = [f"difference_alpha{float(self.alphas[i]):g}.nii.gz" for i in self.difference_indices]
        if len(set(names)) != len(names):
            names = [f"difference_{int(i):02d}.nii.gz" for i in self.difference_indices]
        return names

    def to_json(self) -> dict[str, Any]:
        """The numbers of ``eigen.json``."""
        corr = self.alpha_correlation()
        components = [{"component": k + 1, "file": f"component_{k + 1}.nii.gz",
                       "eigenvalue": float(self.eigenvalues[k]),
                       "explained_variance_ratio": float(self.explained_variance_ratio[k]),
                       "alpha_correlation": None if np.isnan(corr[k]) else float(corr[k]),
                       "constant_fraction": float(np.sum(self.eigenvectors[:, k]) ** 2 / len(self.alphas))}
                      for k in range(self.n_components)]
        differences = [{"index": int(i), "alpha": float(self.alphas[i]), "file": name}
                       for i, name in zip(self.difference_indices, self.difference_names())]
        return {"format": EIGEN_FORMAT, "format_version": EIGEN_VERSION,
                "alphas": [float(a) for a in self.alphas], "units": self.units,
                "baseline_index": int(self.baseline_index),
                "eigenvalues": [float(v) for v in self.eigenvalues],
                "explained_variance_ratio": [float(v) for v in self.explained_variance_ratio],
                "eigenvectors": [[float(v) for v in row] for row in self.eigenvectors],
                "n_components": self.n_components, "center": self.center,
                "column_means": [float(v) for v in self.means], "n_voxels": int(self.n_voxels),
                "components": components, "differences": differences,
                "mask": {**self.mask_info, "voxels": int(self.mask.sum()), "file": "mask.nii.gz"},
                "grid": self.grid.to_json(), "source": self.source_info}

    def save(self, out_dir: str | os.PathLike[str], like: Volume | Grid | None = None) -> Path:
        """Write the maps as NIfTI (source affine) and the numbers as ``eigen.json``, atomically.

        Files: ``component_<k>.nii.gz`` (k from 1), ``difference_alpha<value>.nii.gz``,
        ``mask.nii.gz`` and ``eigen.json`` with ``alphas``, ``eigenvalues``,
        ``explained_variance_ratio``, ``eigenvectors`` (A x K nested list, columns are the
        components), the centring, the mask and the traversal's facts.

        Parameters
        ----------
        out_dir : path-like
            Folder (created when missing).
        like : Volume or Grid, optional
            Reference for the header (default: the result's grid); must be the same grid.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        reference: Volume | Grid = self.grid if like is None else like
        self.grid.check_same(reference.grid if isinstance(reference, Volume) else reference, "the reference")
        for k in range(self.n_components):
            save_volume(self.component_map(k), out / f"component_{k + 1}.nii.gz", like=reference,
                        description=f"napari-latent eigencomponent {k + 1}")
        if self.differences is not None:
            for name, data in zip(self.difference_names(), self.differences):
                save_volume(data, out / name, like=reference, description="napari-latent difference map")
        save_volume(self.mask.astype(np.uint8), out / "mask.nii.gz", like=reference, dtype=np.uint8,
                    description="napari-latent eigen mask")
        write_json_atomic(out / "eigen.json", self.to_json())
        return out

    @classmethod
    def load(cls, out_dir: str | os.PathLike[str]) -> EigenResult:
        """Read a folder written by :meth:`save`."""
        import json

        folder = Path(out_dir)
        path = folder / "eigen.json"
        if not path.is_file():
            raise UserInputError(f"{folder}: no eigen.json (not an eigen analysis folder)")
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserInputError(f"{path}: not valid JSON ({exc})") from exc
        if meta.get("format") != EIGEN_FORMAT:
            raise UserInputError(f"{path}: not an eigen analysis file")
        if int(meta.get("format_version", 0)) > EIGEN_VERSION:
            raise UserInputError(f"{path}: made by a newer napari-latent; please upgrade")
        grid = Grid.from_json(meta["grid"])
        mask = open_volume(folder / "mask.nii.gz").data > 0.5
        projections = np.empty((int(mask.sum()), len(meta["components"])), dtype=np.float32)
        for k, component in enumerate(meta["components"]):  # one map in memory at a time
            projections[:, k] = open_volume(folder / component["file"]).data[mask]
        differences = None
        if meta.get("differences"):
            differences = np.stack([open_volume(folder / d["file"]).data for d in meta["differences"]])
        mask_info = {k: v for k, v in meta.get("mask", {}).items() if k not in ("voxels", "file")}
        return cls(np.asarray(meta["alphas"]), np.asarray(meta["eigenvalues"]),
                   np.asarray(meta["explained_variance_ratio"]),
                   np.asarray(meta["eigenvectors"], dtype=np.float64).reshape(len(meta["alphas"]), -1), projections,
                   mask, grid, int(meta["baseline_index"]), meta.get("center", True),
                   np.asarray(meta.get("column_means", [])), int(meta.get("n_voxels", 0)), differences,
                   np.asarray([d["index"] for d in meta.get("differences", [])], dtype=np.int64),
                   meta.get("units", "latent"), mask_info, meta.get("source") or {})


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


def _source_rank(traversal: TraversalLike, source_mask: np.ndarray, work_mask: np.ndarray) -> np.ndarray | None:
    """Source-order row of each masked voxel, in the working order; None when the orders agree.

    Made before the projections exist, from one int32 volume that is freed at once.
    """
    view = traversal.to_working(source_mask)
    if view.strides == source_mask.strides and view.ctypes.data == source_mask.ctypes.data:
        return None
    order = np.zeros(source_mask.shape, dtype=np.int32)
    order[source_mask] = np.arange(int(work_mask.sum()), dtype=np.int32)
    return traversal.to_working(order)[work_mask]


def orient_signs(vectors: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Apply the sign convention (module docstring) to eigenvector columns; returns a copy."""
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


def iter_eigencomponents(traversal: TraversalLike, mask: np.ndarray | Volume | str | os.PathLike[str] | None = None,
                         n_components: int = 5, center: Center = True, chunk: int | None = None,
                         differences: Which = "extreme",
                         stop: StopFlag | None = None) -> Operation[EigenResult | None]:
    """The eigen analysis as a generator of progress events (see :func:`eigencomponents`).

    Returns None when ``stop`` is requested (there is no meaningful partial result).
    """
    count = len(traversal)
    if count < 2:
        raise UserInputError(f"the eigen analysis needs at least 2 alphas, the traversal has {count}")
    if center not in (True, False, "baseline"):
        raise UserInputError(f"unknown centring {center!r}; use True, False or 'baseline'")
    if int(n_components) < 1:
        raise UserInputError(f"n_components must be at least 1, got {n_components}")
    keep = min(int(n_components), count)
    baseline = int(traversal.baseline_index)
    which = np.zeros(0, dtype=np.int64) if differences is None else select_alphas(traversal, differences)
    source_mask, mask_info = resolve_mask(traversal, mask)
    work_mask = np.ascontiguousarray(traversal.to_working(source_mask))
    work_shape = traversal.working_shape
    if chunk is None:
        plane = int(np.prod(work_shape[1:])) * count * 4
        chunk = max(1, CHUNK_BYTES // max(plane, 1))
    chunk = max(1, int(chunk))
    first, last = _plane_extent(work_mask)
    # Difference maps need every plane; the analysis only the planes of the mask.
    second_first, second_last = (0, work_shape[0]) if len(which) else (first, last)
    blocks = -(-(last - first) // chunk) + -(-(second_last - second_first) // chunk)

    # Pass 1: the A x A sums of products over the masked voxels of each slab, in float64.
    gram = np.zeros((count, count))
    sums = np.zeros(count)
    shift = np.zeros(count)
    voxels = 0
    shifted = False
    done = 0
    for start, stop_, block in traversal.iter_blocks(chunk, first, last):
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
        yield ProgressEvent(done, blocks, "covariance over slabs", {"voxels": float(voxels)}, stage="eigen")
        if stop_requested(stop):
            return None
    if center is True:
        mean_shifted = sums / voxels
        covariance = (gram - voxels * np.outer(mean_shifted, mean_shifted)) / (voxels - 1)
        means = shift + mean_shifted
    else:
        covariance = gram / (voxels - 1)
        means = sums / voxels
    covariance = 0.5 * (covariance + covariance.T)
    values, vectors = np.linalg.eigh(covariance)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    positive = np.clip(values, 0.0, None)
    ratio = positive / positive.sum() if positive.sum() > 0 else np.zeros_like(values)
    vectors = orient_signs(vectors[:, :keep], traversal.alphas)

    # Pass 2: component k = v_k . (x - c) at each masked voxel of a slab, as one float32
    # product of the differences from the baseline frame (small numbers: float32 keeps ~7
    # digits of the change, not of the anatomy):
    # v.(x - c) = sum over a != b of v_a (x_a - x_b) + (sum of v) x_b - v.c, the baseline's row
    # of the gathered values carrying x_b itself. Rows come in the working order of the mask;
    # ``rank`` (only for a reoriented traversal) says where each goes in the source order.
    rank = _source_rank(traversal, source_mask, work_mask)
    projections = np.empty((voxels, keep), dtype=np.float32)
    diffs = np.zeros((len(which), *traversal.grid.shape), dtype=np.float32) if len(which) else None
    diffs_view = None if diffs is None else traversal.to_working(diffs)
    weights = vectors.astype(np.float32)
    weights[baseline] = 0.0 if center == "baseline" else vectors.sum(axis=0)
    offset = (vectors.T @ means if center is True else np.zeros(keep)).astype(np.float32)
    is_baseline = np.asarray(which) == baseline
    row = 0
    for start, stop_, block in traversal.iter_blocks(chunk, second_first, second_last):
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
                projections[rank[row:row + indices.size]] = change.T @ weights - offset
            row += indices.size
        done += 1
        yield ProgressEvent(done, blocks, "component maps", stage="eigen")
        if stop_requested(stop):
            return None
    if diffs is not None and is_baseline.any():
        diffs[is_baseline] = 0.0
    source_info = {k: v for k, v in traversal.to_json().items()
                   if k in ("direction", "model", "model_fingerprint", "space", "source", "units", "alpha_scale",
                            "fill", "info")}
    if isinstance(source_info.get("direction"), dict):
        source_info["direction"] = {k: v for k, v in source_info["direction"].items() if k != "vector"}
    return EigenResult(np.asarray(traversal.alphas, dtype=np.float64), values, ratio, vectors, projections,
                       source_mask,
                       traversal.grid, baseline, center, means, voxels, diffs, np.asarray(which, dtype=np.int64),
                       traversal.units, mask_info, source_info)


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
        from the baseline; ``"all"``, ``"none"``, indices or alpha values).
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
