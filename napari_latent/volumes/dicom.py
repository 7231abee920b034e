"""The built-in DICOM series reader: a folder of slices (or ``FOLDER::SERIESUID``) as one volume.

The series is found and checked by :mod:`napari_latent.volumes.dicom_series` (pydicom
reads the tags): several series in one folder are an error listing each of them, unless
one is chosen (``FOLDER::UID``, or ``--series UID`` on the command line); non-image
objects are skipped; missing slices, uneven spacing, multi-frame (enhanced) files and
transfer syntaxes SimpleITK cannot decode are specific errors. SimpleITK (GDCM) then
decodes the pixels in slice order and applies each slice's rescale slope and intercept,
so a CT comes out in Hounsfield units. The affine is computed from the tags
(ImagePositionPatient, ImageOrientationPatient, PixelSpacing, the slice positions) and
converted from LPS to RAS+.

A single ``.dcm`` file opens the series it belongs to (from its folder).

Privacy: the volume's header facts hold the modality, series description, slice count,
spacing, transfer syntax and rescale, never the patient's name, ID or birth date; the
volume's name is the folder's name.

The reader registers itself through the ``napari_latent.readers`` entry point ``dicom``
declared in ``setup.cfg``, exactly as a plugin's reader does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import VolumeError
from .dicom_series import (
    DECODABLE_TRANSFER_SYNTAXES,
    SERIES_SEPARATOR,
    SeriesInfo,
    choose_series,
    is_dicom_file,
    looks_like_dicom_folder,
    slice_order,
    split_series_path,
)
from .io import MAX_VOXELS, Volume
from .itk_geometry import LPS_TO_RAS, array_from_itk
from .readers import register_reader

DICOM_SUFFIXES = (".dcm",)


def accepts_dicom(path: Path) -> bool:
    """A folder with DICOM files directly in it, or ``FOLDER::UID`` of such a folder (cheap)."""
    folder, uid = split_series_path(path)
    if uid is not None:
        return folder.is_dir()
    return looks_like_dicom_folder(folder)


def syntax_name(uid: str) -> str:
    """The transfer syntax's name and UID, ``"JPEG 2000 Image Compression (1.2.840.10008.1.2.4.91)"``."""
    from pydicom.uid import UID

    name = UID(uid).name
    return f"{name} ({uid})" if name and name != uid else f"transfer syntax {uid}"


def _series_of_file(path: Path) -> tuple[Path, str | None]:
    """A single ``.dcm`` file: its folder and its series UID."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not is_dicom_file(path):
        raise VolumeError(f"{path}: not a DICOM file (no DICM preamble)")
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise VolumeError(f"{path}: not a readable DICOM file ({str(exc)[:160]})") from exc
    uid = ds.get("SeriesInstanceUID")
    return path.parent, str(uid) if uid else None


def read_dicom(path: Path, index: int | None = None) -> Volume:
    """Read one DICOM image series as a volume.

    Parameters
    ----------
    path : Path
        A folder of slices (searched recursively), ``FOLDER::SERIESUID``, or one ``.dcm``
        file of the series.
    index : int, optional
        Must be None or 0 (a DICOM series is one 3D volume here).

    Returns
    -------
    Volume
        float32 voxels in index order ``(column, row, slice)`` in rescaled units
        (Hounsfield units for CT), the RAS+ affine, and technical header facts.

    Raises
    ------
    VolumeError
        See :func:`~napari_latent.volumes.dicom_series.choose_series` and
        :func:`~napari_latent.volumes.dicom_series.slice_order`; also for transfer
        syntaxes that cannot be decoded and truncated or corrupt files.
    """
    import SimpleITK as sitk

    path = Path(path)
    folder, uid = split_series_path(path)
    if uid is None and folder.is_file():
        folder, uid = _series_of_file(folder)
    if not folder.is_dir():
        raise VolumeError(f"{folder}: no such folder")
    if index not in (None, 0, -1):
        raise VolumeError(f"{path}: frame index {index} given, but a DICOM series is read as one 3D volume")
    series = choose_series(folder, uid)
    order = slice_order(folder, series)
    where = f"{folder}: series {series.uid}"
    syntaxes = sorted({s.transfer_syntax for s in series.slices})
    for syntax in syntaxes:
        if syntax not in DECODABLE_TRANSFER_SYNTAXES:
            raise VolumeError(f"{where} is stored as {syntax_name(syntax)}, which SimpleITK cannot decode; "
                              "decompress it first (for example with gdcmconv --raw or dcmdjpeg)")
    first = series.slices[0]
    if first.rows * first.columns * len(order.files) > MAX_VOXELS:
        raise VolumeError(f"{where}: {first.rows}x{first.columns}x{len(order.files)} voxels is more than the "
                          f"{MAX_VOXELS:,} supported")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p in order.files])
    reader.SetOutputPixelType(sitk.sitkFloat32)  # per-slice rescale slopes never truncate
    reader.MetaDataDictionaryArrayUpdateOff()
    reader.LoadPrivateTagsOff()
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        detail = next((line.split(": ", 1)[-1] for line in reversed(str(exc).splitlines()) if line.strip()), "")
        compressed = [s for s in syntaxes if s not in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1",
                                                       "1.2.840.10008.1.2.2")]
        how = f" (stored as {syntax_name(compressed[0])})" if compressed else ""
        raise VolumeError(f"{where}: the pixel data cannot be decoded; a file is truncated or corrupt{how} "
                          f"({detail[:160]})") from exc
    data = array_from_itk(image)
    expected = (first.columns, first.rows, len(order.files))
    if data.shape != expected:
        raise VolumeError(f"{where}: decoded {data.shape} voxels, expected {expected}")
    return Volume(data, LPS_TO_RAS @ order.affine_lps, path, _facts(series, order, syntaxes),
                  name=folder.name or "dicom")


def _facts(series: SeriesInfo, order: Any, syntaxes: list[str]) -> dict[str, Any]:
    """Technical facts only (see the module's privacy note)."""
    first = series.slices[0]
    return {
        "format": "dicom",
        "modality": series.modality,
        "series_description": series.description,
        "series_number": series.number,
        "slices": len(series.slices),
        "pixel_spacing": list(first.spacing or ()),
        "slice_spacing": round(float(order.slice_spacing), 6),
        "transfer_syntax": ", ".join(syntax_name(s) for s in syntaxes),
        "dtype": "float32 (rescaled)",
        "xyz_units": "mm",
        "t_units": "unknown",
        "sform_code": 1,
        "qform_code": 1,
        "affine_source": "dicom",
        "frame": None,
        "frames": 1,
        "nonfinite_voxels": 0,
    }


register_reader("dicom", read_dicom, DICOM_SUFFIXES, title="DICOM series", accepts=accepts_dicom)

__all__ = ["SERIES_SEPARATOR", "accepts_dicom", "read_dicom", "syntax_name"]
