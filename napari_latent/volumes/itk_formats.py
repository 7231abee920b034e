"""The built-in NRRD (``.nrrd``, ``.nhdr``) and MetaImage (``.mha``, ``.mhd``) readers, through SimpleITK.

Both formats are what 3D Slicer and ITK write. A detached header (``.nhdr``, ``.mhd``)
names its voxel file; a missing one is a specific error before SimpleITK is asked. The
geometry is ITK's LPS origin, spacing and direction converted to the RAS+ affine
(:mod:`napari_latent.volumes.itk_geometry`). 4D images (a time or gradient axis last)
open one frame at a time, like a 4D NIfTI; vector (RGB, tensor) images are refused.

They register themselves through the ``napari_latent.readers`` entry points ``nrrd`` and
``metaimage`` declared in ``setup.cfg``, exactly as a plugin's reader does. Header
key-value pairs are not copied into our outputs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VolumeError
from .io import MAX_VOXELS, Volume
from .itk_geometry import affine_from_itk, array_from_itk
from .readers import frame_index, register_reader

NRRD_SUFFIXES = (".nrrd", ".nhdr")
METAIMAGE_SUFFIXES = (".mha", ".mhd")

#: Header lines that name a detached data file.
_NRRD_DATAFILE = re.compile(rb"^data ?file:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
_MHD_DATAFILE = re.compile(rb"^ElementDataFile\s*=\s*(.+?)\s*$", re.MULTILINE)


def _short(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # ITK messages: "... ImageIO.cxx:123:\nitk::ERROR: ...: the actual reason"
    text = next((line for line in reversed(lines) if "ERROR" in line or "rror" in line), lines[-1] if lines else "")
    return (text.split(": ", 2)[-1] if "itk::ERROR" in text else text)[:200] or type(exc).__name__


def _read_head(path: Path, size: int = 65536) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(size)
    except OSError as exc:
        raise VolumeError(f"{path}: cannot be read ({exc.strerror or exc})") from exc


def _check_detached(path: Path, pattern: re.Pattern[bytes], what: str) -> None:
    """A detached header's data file(s) must exist (``LOCAL`` means inline)."""
    head = _read_head(path)
    match = pattern.search(head)
    if match is None:
        if path.suffix.lower() in (".nhdr", ".mhd"):
            raise VolumeError(f"{path}: the {what} header names no data file")
        return
    name = match.group(1).decode("latin-1").strip()
    if name.upper() in ("LOCAL", "LIST") or "%" in name or name.upper().startswith("LIST"):
        return  # inline data, or a list/pattern of files (left to ITK)
    data_file = Path(name) if Path(name).is_absolute() else path.parent / name
    if not data_file.is_file():
        raise VolumeError(f"{path}: the {what} header's data file {name} does not exist (expected at {data_file})")


def detached_data_files(path: str | os.PathLike[str]) -> list[Path]:
    """The voxel files that an NRRD or MetaImage header names (its content besides the header).

    Parameters
    ----------
    path : path-like
        Any file; only ``.nrrd``/``.nhdr`` and ``.mha``/``.mhd`` headers can name data files.

    Returns
    -------
    list of Path
        The data file a detached header names; for a list or pattern of files (``LIST``,
        ``%d``), every other file of the header's folder (a superset); empty for inline data
        (``LOCAL``, an attached header), other formats, a missing data file or an unreadable
        header (opening the volume then reports the problem).
    """
    path = Path(path)
    pattern = {".nrrd": _NRRD_DATAFILE, ".nhdr": _NRRD_DATAFILE, ".mha": _MHD_DATAFILE,
               ".mhd": _MHD_DATAFILE}.get(path.suffix.lower())
    if pattern is None:
        return []
    try:
        match = pattern.search(_read_head(path))
    except VolumeError:
        return []
    if match is None:
        return []
    name = match.group(1).decode("latin-1").strip()
    if name.upper() == "LOCAL":
        return []
    if name.upper().startswith("LIST") or "%" in name:
        return sorted(p for p in path.parent.iterdir() if p.is_file() and p != path)
    data_file = Path(name) if Path(name).is_absolute() else path.parent / name
    return [data_file] if data_file.is_file() else []


