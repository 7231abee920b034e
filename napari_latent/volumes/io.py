"""Volumes in memory; reading them (any registered format) and writing NIfTI, safely and atomically.

:func:`open_volume` opens a file with the reader the volume reader registry
(:mod:`napari_latent.volumes.readers`) chooses for it (NIfTI built in,
:mod:`napari_latent.volumes.nifti`), then applies the same checks to every format.
:func:`save_volume` always writes NIfTI.

Policy for non-finite voxels: NaN and +/-Inf voxels (common outside the brain mask in
some pipelines' outputs) are replaced by the smallest finite value of the volume, with a
:class:`NonFiniteVoxelsWarning` naming how many were replaced; the count is kept in
``Volume.header["nonfinite_voxels"]``. ``open_volume(..., nonfinite="error")`` rejects such
files instead. A volume with no finite voxel at all is always an error.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import nibabel as nib
import numpy as np

from .._atomic import atomic_path
from ..errors import MismatchError, VolumeError
from . import fast_gzip
from .grid import Grid
from .readers import reader_for, reader_suffixes

#: Largest number of voxels in one 3D volume we agree to load (4 GiB as float32).
MAX_VOXELS = 1024**3

NIFTI_SUFFIXES = (".nii", ".nii.gz")


class NonFiniteVoxelsWarning(UserWarning):
    """Some voxels were NaN or infinite and were replaced."""


@dataclass(eq=False)
class Volume:
    """A 3D image in memory: float32 voxels on a grid, plus where it came from.

    Attributes
    ----------
    data : numpy.ndarray
        Voxel values, float32, in the file's array order (i, j, k).
    affine : numpy.ndarray
        4x4 voxel-to-world (RAS+, mm) matrix.
    path : Path or None
        The file it was read from.
    header : dict
        Facts from the file header: units, form codes, original data type, frame index
        of a 4D file, number of replaced non-finite voxels, description.
    name : str
        A short display name (the file name without extension by default).
    """

    data: np.ndarray
    affine: np.ndarray
    path: Path | None = None
    header: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        data = np.asarray(self.data)
        if data.ndim != 3:
            raise VolumeError(f"a volume is 3D, got an array of shape {data.shape}")
        if data.dtype != np.float32:
            data = data.astype(np.float32)
        self.data = data
        self.affine = np.array(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise VolumeError(f"a volume's affine is 4x4, got shape {self.affine.shape}")
        if not self.name:
            self.name = volume_name(self.path) if self.path is not None else "volume"

    @property
    def grid(self) -> Grid:
        """The voxel grid (shape and affine)."""
        return Grid(self.data.shape, self.affine)  # type: ignore[arg-type]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape."""
        return self.data.shape  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along each array axis."""
        return self.grid.spacing

    @property
    def orientation(self) -> tuple[str, str, str]:
        """Orientation code, e.g. ``('L', 'A', 'S')``."""
        return self.grid.orientation

    def with_data(self, data: np.ndarray, name: str | None = None) -> Volume:
        """A new volume on the same grid holding ``data``."""
        data = np.asarray(data)
        if data.shape != self.shape:
            raise MismatchError(f"data of shape {data.shape} is not on this volume's grid {self.shape}")
        return Volume(data, self.affine.copy(), self.path, dict(self.header), name or self.name)

    def __repr__(self) -> str:
        spacing = ", ".join(f"{s:.3g}" for s in self.spacing)
        return (f"Volume(name={self.name!r}, shape={self.shape}, spacing=({spacing}) mm, "
                f"orientation={''.join(self.orientation)})")


def volume_name(path: str | os.PathLike[str] | None) -> str:
    """The file name without its NIfTI extension (or the longest suffix a volume reader accepts)."""
    if path is None:
        return "volume"
    name = Path(path).name
    for suffix in (*sorted(reader_suffixes(), key=len, reverse=True), ".nii.gz", ".nii", ".gz"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_nifti_path(path: str | os.PathLike[str]) -> bool:
    """True when the file name ends in ``.nii`` or ``.nii.gz`` (outputs; for inputs ask
    :func:`~napari_latent.volumes.readers.readable`)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def open_volume(path: str | os.PathLike[str], index: int | None = None,
                nonfinite: Literal["replace", "error"] = "replace") -> Volume:
    """Read a volume with the registered reader of its format (:mod:`napari_latent.volumes.readers`).

    Parameters
    ----------
    path : path-like
        A file a registered reader accepts, holding a 3D volume or a 4D series: built in,
        ``.nii`` and ``.nii.gz`` (NIfTI); reader plugins add formats.
    index : int, optional
        The frame to read from a 4D series (required when it has more than one frame).
    nonfinite : {"replace", "error"}
        What to do with NaN/Inf voxels: replace them by the smallest finite value with a
        warning (default), or raise :class:`~napari_latent.errors.VolumeError`.

    Returns
    -------
    Volume
        float32 voxels in the file's array order, the affine, and header facts.

    Raises
    ------
    VolumeError
        With a specific message for missing, empty, truncated, unreadable, 2D, 5D+,
        oversized or all-NaN files, a format no reader accepts (the message lists the
        accepted suffixes), a missing or out-of-range frame index, and unsupported data
        types.
    """
    path = Path(path)
    volume = reader_for(path).read(path, index)
    data, facts = volume.data, volume.header
    facts.setdefault("nonfinite_voxels", 0)
    finite = np.isfinite(data)
    if not finite.all():
        bad = int(data.size - np.count_nonzero(finite))
        if bad == data.size:
            raise VolumeError(f"{path}: every voxel is NaN or infinite")
        if nonfinite == "error":
            raise VolumeError(f"{path}: {bad:,} voxels are NaN or infinite")
        fill = float(data[finite].min())
        data[~finite] = fill
        facts["nonfinite_voxels"] = bad
        warnings.warn(f"{path.name}: replaced {bad:,} NaN/Inf voxels by the minimum finite value {fill:g}",
                      NonFiniteVoxelsWarning, stacklevel=2)
    affine = volume.affine
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise VolumeError(f"{path}: the header's affine is degenerate or not finite")
    return volume


