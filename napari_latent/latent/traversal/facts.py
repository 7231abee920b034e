"""What eager and lazy traversals share, and the 4D NIfTI + JSON sidecar writer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..._atomic import discard, publish, temporary_beside, write_json_atomic
from ...errors import MismatchError, UserInputError, VolumeError
from ...volumes import fast_gzip
from ...volumes.grid import Grid
from ...volumes.io import is_nifti_path, nifti_header
from ...volumes.slicing import SliceGeometry
from .direction import TraversalDirection

TRAVERSAL_FORMAT = "napari-latent-traversal"
TRAVERSAL_VERSION = 1


# -- shared facts -------------------------------------------------------------------------------

class _TraversalFacts:
    """What :class:`Traversal` and :class:`LazyTraversal` share (the eigen analysis uses this)."""

    alphas: np.ndarray
    grid: Grid
    direction: TraversalDirection | None
    units: str
    alpha_scale: float
    baseline_index: int
    model_name: str
    model_fingerprint: str
    space: str
    geometry: SliceGeometry | None
    fill: str
    source: str
    info: dict[str, Any]

    def __len__(self) -> int:
        return len(self.alphas)

    @property
    def latent_alphas(self) -> np.ndarray:
        """Alphas in latent units (``alphas * alpha_scale``)."""
        return np.asarray(self.alphas, dtype=np.float64) * float(self.alpha_scale)

    @property
    def shape(self) -> tuple[int, ...]:
        """``(A, i, j, k)``: alphas, then the source grid's shape."""
        return (len(self), *self.grid.shape)

    def modelled_mask(self) -> np.ndarray:
        """Boolean mask on the source grid of the voxels the model produced (all when unknown).

        Made once per traversal and read-only (the analysis, the report and the layers all ask).
        """
        cached = getattr(self, "_modelled", None)
        if cached is None or cached[0] is not self.geometry:
            mask = np.ones(self.grid.shape, dtype=bool) if self.geometry is None else self.geometry.slice_mask()
            mask.setflags(write=False)
            cached = (self.geometry, mask)
            self._modelled = cached
        return cached[1]

    def frame(self, index: int) -> np.ndarray:  # pragma: no cover - implemented by subclasses
        raise NotImplementedError

    def difference(self, index: int) -> np.ndarray:
        """``frame(index) - frame(baseline)`` on the source grid."""
        return self.frame(index) - self.frame(self.baseline_index)

    def _index(self, index: int) -> int:
        count = len(self)
        if not -count <= int(index) < count:
            raise UserInputError(f"alpha index {index} is out of range; the traversal has {count} alphas "
                                 f"(0 to {count - 1})")
        return int(index) % count

    def to_json(self) -> dict[str, Any]:
        """The sidecar: everything but the voxels, JSON-serialisable."""
        return {"format": TRAVERSAL_FORMAT, "format_version": TRAVERSAL_VERSION,
                "alphas": [float(a) for a in self.alphas], "units": self.units, "alpha_scale": float(self.alpha_scale),
                "latent_alphas": [float(a) for a in self.latent_alphas], "baseline_index": int(self.baseline_index),
                "direction": None if self.direction is None else self.direction.to_json(),
                "model": self.model_name, "model_fingerprint": self.model_fingerprint, "space": self.space,
                "shape": list(self.shape), "grid": self.grid.to_json(),
                "geometry": None if self.geometry is None else self.geometry.to_json(),
                "fill": self.fill, "source": self.source, "info": self.info}


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """``OUT.json`` beside ``OUT.nii.gz`` (or ``OUT.nii``)."""
    path = Path(path)
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    return path.with_name(name + ".json")