def _check_nrrd(path: Path) -> None:
    if not _read_head(path, 8).startswith(b"NRRD"):
        raise VolumeError(f"{path}: not an NRRD file (it does not start with the NRRD magic)")
    _check_detached(path, _NRRD_DATAFILE, "NRRD")


def _check_metaimage(path: Path) -> None:
    head = _read_head(path)
    if b"ElementType" not in head or b"DimSize" not in head:
        raise VolumeError(f"{path}: not a MetaImage file (no ElementType/DimSize header)")
    _check_detached(path, _MHD_DATAFILE, "MetaImage")


def read_itk(path: Path, index: int | None, fmt: str) -> Volume:
    """Read one 3D volume (or one frame of a 4D image) of a file SimpleITK reads.

    Parameters
    ----------
    path : Path
        The file.
    index : int, optional
        The frame of a 4D image (required when it has more than one frame).
    fmt : str
        ``"nrrd"`` or ``"metaimage"`` (the facts' ``format``).

    Returns
    -------
    Volume
        float32 voxels in index order ``(i, j, k)`` and the RAS+ affine.

    Raises
    ------
    VolumeError
        For a missing data file, a truncated or unreadable file, a 2D, vector or 5D+
        image, a bad frame index and an oversized image.
    """
    import SimpleITK as sitk

    path = Path(path)
    (_check_nrrd if fmt == "nrrd" else _check_metaimage)(path)
    title = "NRRD" if fmt == "nrrd" else "MetaImage"
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise VolumeError(f"{path}: not a readable {title} file ({_short(exc)})") from exc
    size = tuple(int(n) for n in reader.GetSize())
    dims = len(size)
    if reader.GetNumberOfComponents() != 1:
        raise VolumeError(f"{path}: a {reader.GetNumberOfComponents()}-component (vector or colour) image; "
                          "only scalar images are supported")
    if dims < 3 or (dims == 3 and 1 in size):
        raise VolumeError(f"{path}: a 2D image of size {size}; a 3D volume is needed")
    if dims > 4:
        raise VolumeError(f"{path}: a {dims}D image of size {size}; only 3D volumes and 4D series are supported")
    frames = size[3] if dims == 4 else 1
    frame = frame_index(path, frames, index)
    voxels = int(np.prod(size[:3], dtype=np.int64))
    if voxels > MAX_VOXELS:
        raise VolumeError(f"{path}: the header claims {voxels:,} voxels per volume, more than the "
                          f"{MAX_VOXELS:,} supported")
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise VolumeError(f"{path}: the voxel data cannot be read; the file is truncated or corrupt "
                          f"({_short(exc)})") from exc
    data = array_from_itk(image)
    if dims == 4:
        data = np.ascontiguousarray(data[..., frame])
    affine = affine_from_itk(image.GetOrigin(), image.GetSpacing(), image.GetDirection())
    facts: dict[str, Any] = {
        "format": fmt,
        "dtype": image.GetPixelIDTypeAsString(),
        "xyz_units": "mm",
        "t_units": "unknown",
        "sform_code": 1,
        "qform_code": 1,
        "affine_source": "itk",
        "frame": frame if dims == 4 else None,
        "frames": frames,
        "nonfinite_voxels": 0,
    }
    return Volume(data, affine, path, facts)


def read_nrrd(path: Path, index: int | None = None) -> Volume:
    """Read an NRRD file (``.nrrd``, or a detached ``.nhdr`` header and its data file)."""
    return read_itk(path, index, "nrrd")


def read_metaimage(path: Path, index: int | None = None) -> Volume:
    """Read a MetaImage file (``.mha``, or a ``.mhd`` header and its raw data file)."""
    return read_itk(path, index, "metaimage")


register_reader("nrrd", read_nrrd, NRRD_SUFFIXES, title="NRRD")
register_reader("metaimage", read_metaimage, METAIMAGE_SUFFIXES, title="MetaImage")