def open_series(path: str | os.PathLike[str]) -> tuple[np.ndarray, Volume]:
    """Read every frame of a volume file at once.

    Parameters
    ----------
    path : path-like
        A 3D or 4D file a registered reader accepts (``.nii``/``.nii.gz`` built in).

    Returns
    -------
    frames : numpy.ndarray
        float32 array ``(t, i, j, k)`` (``t`` is 1 for a 3D file).
    first : Volume
        Frame 0 as a :class:`Volume` (grid, header facts; ``header["frames"]`` says ``t``).
    """
    first = open_volume(path, index=0)
    frames = int(first.header.get("frames") or 1)
    if frames == 1:
        return first.data[None], first
    path = Path(path)
    reader = reader_for(path)
    if reader.read_series is not None:
        data = reader.read_series(path)
    else:
        data = np.stack([reader.read(path, frame).data for frame in range(frames)])
    if not np.all(np.isfinite(data)):
        data = np.where(np.isfinite(data), data, np.nanmin(np.where(np.isfinite(data), data, np.nan)))
    return np.ascontiguousarray(data, dtype=np.float32), first


def _reference(like: Volume | Grid | None,
               affine: np.ndarray | None) -> tuple[np.ndarray, dict[str, Any], tuple[int, ...] | None]:
    if like is not None and affine is not None:
        raise ValueError("give either like= or affine=, not both")
    if isinstance(like, Volume):
        return like.affine, like.header, like.shape
    if isinstance(like, Grid):
        return np.asarray(like.affine), {}, like.shape
    if affine is not None:
        return np.asarray(affine, dtype=np.float64), {}, None
    raise ValueError("save_volume needs like= (a Volume or Grid) or affine= for a plain array")


def save_volume(data_or_volume: Volume | np.ndarray, path: str | os.PathLike[str],
                like: Volume | Grid | None = None, affine: np.ndarray | None = None,
                dtype: np.dtype | type | str = np.float32, description: str = "napari-latent") -> Path:
    """Write a volume (or a map on a volume's grid) as NIfTI, atomically.

    Parameters
    ----------
    data_or_volume : Volume or numpy.ndarray
        A :class:`Volume`, or an array of shape ``(i, j, k)`` or ``(i, j, k, t)`` on the
        grid of ``like``.
    path : path-like
        Output file ending in ``.nii`` or ``.nii.gz``. Parent folders are created.
    like : Volume or Grid, optional
        The volume whose affine, form codes and units the output keeps. Required for a
        plain array unless ``affine`` is given.
    affine : numpy.ndarray, optional
        A 4x4 affine for a plain array with no reference volume.
    dtype : numpy dtype
        Data type on disk (float32 by default).
    description : str
        Text for the header's description field.

    Returns
    -------
    Path
        The written file. It overlays the reference volume exactly in any NIfTI viewer.
    """
    if isinstance(data_or_volume, Volume):
        volume = data_or_volume
        if like is None and affine is None:
            like = volume
        data = volume.data
    else:
        data = np.asarray(data_or_volume)
    if data.ndim not in (3, 4):
        raise VolumeError(f"can only write 3D or 4D arrays, got shape {data.shape}")
    flat = data.reshape(*data.shape[:3], -1)
    return _save_slabs(lambda frame, first, last: flat[:, :, first:last, frame], data.shape, path, like,
                             affine, dtype, description)


