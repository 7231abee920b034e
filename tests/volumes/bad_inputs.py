"""The bad-input corpus of the new formats: each maker writes one broken input under a folder and
returns its path and a pattern of the one-line error it must give."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from napari_latent.volumes import Volume

from ._series import PATIENT, write_dicom_series, write_itk


def small_volume(n: int = 6) -> Volume:
    data = np.arange(n * n * n, dtype=np.float32).reshape(n, n, n) % 97
    return Volume(data, np.diag([1.0, 1.0, 2.0, 1.0]), None, {}, "small")


def two_series(root: Path) -> tuple[Path, str]:
    folder = root / "two_series"
    write_dicom_series(small_volume(), folder, series_uid="1.2.826.0.1.3680043.8.498.1", description="T1 axial",
                       prefix="A")
    write_dicom_series(small_volume(), folder, series_uid="1.2.826.0.1.3680043.8.498.2", modality="MR",
                       description="T2 axial", prefix="B")
    return folder, (r"holds 2 DICOM series; choose one with --series UID or the path FOLDER::UID: "
                    r"1\.2\.826\.0\.1\.3680043\.8\.498\.1 \(CT, 'T1 axial', 6 slices\); "
                    r"1\.2\.826\.0\.1\.3680043\.8\.498\.2 \(MR, 'T2 axial', 6 slices\)")


def missing_slice(root: Path) -> tuple[Path, str]:
    folder = root / "missing_slice"
    write_dicom_series(small_volume(), folder, skip=(3,))
    return folder, r"1 slice\(s\) missing between positions 4\.00 and 8\.00 mm \(gap 4\.00 mm, spacing 2\.00 mm\)"


def uneven_spacing(root: Path) -> tuple[Path, str]:
    folder = root / "uneven"
    paths = write_dicom_series(small_volume(), folder)
    ds = pydicom.dcmread(paths[-1])
    ds.ImagePositionPatient = [0, 0, 10.6]
    ds.save_as(paths[-1])
    return folder, r"uneven slice spacing \(gaps from 2\.000 to 2\.600 mm\)"


def rtstruct_only(root: Path) -> tuple[Path, str]:
    folder = root / "rtstruct"
    folder.mkdir(parents=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"  # RT Structure Set Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.StructureSetLabel = "RTSTRUCT", generate_uid(), "contours"
    for key, value in PATIENT.items():
        setattr(ds, key, value)
    ds.save_as(folder / "RS.dcm", enforce_file_format=True)
    return folder, r"no DICOM image series in the folder \(skipped: 1 RTSTRUCT\)"


def truncated_slice(root: Path) -> tuple[Path, str]:
    folder = root / "truncated"
    paths = write_dicom_series(small_volume(), folder)
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[: len(data) - 40])
    return folder, r"the pixel data cannot be decoded; a file is truncated or corrupt"


def truncated_nrrd(root: Path) -> tuple[Path, str]:
    path = write_itk(small_volume(), root / "truncated.nrrd")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    return path, r"truncated\.nrrd: the voxel data cannot be read; the file is truncated or corrupt"


def detached_nrrd_without_data(root: Path) -> tuple[Path, str]:
    path = write_itk(small_volume(), root / "detached.nhdr")
    (root / "detached.raw").unlink()
    return path, r"detached\.nhdr: the NRRD header's data file detached\.raw does not exist"


def mhd_without_raw(root: Path) -> tuple[Path, str]:
    path = write_itk(small_volume(), root / "header.mhd")
    (root / "header.raw").unlink()
    return path, r"header\.mhd: the MetaImage header's data file header\.raw does not exist"


def unsupported_syntax(root: Path) -> tuple[Path, str]:
    folder = root / "htj2k"
    for path in write_dicom_series(small_volume(), folder):
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.201"  # High-Throughput JPEG 2000 (Lossless Only)
        ds.PixelData = encapsulate([ds.PixelData])  # the bytes are not HTJ2K: nothing may try to decode them
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        ds.save_as(path)
    return folder, (r"is stored as High-Throughput JPEG 2000 Image Compression \(Lossless Only\) "
                    r"\(1\.2\.840\.10008\.1\.2\.4\.201\), which SimpleITK cannot decode")


def multi_frame(root: Path) -> tuple[Path, str]:
    folder = root / "enhanced"
    paths = write_dicom_series(small_volume(), folder)
    for path in paths[1:]:
        path.unlink()
    ds = pydicom.dcmread(paths[0])
    ds.NumberOfFrames = 6
    ds.save_as(paths[0])
    return folder, r"is multi-frame \(enhanced\) DICOM \(6 frames in IM0000\.dcm\), which is not supported"


def empty_folder(root: Path) -> tuple[Path, str]:
    folder = root / "empty"
    folder.mkdir(parents=True)
    return folder, r"empty"


#: Every bad input (the corpus of issue 15), by name.
CORPUS: dict[str, Callable[[Path], tuple[Path, str]]] = {
    "two series": two_series,
    "missing slice": missing_slice,
    "uneven spacing": uneven_spacing,
    "RTSTRUCT only": rtstruct_only,
    "truncated slice": truncated_slice,
    "truncated NRRD": truncated_nrrd,
    "detached NRRD without data": detached_nrrd_without_data,
    "MHD without raw": mhd_without_raw,
    "unsupported transfer syntax": unsupported_syntax,
    "multi-frame": multi_frame,
    "empty folder": empty_folder,
}
