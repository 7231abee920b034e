"""Reading and writing NIfTI volumes with their affine, safely and atomically.

Policy for non-finite voxels: NaN and +/-Inf voxels (common outside the brain mask in
some pipelines' outputs) are replaced by the smallest finite value of the volume, with a
:class:`NonFiniteVoxelsWarning` naming how many were replaced; the count is kept in
``Volume.header["nonfinite_voxels"]``. ``open_volume(..., nonfinite="error")`` rejects such
files instead. A volume with no finite voxel at all is always an error.
"""

from __future__ import annotations

import gzip
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import nibabel as nib
import numpy as np

from .._atomic import write_bytes_atomic
from ..errors import MismatchError, VolumeError
from .grid import Grid

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
    """The file name without its NIfTI extension."""
    if path is None:
        return "volume"
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".gz"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_nifti_path(path: str | os.PathLike[str]) -> bool:
    """True when the file name ends in ``.nii`` or ``.nii.gz``."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise VolumeError(f"{path}: no such file")
    if path.is_dir():
        raise VolumeError(f"{path}: is a folder, not a NIfTI file")
    if not is_nifti_path(path):
        raise VolumeError(f"{path}: not a NIfTI file (expected a .nii or .nii.gz name)")
    if path.stat().st_size == 0:
        raise VolumeError(f"{path}: the file is empty")


def _load_header(path: Path) -> nib.Nifti1Image:
    try:
        image = nib.load(str(path))
    except (nib.filebasedimages.ImageFileError, EOFError, OSError, ValueError, gzip.BadGzipFile) as exc:
        raise VolumeError(f"{path}: not a valid NIfTI file ({_short(exc)})") from exc
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        raise VolumeError(f"{path}: not a NIfTI image (nibabel read it as {type(image).__name__})")
    return image


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]


def _frame_shape(path: Path, shape: tuple[int, ...], index: int | None) -> tuple[tuple[int, ...], int | None, int]:
    """Check dimensionality; return the 3D shape, the frame index to read, and the frame count."""
    # Drop trailing singleton dimensions beyond the fourth (5D files with size-1 extras).
    dims = list(shape)
    while len(dims) > 4 and dims[-1] == 1:
        dims.pop()
    if len(dims) < 3:
        raise VolumeError(f"{path}: a {len(dims)}D image of shape {tuple(shape)}; a 3D volume is needed")
    if len(dims) > 4:
        raise VolumeError(f"{path}: a {len(dims)}D image of shape {tuple(shape)}; only 3D volumes "
                          "and 4D series (with an index) are supported")
    frames = dims[3] if len(dims) == 4 else 1
    if len(dims) == 4 and frames > 1:
        if index is None:
            raise VolumeError(f"{path}: a 4D series with {frames} frames; choose one with an index "
                              f"from 0 to {frames - 1}")
        if not -frames <= index < frames:
            raise VolumeError(f"{path}: frame index {index} is out of range; the series has {frames} "
                              f"frames (0 to {frames - 1})")
        index = index % frames
    elif index not in (None, 0, -1):
        raise VolumeError(f"{path}: frame index {index} given, but the file holds a single 3D volume")
    else:
        index = 0 if len(dims) == 4 else None
    spatial = tuple(dims[:3])
    if any(n == 0 for n in spatial) or frames == 0:
        raise VolumeError(f"{path}: the image has no voxels (shape {tuple(shape)})")
    if any(n == 1 for n in spatial):
        raise VolumeError(f"{path}: shape {tuple(shape)} is a single 2D slice; a 3D volume is needed")
    voxels = int(np.prod(spatial, dtype=np.int64))
    if voxels > MAX_VOXELS:
        raise VolumeError(f"{path}: the header claims {voxels:,} voxels per volume (shape {tuple(shape)}), "
                          f"more than the {MAX_VOXELS:,} supported; the header is probably corrupt")
    return spatial, index, frames


def _check_size_on_disk(path: Path, image: nib.Nifti1Image, shape: tuple[int, ...]) -> None:
    """For uncompressed files, compare the data size the header promises with the file."""
    if str(path).lower().endswith(".gz"):
        return
    header = image.header
    itemsize = header.get_data_dtype().itemsize
    needed = int(header.get_data_offset()) + int(np.prod(shape, dtype=np.int64)) * itemsize
    actual = path.stat().st_size
    if actual < needed:
        raise VolumeError(f"{path}: the file is truncated: the header promises {needed:,} bytes, "
                          f"the file has {actual:,}")


def _header_facts(image: nib.Nifti1Image, frame: int | None, frames: int) -> dict[str, Any]:
    header = image.header
    xyz_units, t_units = header.get_xyzt_units()
    _sform, sform_code = image.get_sform(coded=True)
    _qform, qform_code = image.get_qform(coded=True)
    description = header["descrip"].tobytes().split(b"\x00", 1)[0].decode("latin-1", "replace").strip()
    return {
        "format": "nifti2" if isinstance(image, nib.Nifti2Image) else "nifti1",
        "dtype": str(header.get_data_dtype()),
        "xyz_units": xyz_units or "unknown",
        "t_units": t_units or "unknown",
        "sform_code": int(sform_code),
        "qform_code": int(qform_code),
        "affine_source": "sform" if sform_code else ("qform" if qform_code else "fallback"),
        "description": description,
        "frame": frame,
        "frames": frames,
        "nonfinite_voxels": 0,
    }


def open_volume(path: str | os.PathLike[str], index: int | None = None,
                nonfinite: Literal["replace", "error"] = "replace") -> Volume:
    """Read a NIfTI volume.

    Parameters
    ----------
    path : path-like
        A ``.nii`` or ``.nii.gz`` file holding a 3D volume or a 4D series.
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
        With a specific message for missing, empty, truncated, non-NIfTI, 2D, 5D+,
        oversized or all-NaN files, a missing or out-of-range frame index, and
        unsupported data types.
    """
    path = Path(path)
    _check_readable(path)
    image = _load_header(path)
    spatial, frame, frames = _frame_shape(path, image.shape, index)
    dtype = image.header.get_data_dtype()
    if dtype.kind not in "biuf" or dtype.names is not None:
        raise VolumeError(f"{path}: voxel type {dtype} is not supported (real-valued scalar images only)")
    _check_size_on_disk(path, image, image.shape)
    try:
        proxy = image.dataobj
        if len(image.shape) >= 4:
            selector = (slice(None),) * 3 + (frame,) + (0,) * (len(image.shape) - 4)
            data = np.asarray(proxy[selector], dtype=np.float32)
        else:
            data = np.asarray(proxy, dtype=np.float32)
    except (EOFError, OSError, ValueError, zlib_error(), gzip.BadGzipFile) as exc:
        raise VolumeError(f"{path}: the voxel data cannot be read; the file is truncated or corrupt "
                          f"({_short(exc)})") from exc
    data = np.ascontiguousarray(data.reshape(spatial))
    facts = _header_facts(image, frame, frames)
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
    affine = np.asarray(image.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise VolumeError(f"{path}: the header's affine is degenerate or not finite")
    return Volume(data, affine, path, facts)


def open_series(path: str | os.PathLike[str]) -> tuple[np.ndarray, Volume]:
    """Read every frame of a NIfTI file at once.

    Parameters
    ----------
    path : path-like
        A 3D or 4D ``.nii``/``.nii.gz`` file.

    Returns
    -------
    frames : numpy.ndarray
        float32 array ``(t, i, j, k)`` (``t`` is 1 for a 3D file).
    first : Volume
        Frame 0 as a :class:`Volume` (grid, header facts).
    """
    first = open_volume(path, index=0)
    frames = int(first.header.get("frames") or 1)
    if frames == 1:
        return first.data[None], first
    image = nib.load(str(path))
    try:
        data = np.asarray(image.dataobj, dtype=np.float32).reshape((*first.shape, frames))
    except (EOFError, OSError, ValueError, zlib_error()) as exc:
        raise VolumeError(f"{path}: the voxel data cannot be read ({_short(exc)})") from exc
    data = np.moveaxis(data, -1, 0)
    if not np.all(np.isfinite(data)):
        data = np.where(np.isfinite(data), data, np.nanmin(np.where(np.isfinite(data), data, np.nan)))
    return np.ascontiguousarray(data, dtype=np.float32), first


def zlib_error() -> type[BaseException]:
    """The zlib error class (truncated or corrupt gzip streams raise it)."""
    import zlib

    return zlib.error


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
    path = Path(path)
    if not is_nifti_path(path):
        raise VolumeError(f"{path}: output must end in .nii or .nii.gz")
    if isinstance(data_or_volume, Volume):
        volume = data_or_volume
        if like is None and affine is None:
            like = volume
        data = volume.data
    else:
        data = np.asarray(data_or_volume)
    ref_affine, ref_header, ref_shape = _reference(like, affine)
    if data.ndim not in (3, 4):
        raise VolumeError(f"can only write 3D or 4D arrays, got shape {data.shape}")
    if ref_shape is not None and tuple(data.shape[:3]) != tuple(ref_shape):
        raise MismatchError(f"data of shape {data.shape} is not on the reference grid {tuple(ref_shape)}")
    out_dtype = np.dtype(dtype)
    if out_dtype.kind == "f" and not np.all(np.isfinite(data)):
        raise VolumeError("refusing to write NaN or infinite voxels")
    image = nib.Nifti1Image(np.asarray(data, dtype=out_dtype), ref_affine)
    sform_code = int(ref_header.get("sform_code") or 0) or 1
    qform_code = int(ref_header.get("qform_code") or 0) or 1
    image.set_sform(ref_affine, code=sform_code)
    image.set_qform(ref_affine, code=qform_code)
    xyz = ref_header.get("xyz_units", "mm")
    t = ref_header.get("t_units", "sec")
    image.header.set_xyzt_units(xyz if xyz != "unknown" else "mm", t if t != "unknown" else "sec")
    image.header["descrip"] = description.encode("latin-1", "replace")[:79]
    payload = image.to_bytes()
    if str(path).lower().endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=6, mtime=0)  # mtime=0: same data, same bytes
    return write_bytes_atomic(path, payload)
