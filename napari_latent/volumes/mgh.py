"""The built-in FreeSurfer MGH/MGZ reader (``.mgh``, ``.mgz``), through nibabel.

MGZ is FreeSurfer's gzipped MGH. The affine is the header's vox2ras (RAS+, the same
convention as NIfTI). 4D files (several frames) open one frame at a time. It registers
itself through the ``napari_latent.readers`` entry point ``mgh`` declared in ``setup.cfg``.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import VolumeError
from .arrays import contiguous
from .io import MAX_VOXELS, Volume
from .readers import frame_index, register_reader

MGH_SUFFIXES = (".mgh", ".mgz")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]


def read_mgh(path: Path, index: int | None = None) -> Volume:
    """Read one 3D volume (or one frame) of an MGH/MGZ file.

    Parameters
    ----------
    path : Path
        A ``.mgh`` or ``.mgz`` file.
    index : int, optional
        The frame of a 4D file (required when it has more than one frame).

    Returns
    -------
    Volume
        float32 voxels in the file's array order and the vox2ras affine.

    Raises
    ------
    VolumeError
        For a non-MGH, truncated, 2D, oversized or 5D+ file and a bad frame index.
    """
    path = Path(path)
    try:
        image = nib.load(str(path))
    except (nib.filebasedimages.ImageFileError, EOFError, OSError, ValueError, zlib.error) as exc:
        raise VolumeError(f"{path}: not a valid MGH/MGZ file ({_short(exc)})") from exc
    if not isinstance(image, nib.MGHImage):
        raise VolumeError(f"{path}: not an MGH image (nibabel read it as {type(image).__name__})")
    shape = tuple(int(n) for n in image.shape)
    dims = list(shape)
    while len(dims) > 3 and dims[-1] == 1:
        dims.pop()
    if len(dims) < 3 or 1 in dims[:3]:
        raise VolumeError(f"{path}: an image of shape {shape} is a 2D slice; a 3D volume is needed")
    if len(dims) > 4:
        raise VolumeError(f"{path}: a {len(dims)}D image; only 3D volumes and 4D series are supported")
    if int(np.prod(dims[:3], dtype=np.int64)) > MAX_VOXELS:
        raise VolumeError(f"{path}: the header claims more than {MAX_VOXELS:,} voxels per volume")
    frames = dims[3] if len(dims) == 4 else 1
    frame = frame_index(path, frames, index)
    try:
        proxy = image.dataobj
        if len(shape) > 3:
            selector = (slice(None),) * 3 + (frame,) + (0,) * (len(shape) - 4)
            data = np.asarray(proxy[selector], dtype=np.float32)
        else:
            data = np.asarray(proxy, dtype=np.float32)
    except (EOFError, OSError, ValueError, zlib.error, gzip.BadGzipFile) as exc:
        raise VolumeError(f"{path}: the voxel data cannot be read; the file is truncated or corrupt "
                          f"({_short(exc)})") from exc
    data = contiguous(data.reshape(dims[:3]))
    facts = {"format": "mgh", "dtype": str(image.header.get_data_dtype()), "xyz_units": "mm",
             "t_units": "unknown", "sform_code": 1, "qform_code": 1, "affine_source": "vox2ras",
             "frame": frame if frames > 1 else None, "frames": frames, "nonfinite_voxels": 0}
    return Volume(data, np.asarray(image.affine, dtype=np.float64), path, facts)


register_reader("mgh", read_mgh, MGH_SUFFIXES, title="MGH/MGZ")