class NiftiFramesWriter:
    """Writes a 4D float32 NIfTI ``(i, j, k, count)`` frame by frame, atomically.

    The header is set up like :func:`~napari_latent.volumes.save_volume` with a grid as
    reference (sform and qform code 1, mm and seconds); each frame is streamed to the
    (gzip) file as soon as it is given, so memory holds one frame at a time. The file
    appears at ``path`` on :meth:`commit` (with its JSON sidecar), never before; frames
    must come in order and all ``count`` of them (the header announces the count).

    Parameters
    ----------
    path : path-like
        ``OUT.nii.gz`` or ``OUT.nii``.
    grid : Grid
        The source grid (shape and affine).
    count : int
        Frames to write.
    description : str
        The header's ``descrip`` (79 characters at most are kept).
    """

    def __init__(self, path: str | os.PathLike[str], grid: Grid, count: int, description: str) -> None:
        self.path = Path(path)
        if not is_nifti_path(self.path):
            raise VolumeError(f"{self.path}: a traversal must be saved as .nii.gz or .nii")
        self.grid, self.count, self.written = grid, int(count), 0
        header = nifti_header((*grid.shape, count), np.dtype(np.float32), np.asarray(grid.affine), {}, description)
        self.tmp = temporary_beside(self.path)
        try:
            self.raw: IO[bytes] = open(self.tmp, "wb")  # noqa: SIM115 - closed in commit/abort
            self.stream: IO[bytes] = fast_gzip.writer(self.raw) if str(self.path).lower().endswith(".gz") \
                else self.raw
            self.stream.write(header.binaryblock)
            self.stream.write(b"\x00" * (352 - len(header.binaryblock)))
        except BaseException:
            self.abort()
            raise

    def write(self, index: int, frame: np.ndarray) -> None:
        """Append frame number ``index`` (frames must come in order)."""
        if int(index) != self.written:
            raise MismatchError(f"frame {index} given when frame {self.written} was expected")
        data = np.asarray(frame, dtype=np.float32)
        if data.shape != self.grid.shape:
            raise MismatchError(f"frame of shape {data.shape} is not on the grid {self.grid.shape}")
        if not np.all(np.isfinite(data)):
            raise VolumeError("refusing to write NaN or infinite voxels")
        self.stream.write(np.asfortranarray(data).astype("<f4", copy=False).tobytes(order="F"))
        self.written += 1

    def commit(self, facts: dict[str, Any] | None = None, count: int | None = None) -> Path:
        """Finish the file and rename it into place (with ``facts`` as its JSON sidecar)."""
        if (count is not None and int(count) != self.count) or self.written != self.count:
            self.abort()
            raise UserInputError(f"{self.path}: {self.written} of {self.count} frames were made; a 4D NIfTI needs "
                                 "all of them, nothing was written (a traversal store, .zarr, keeps a partial run)")
        self._close()
        publish(self.tmp, self.path)
        if facts is not None:
            write_json_atomic(sidecar_path(self.path), facts)
        return self.path

    def abort(self) -> None:
        """Remove the temporary file (nothing is left at the target)."""
        self._close()
        discard(self.tmp)

    def _close(self) -> None:
        for stream in (getattr(self, "stream", None), getattr(self, "raw", None)):
            if stream is not None and not stream.closed:
                stream.close()


def _save(facts: _TraversalFacts, path: str | os.PathLike[str]) -> Path:
    """Write any traversal's frames as ``OUT.nii.gz`` (or ``.nii``) plus ``OUT.json``, one frame at a time."""
    path = Path(path)
    if not is_nifti_path(path):
        raise VolumeError(f"{path}: a traversal must be saved as .nii.gz or .nii")
    if len(facts) == 0:
        raise UserInputError("the traversal has no frames to save")
    name = facts.direction.name if facts.direction is not None else "traversal"
    sidecar = facts.to_json()
    writer = NiftiFramesWriter(path, facts.grid, len(facts), f"napari-latent traversal {name}")
    try:
        for index in range(len(facts)):
            writer.write(index, facts.frame(index))
    except BaseException:
        writer.abort()
        raise
    return writer.commit(sidecar)
