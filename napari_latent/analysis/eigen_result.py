"""The result of an eigen analysis (:mod:`napari_latent.analysis.eigen`) and its files.

:class:`EigenResult` holds the numbers (eigenvalues, eigenvectors, the component values at
the mask's voxels, difference maps) and makes the maps on the volume grid;
:meth:`EigenResult.save` writes them as NIfTI beside ``eigen.json`` and
:meth:`EigenResult.load` reads such a folder back.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._atomic import write_json_atomic
from ..errors import UserInputError
from ..volumes.grid import Grid
from ..volumes.io import Volume, open_volume, save_volume

EIGEN_FORMAT = "napari-latent-eigen"
EIGEN_VERSION = 1

#: The centring of the analysis (:mod:`napari_latent.analysis.eigen`): ``True``, ``False`` or ``"baseline"``.
Center = bool | Literal["baseline"]


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
        ``(A, K)`` the first K eigenvectors as columns, signs per :mod:`napari_latent.analysis.eigen`.
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
        The centring used (:mod:`napari_latent.analysis.eigen`).
    means : numpy.ndarray
        ``(A,)`` column means of ``M`` over the mask (of ``M - baseline`` for ``"baseline"``).
    n_voxels : int
        Rows of ``M``.
    differences : numpy.ndarray, sequence of array-likes, or None
        ``(D, i, j, k)`` difference maps ``image(alpha) - image(baseline)``; for a traversal
        store, :class:`~napari_latent.latent.traversal.store.LazyDifference` maps, computed
        from the store by ``numpy.asarray``.
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

    def component_region(self, k: int, region: tuple[slice, slice, slice]) -> np.ndarray:
        """Component map ``k`` in a box of the source grid (three step-1 slices), without the whole map.

        The same values as ``component_map(k)[region]``: the box's masked voxels are found in
        :attr:`projections` (the mask's voxels in C order) from per-row counts of the mask, so
        only the box and two small per-row tables are made (a figure of a few planes of a
        CT-sized map needs megabytes, not a volume).
        """
        if not -self.n_components <= int(k) < self.n_components:
            raise UserInputError(f"component {k} is out of range (0 to {self.n_components - 1})")
        (i0, i1), (j0, j1), (k0, k1) = ((int(r.start), int(r.stop)) for r in region)
        mask = self.mask
        row_start = self._row_starts()[i0:i1, j0:j1, None]
        before = mask[i0:i1, j0:j1, :k0].sum(axis=2, dtype=np.int64)[..., None]
        inside = mask[i0:i1, j0:j1, k0:k1]
        ranks = row_start + before + np.cumsum(inside, axis=2, dtype=np.int64) - inside
        out = np.zeros(inside.shape, dtype=np.float32)
        out[inside] = self.projections[ranks[inside], int(k)]
        return out

    def _row_starts(self) -> np.ndarray:
        """``(i, j)``: the index in :attr:`projections` of the first masked voxel of each row (made once)."""
        cached = getattr(self, "_row_start_table", None)
        if cached is None or cached[0] is not self.mask:
            counts = self.mask.sum(axis=2, dtype=np.int64)
            flat = counts.ravel()
            cached = (self.mask, (np.cumsum(flat) - flat).reshape(counts.shape))
            self._row_start_table = cached
        return cached[1]

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
        def maps() -> None:  # one map in memory at a time
            for k in range(self.n_components):
                save_volume(self.component_map(k), out / f"component_{k + 1}.nii.gz", like=reference,
                            description=f"napari-latent eigencomponent {k + 1}")

        def others() -> None:
            if self.differences is not None:
                for name, data in zip(self.difference_names(), self.differences):
                    save_volume(data, out / name, like=reference, description="napari-latent difference map")
            save_volume(self.mask.astype(np.uint8), out / "mask.nii.gz", like=reference, dtype=np.uint8,
                        description="napari-latent eigen mask")

        # The maps on one thread, the rest on another: compressing a CT-sized volume takes
        # about a second of one core (the compressor releases the GIL), and only one map is
        # made at a time.
        with ThreadPoolExecutor(2, thread_name_prefix="napari-latent-save") as pool:
            for future in [pool.submit(maps), pool.submit(others)]:
                future.result()
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

