"""The eager traversal: every alpha volume in memory; loading saved traversals."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ...errors import MismatchError, UserInputError, VolumeError
from ...volumes.grid import Grid
from ...volumes.io import is_nifti_path, open_series
from ...volumes.slicing import SliceGeometry
from .alphas import baseline_index
from .direction import UNITS, TraversalDirection
from .facts import TRAVERSAL_FORMAT, TRAVERSAL_VERSION, _save, _TraversalFacts, sidecar_path

# -- the eager result ---------------------------------------------------------------------------

@dataclass(eq=False)
class Traversal(_TraversalFacts):
    """A volume traversed along a latent direction: one volume per alpha on the source grid.

    Attributes
    ----------
    images : numpy.ndarray
        ``(A, i, j, k)`` float32, frame ``a`` the volume at ``alphas[a]``, in the source
        volume's array order and intensity units.
    alphas : numpy.ndarray
        ``(A,)`` ascending alphas in :attr:`units`.
    grid : Grid
        The source volume's grid (shape and affine).
    direction : TraversalDirection or None
        Vector, name, index, method and weights of the direction.
    units : {"latent", "std", "direction_std"}
        Units of :attr:`alphas` (see the module docstring).
    alpha_scale : float
        Latent units per alpha unit.
    baseline_index : int
        Frame of alpha 0 (or the nearest); computed when left at -1.
    model_name, model_fingerprint, space : str
        The model and latent space the codes were decoded with.
    geometry : SliceGeometry or None
        The slicing of the source volume (tells modelled voxels from filled ones).
    fill : str
        What the voxels outside the modelled slices hold: ``"source"`` intensities or the
        ``"window"``'s lower value.
    source : str
        The source volume's path or name.
    info : dict
        Other facts (inversion method and error, decoding settings, whether it was stopped).
    """

    images: np.ndarray
    alphas: np.ndarray
    grid: Grid
    direction: TraversalDirection | None = None
    units: str = "latent"
    alpha_scale: float = 1.0
    baseline_index: int = -1
    model_name: str = ""
    model_fingerprint: str = ""
    space: str = ""
    geometry: SliceGeometry | None = None
    fill: str = "window"
    source: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.images = np.asarray(self.images, dtype=np.float32)
        self.alphas = np.asarray(self.alphas, dtype=np.float64).ravel()
        if self.images.ndim != 4:
            raise MismatchError(f"traversal images must be (A, i, j, k), got shape {self.images.shape}")
        if tuple(self.images.shape[1:]) != self.grid.shape:
            raise MismatchError(f"traversal frames of shape {self.images.shape[1:]} are not on the grid "
                                f"{self.grid.shape}")
        if len(self.alphas) != self.images.shape[0]:
            raise MismatchError(f"{len(self.alphas)} alphas for {self.images.shape[0]} frames")
        if self.units not in UNITS:
            raise UserInputError(f"unknown alpha units {self.units!r}; use one of {', '.join(UNITS)}")
        if self.baseline_index < 0:
            self.baseline_index = baseline_index(self.latent_alphas)

    def frame(self, index: int) -> np.ndarray:
        """The volume at alpha number ``index`` (a view)."""
        return self.images[self._index(index)]

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.images)

    @property
    def baseline(self) -> np.ndarray:
        """The baseline frame (alpha 0 or the nearest)."""
        return self.frame(self.baseline_index)

    # -- chunked access (see napari_latent.analysis.eigen) --------------------------------------
    @property
    def working_shape(self) -> tuple[int, int, int]:
        """Shape of the blocks' voxel grid: the source grid itself."""
        return self.grid.shape

    def to_working(self, array: np.ndarray) -> np.ndarray:
        """Source-ordered array to the order of :meth:`iter_blocks` (identity here)."""
        return array

    def from_working(self, array: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_working`."""
        return array

    def iter_blocks(self, chunk: int | None = None, start: int = 0,
                    stop: int | None = None) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield ``(first, last, block)``: every alpha of source planes ``[first, last)`` (views).

        Parameters
        ----------
        chunk : int, optional
            Planes (along the first array axis) per block; all at once when omitted.
        start, stop : int, optional
            Only the planes ``[start, stop)`` (all by default).
        """
        size = self.grid.shape[0]
        stop = size if stop is None else min(int(stop), size)
        step = size if chunk is None else max(1, int(chunk))
        for first in range(max(0, int(start)), stop, step):
            last = min(stop, first + step)
            yield first, last, self.images[:, first:last]

    # -- files ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``OUT.nii.gz`` (4D, ``(i, j, k, A)``, source affine) and ``OUT.json``, atomically.

        The sidecar holds the alphas, units, direction (vector, name, index, method,
        weights), model name and fingerprint, baseline index, grid, slicing geometry and a
        format version. Returns the NIfTI path. A path ending in ``.zarr`` writes a
        traversal store instead (:mod:`napari_latent.latent.traversal.store`).
        """
        from .store import is_store_path, write_store

        if is_store_path(path):
            return write_store(self, path)
        return _save(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Traversal:
        """Read a traversal written by :meth:`save` (or :meth:`LazyTraversal.save`).

        Raises
        ------
        UserInputError
            When the file is missing, not NIfTI, a 3D volume, has no sidecar, the sidecar is
            not a traversal's, or the frames or grid do not match the sidecar.
        """
        path = Path(path)
        if not path.is_file():
            raise VolumeError(f"{path}: no such file")
        if not is_nifti_path(path):
            raise VolumeError(f"{path}: not a traversal (expected a .nii.gz or .nii file with a .json sidecar)")
        try:
            shape = tuple(nib.load(str(path)).shape)
        except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError) as exc:
            raise VolumeError(f"{path}: not a valid NIfTI file ({exc})") from exc
        if len(shape) < 4:
            raise UserInputError(f"{path}: not a traversal: a {len(shape)}D volume of shape {shape} (a traversal "
                                 "is a 4D NIfTI file with one frame per alpha, plus a .json sidecar)")
        sidecar = sidecar_path(path)
        if not sidecar.is_file():
            raise UserInputError(f"{path}: not a traversal: its sidecar {sidecar.name} is missing (a traversal is "
                                 "saved as OUT.nii.gz plus OUT.json)")
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserInputError(f"{sidecar}: the traversal sidecar is not valid JSON ({exc})") from exc
        if not isinstance(meta, dict) or meta.get("format") != TRAVERSAL_FORMAT:
            raise UserInputError(f"{sidecar}: not a traversal sidecar (format "
                                 f"{meta.get('format') if isinstance(meta, dict) else None!r})")
        if int(meta.get("format_version", 0)) > TRAVERSAL_VERSION:
            raise UserInputError(f"{sidecar}: made by a newer napari-latent; please upgrade")
        frames, first = open_series(path)
        alphas = np.asarray(meta["alphas"], dtype=np.float64)
        if len(alphas) != frames.shape[0]:
            raise MismatchError(f"{path}: {frames.shape[0]} frames but the sidecar lists {len(alphas)} alphas")
        grid = Grid.from_json(meta["grid"]) if meta.get("grid") else first.grid
        grid.check_same(first.grid, f"{path.name}")
        geometry = SliceGeometry.from_json(meta["geometry"]) if meta.get("geometry") else None
        direction = TraversalDirection.from_json(meta["direction"]) if meta.get("direction") else None
        info = dict(meta.get("info") or {})
        info["path"] = str(path)
        return cls(frames, alphas, first.grid, direction, meta.get("units", "latent"),
                   float(meta.get("alpha_scale", 1.0)), int(meta.get("baseline_index", -1)), meta.get("model", ""),
                   meta.get("model_fingerprint", ""), meta.get("space", ""), geometry, meta.get("fill", "window"),
                   meta.get("source", ""), info)