def _save_slabs(read: Callable[[int, int, int], np.ndarray], shape: tuple[int, ...],
                      path: str | os.PathLike[str], like: Volume | Grid | None = None,
                      affine: np.ndarray | None = None, dtype: np.dtype | type | str = np.float32,
                      description: str = "napari-latent") -> Path:
    """Write a volume given slab by slab as NIfTI, atomically (what :func:`save_volume` does).

    ``read(frame, first, last)`` returns ``data[:, :, first:last, frame]`` (``frame`` 0 for a
    3D ``shape``); slabs of about 16 MB are asked for in file order (NIfTI is Fortran
    order: slabs of the last axes follow each other), so a volume computed or read in
    pieces (an eigen map from its masked values, a frame of a store) is never whole in
    memory, and the file is never a whole byte string before it is compressed.
    Parameters as :func:`save_volume`.
    """
    path = Path(path)
    if not is_nifti_path(path):
        raise VolumeError(f"{path}: output must end in .nii or .nii.gz")
    shape = tuple(int(n) for n in shape)
    if len(shape) not in (3, 4):
        raise VolumeError(f"can only write 3D or 4D arrays, got shape {shape}")
    ref_affine, ref_header, ref_shape = _reference(like, affine)
    if ref_shape is not None and tuple(shape[:3]) != tuple(ref_shape):
        raise MismatchError(f"data of shape {shape} is not on the reference grid {tuple(ref_shape)}")
    out_dtype = np.dtype(dtype)
    header = nifti_header(shape, out_dtype, ref_affine, ref_header, description)
    frames = shape[3] if len(shape) == 4 else 1
    planes = max(1, (16 << 20) // max(1, shape[0] * shape[1] * out_dtype.itemsize))
    with atomic_path(path) as tmp, open(tmp, "wb") as raw:
        stream = fast_gzip.writer(raw) if str(path).lower().endswith(".gz") else raw
        try:
            block = header.binaryblock
            stream.write(block + b"\x00" * (352 - len(block)))
            for frame in range(frames):
                for first in range(0, shape[2], planes):
                    last = min(shape[2], first + planes)
                    slab = np.asarray(read(frame, first, last))
                    if slab.shape != (shape[0], shape[1], last - first):
                        raise MismatchError(f"a slab of shape {slab.shape} where {(shape[0], shape[1], last - first)} "
                                            "was expected")
                    if out_dtype.kind == "f" and not np.all(np.isfinite(slab)):
                        raise VolumeError("refusing to write NaN or infinite voxels")
                    stream.write(np.asfortranarray(slab, dtype=out_dtype.newbyteorder("<")).tobytes(order="F"))
        finally:
            if stream is not raw:
                stream.close()
    return path


def nifti_header(shape: tuple[int, ...], dtype: np.dtype, affine: np.ndarray, reference: dict[str, Any],
                  description: str) -> nib.Nifti1Header:
    """The NIfTI-1 header napari-latent writes: ``shape``, ``dtype``, the affine as sform and qform
    (the reference's codes, else 1), its units (mm and s by default), the description, data at
    byte 352, no scaling."""
    image = nib.Nifti1Image(np.zeros((1, 1, 1), dtype=dtype), affine)
    header = image.header
    header.set_data_dtype(dtype)
    header.set_data_shape(shape)
    header.set_sform(affine, code=int(reference.get("sform_code") or 0) or 1)
    header.set_qform(affine, code=int(reference.get("qform_code") or 0) or 1)
    xyz = reference.get("xyz_units", "mm")
    t = reference.get("t_units", "sec")
    header.set_xyzt_units(xyz if xyz != "unknown" else "mm", t if t != "unknown" else "sec")
    header["descrip"] = description.encode("latin-1", "replace")[:79]
    header.set_data_offset(352)
    header.set_slope_inter(1.0, 0.0)  # what nibabel writes for unscaled data
    return header
