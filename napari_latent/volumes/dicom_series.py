"""Finding and checking DICOM series in a folder (pydicom reads the tags, never the pixels).

A folder as it comes from a scanner or PACS export may hold several series, non-image
objects (structure sets, reports, presentation states) and files that are not DICOM at
all. :func:`scan_folder` groups the image files by Series Instance UID and skips the rest;
:func:`choose_series` picks the one series asked for (or the only one) and
:func:`slice_order` checks that its slices make one regular 3D grid and sorts them.

Privacy: only technical tags are read into :class:`SeriesInfo` (modality, description,
geometry, pixel layout); patient name, ID and birth date are never read into anything we
keep, print or write.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import VolumeError

#: Modalities of DICOM objects that hold no image volume (skipped when scanning).
NON_IMAGE_MODALITIES = frozenset({"RTSTRUCT", "RTPLAN", "RTRECORD", "SR", "PR", "KO", "REG", "DOC", "SEG",
                                  "RWV", "PLAN", "FID", "AU", "ECG", "HD"})

#: Transfer syntaxes SimpleITK's GDCM decodes (uncompressed, deflate, RLE, JPEG, JPEG-LS, JPEG 2000).
DECODABLE_TRANSFER_SYNTAXES = frozenset({
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
})

#: Tags read from each file while scanning (stop before the pixels; nothing identifying).
_SCAN_TAGS = ["SOPClassUID", "Modality", "SeriesInstanceUID", "SeriesDescription", "SeriesNumber", "Rows",
              "Columns", "NumberOfFrames", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
              "SamplesPerPixel", "InstanceNumber", "RescaleSlope", "RescaleIntercept", "BitsAllocated"]

#: The separator of ``FOLDER::SERIESUID`` paths.
SERIES_SEPARATOR = "::"

#: Most files looked at when scanning one folder tree.
MAX_FILES = 20000


@dataclass
class DicomSlice:
    """One image file of a series (technical tags only)."""

    path: Path
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    spacing: tuple[float, float] | None
    rows: int
    columns: int
    frames: int
    samples: int
    instance: int | None
    transfer_syntax: str


@dataclass
class SeriesInfo:
    """One DICOM image series found in a folder."""

    uid: str
    modality: str
    description: str
    number: int | None
    slices: list[DicomSlice] = field(default_factory=list)

    def summary(self) -> str:
        """``UID (CT, 'Chest 1mm', 300 slices)`` for messages."""
        description = f", {self.description!r}" if self.description else ""
        return f"{self.uid} ({self.modality or 'unknown modality'}{description}, {len(self.slices)} slices)"


def split_series_path(path: str | os.PathLike[str]) -> tuple[Path, str | None]:
    """``FOLDER::UID`` to ``(FOLDER, UID)``; any other path to ``(path, None)``."""
    text = os.fspath(path)
    if SERIES_SEPARATOR in text:
        folder, uid = text.rsplit(SERIES_SEPARATOR, 1)
        return Path(folder), uid.strip() or None
    return Path(text), None


def is_dicom_file(path: Path) -> bool:
    """True for a file with the DICOM preamble (``DICM`` at byte 128); cheap, never raises."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def looks_like_dicom_folder(path: Path, probe: int = 32) -> bool:
    """True when one of the first files directly in ``path`` is DICOM (cheap; never raises)."""
    try:
        if not path.is_dir():
            return False
        seen = 0
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            if entry.name.startswith(".") or not entry.is_file():
                continue
            if entry.name.upper() == "DICOMDIR" or is_dicom_file(Path(entry.path)):
                return True
            seen += 1
            if seen >= probe:
                break
    except OSError:
        return False
    return False


