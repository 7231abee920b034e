"""The built-in NIfTI reader (``.nii``, ``.nii.gz``: NIfTI-1 and NIfTI-2, 3D volumes and 4D series).

It registers itself in the volume reader registry (:mod:`napari_latent.volumes.readers`)
through the ``napari_latent.readers`` entry point ``nifti`` declared in ``setup.cfg``,
exactly as a plugin's reader does. Writing stays in :func:`napari_latent.volumes.save_volume`.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..errors import VolumeError
from .arrays import contiguous
from .io import MAX_VOXELS, NIFTI_SUFFIXES, Volume
from .readers import frame_index, register_reader


def read_nifti(path: Path, index: int | None = None) -> Volume:
    """Read one 3D volume (or one frame of a 4D series) of a NIfTI file, voxels as stored.

    Parameters
    ----------
    path : Path
        A ``.nii`` or ``.nii.gz`` file (:func:`~napari_latent.volumes.readers.reader_for`
        has checked that it exists and is not empty).
    index : int, optional
        The frame of a 4D series (required when it has more than one frame).

    Returns
    -------
    Volume
        float32 voxels in the file's array order (non-finite voxels left as they are), the
        header's affine and facts (format, data type, units, form codes, description,
        ``frame`` and ``frames``).

    Raises
    ------
    VolumeError
        With a specific message for non-NIfTI, truncated, 2D, 5D+ and oversized files, a
        missing or out-of-range frame index and unsupported data types.
    """
    path = Path(path)
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
    data = contiguous(data.reshape(spatial))  # NIfTI is Fortran order: a tiled copy, 3x faster
    facts = _header_facts(image, frame, frames)
    return Volume(data, np.asarray(image.affine, dtype=np.float64), path, facts)


def read_nifti_series(path: Path) -> np.ndarray:
    """Every frame of a 4D NIfTI file at once, ``(t, i, j, k)`` float32 (a view, voxels as stored)."""
    image = nib.load(str(path))
    spatial, _frame, frames = _frame_shape(path, image.shape, 0)
    try:
        data = np.asarray(image.dataobj, dtype=np.float32).reshape((*spatial, frames))
    except (EOFError, OSError, ValueError, zlib_error()) as exc:
        raise VolumeError(f"{path}: the voxel data cannot be read ({_short(exc)})") from exc
    return np.moveaxis(data, -1, 0)


def zlib_error() -> type[BaseException]:
    """The zlib error class (truncated or corrupt gzip streams raise it)."""
    import zlib

    return zlib.error


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
    frame = frame_index(path, frames, index)
    index = frame if len(dims) == 4 else None
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


register_reader("nifti", read_nifti, NIFTI_SUFFIXES, title="NIfTI", read_series=read_nifti_series)