def _floats(value: object, count: int) -> tuple[float, ...] | None:
    try:
        numbers = tuple(float(v) for v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count and all(np.isfinite(numbers)) else None


def _read_tags(path: Path) -> object | None:
    """The scan tags of a DICOM file, or None when it is not DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=[*_SCAN_TAGS, "TransferSyntaxUID"])
    except InvalidDicomError:
        try:  # files written without the 128-byte preamble (older exports)
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=_SCAN_TAGS)
        except Exception:
            return None
        return ds if "SOPClassUID" in ds and "Modality" in ds else None
    except (OSError, ValueError, EOFError, KeyError, TypeError, AttributeError):
        return None


def scan_folder(folder: Path) -> tuple[list[SeriesInfo], dict[str, int]]:
    """Group the DICOM image files under ``folder`` (recursively) by series.

    Returns
    -------
    series : list of SeriesInfo
        Image series, sorted by series number then UID.
    skipped : dict
        Counts of what was skipped: ``"non-image"`` objects by modality (``"RTSTRUCT"``...)
        and ``"not DICOM"`` files.
    """
    found: dict[str, SeriesInfo] = {}
    skipped: dict[str, int] = {}
    count = 0
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or name.upper() == "DICOMDIR":
                continue
            count += 1
            if count > MAX_FILES:
                raise VolumeError(f"{folder}: more than {MAX_FILES:,} files; point at one series' folder")
            ds = _read_tags(Path(root) / name)
            if ds is None:
                skipped["not DICOM"] = skipped.get("not DICOM", 0) + 1
                continue
            modality = str(ds.get("Modality", "") or "").upper()
            if modality in NON_IMAGE_MODALITIES or "Rows" not in ds or "Columns" not in ds:
                key = modality or "non-image"
                skipped[key] = skipped.get(key, 0) + 1
                continue
            uid = str(ds.get("SeriesInstanceUID", "") or "unknown")
            if uid not in found:
                number = ds.get("SeriesNumber")
                found[uid] = SeriesInfo(uid, modality, str(ds.get("SeriesDescription", "") or "").strip(),
                                        int(number) if number not in (None, "") else None)
            meta = getattr(ds, "file_meta", None)
            syntax = str(getattr(meta, "TransferSyntaxUID", "") or "1.2.840.10008.1.2")
            instance = ds.get("InstanceNumber")
            found[uid].slices.append(DicomSlice(
                Path(root) / name, _floats(ds.get("ImagePositionPatient"), 3),  # type: ignore[arg-type]
                _floats(ds.get("ImageOrientationPatient"), 6), _floats(ds.get("PixelSpacing"), 2),  # type: ignore[arg-type]
                int(ds.get("Rows")), int(ds.get("Columns")), int(ds.get("NumberOfFrames") or 1),
                int(ds.get("SamplesPerPixel") or 1), int(instance) if instance not in (None, "") else None, syntax))
    series = sorted(found.values(), key=lambda s: (s.number if s.number is not None else 10**9, s.uid))
    return series, skipped


def _skipped_phrase(skipped: dict[str, int]) -> str:
    if not skipped:
        return ""
    return " (skipped: " + ", ".join(f"{n} {kind}" for kind, n in sorted(skipped.items())) + ")"


def choose_series(folder: Path, uid: str | None) -> SeriesInfo:
    """The series to read: the one with ``uid``, or the folder's only image series.

    Raises
    ------
    VolumeError
        For a folder with no image series (empty, only non-image objects, not DICOM),
        an unknown UID, or several series and no UID (the message lists each series and
        says how to choose one).
    """
    series, skipped = scan_folder(folder)
    if not series:
        if not skipped:
            raise VolumeError(f"{folder}: the folder holds no files")
        raise VolumeError(f"{folder}: no DICOM image series in the folder{_skipped_phrase(skipped)}")
    listing = "; ".join(s.summary() for s in series)
    if uid is not None:
        for item in series:
            if item.uid == uid:
                return item
        raise VolumeError(f"{folder}: no image series with UID {uid}; the folder holds: {listing}")
    if len(series) > 1:
        raise VolumeError(f"{folder}: holds {len(series)} DICOM series; choose one with --series UID or the path "
                          f"FOLDER{SERIES_SEPARATOR}UID: {listing}")
    return series[0]


@dataclass(frozen=True)
class SliceOrder:
    """A series' slices sorted along the slice direction, with its checked geometry.

    Attributes
    ----------
    files : list of Path
        The slice files, first slice first.
    affine_lps : numpy.ndarray
        4x4 index ``(column, row, slice)`` to LPS (mm) matrix.
    slice_spacing : float
        Distance between neighbouring slices along the slice normal (mm).
    """

    files: list[Path]
    affine_lps: np.ndarray
    slice_spacing: float


def slice_order(folder: Path, series: SeriesInfo, tolerance: float = 0.01) -> SliceOrder:
    """Sort a series' slices and check that they form one regular 3D grid.

    Parameters
    ----------
    folder : Path
        For messages.
    series : SeriesInfo
    tolerance : float
        Largest relative deviation of a slice gap from the median gap (1 %); positions
        also agree to 0.01 mm.

    Raises
    ------
    VolumeError
        For multi-frame (enhanced) files, colour images, a single slice, slices of
        different sizes, orientations or pixel spacings, missing geometry tags, two slices
        at one position, missing slices and uneven slice spacing.
    """
    slices = series.slices
    where = f"{folder}: series {series.uid}"
    multi = [s for s in slices if s.frames > 1]
    if multi:
        raise VolumeError(f"{where} is multi-frame (enhanced) DICOM ({multi[0].frames} frames in "
                          f"{multi[0].path.name}), which is not supported; convert it to a classic series or "
                          "NIfTI first (for example with dcm2niix)")
    if any(s.samples != 1 for s in slices):
        raise VolumeError(f"{where} holds colour (RGB) images; only greyscale volumes are supported")
    if len(slices) < 2:
        raise VolumeError(f"{where} has a single slice; a 3D volume is needed")
    if any(s.position is None or s.orientation is None or s.spacing is None for s in slices):
        raise VolumeError(f"{where}: some slices lack ImagePositionPatient, ImageOrientationPatient or PixelSpacing; "
                          "the 3D geometry is unknown")
    first = slices[0]
    for other in slices[1:]:
        if (other.rows, other.columns) != (first.rows, first.columns):
            raise VolumeError(f"{where}: slices of different sizes ({first.rows}x{first.columns} and "
                              f"{other.rows}x{other.columns})")
        if np.abs(np.subtract(other.orientation, first.orientation)).max() > 1e-4:  # type: ignore[arg-type]
            raise VolumeError(f"{where}: slices with different orientations (ImageOrientationPatient differs)")
        if np.abs(np.subtract(other.spacing, first.spacing)).max() > 1e-4:  # type: ignore[arg-type]
            raise VolumeError(f"{where}: slices with different pixel spacings")
    row_dir = np.asarray(first.orientation[:3])  # type: ignore[index]
    col_dir = np.asarray(first.orientation[3:])  # type: ignore[index]
    normal = np.cross(row_dir, col_dir)
    positions = np.array([s.position for s in slices], dtype=np.float64)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    along = along[order]
    gaps = np.diff(along)
    if np.any(gaps < 1e-3):
        at = float(along[1:][gaps < 1e-3][0])
        raise VolumeError(f"{where}: two slices lie at the same position ({at:.2f} mm along the slice normal); "
                          "the series holds several volumes (echoes, phases or repeats), which is not supported")
    step = float(np.median(gaps))
    big = gaps > step * 1.5
    if np.any(big):
        k = int(np.flatnonzero(big)[0])
        missing = round(gaps[k] / step) - 1
        raise VolumeError(f"{where}: {missing} slice(s) missing between positions {along[k]:.2f} and "
                          f"{along[k + 1]:.2f} mm (gap {gaps[k]:.2f} mm, spacing {step:.2f} mm); the series is "
                          "incomplete")
    uneven = np.abs(gaps - step) > max(tolerance * step, 0.01)
    if np.any(uneven):
        raise VolumeError(f"{where}: uneven slice spacing (gaps from {gaps.min():.3f} to {gaps.max():.3f} mm); "
                          "it cannot be read as one regular grid")
    ordered = [slices[int(i)] for i in order]
    start = positions[order[0]]
    stop = positions[order[-1]]
    slice_vector = (stop - start) / (len(slices) - 1)  # includes any gantry-tilt shear
    row_spacing, column_spacing = first.spacing  # type: ignore[misc]
    affine = np.eye(4)
    affine[:3, 0] = row_dir * column_spacing
    affine[:3, 1] = col_dir * row_spacing
    affine[:3, 2] = slice_vector
    affine[:3, 3] = start
    return SliceOrder([s.path for s in ordered], affine, step)
