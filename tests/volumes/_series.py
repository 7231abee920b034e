"""Writers of test copies of a volume in the formats we read: DICOM series (pydicom, with rescale
slope and intercept and any orientation), NRRD, MetaImage and MGZ."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from napari_latent.volumes import Volume
from napari_latent.volumes.itk_geometry import LPS_TO_RAS, itk_from_array

#: Identifiers written into every test slice; they must never reach our outputs.
PATIENT = {"PatientName": "Doe^Jane^Secret", "PatientID": "PID-7731-SECRET", "PatientBirthDate": "19520817"}


def rotated(affine: np.ndarray, degrees: float = 15.0, axis: int = 0) -> np.ndarray:
    """The affine rotated about a world axis through its origin (an oblique scan)."""
    theta = np.radians(degrees)
    c, s = np.cos(theta), np.sin(theta)
    i, j = [a for a in range(3) if a != axis]
    rotation = np.eye(4)
    rotation[i, i], rotation[i, j], rotation[j, i], rotation[j, j] = c, -s, s, c
    out = np.array(affine, dtype=np.float64)
    out[:3, :3] = rotation[:3, :3] @ out[:3, :3]
    return out


def quantised(data: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """The values a DICOM series stores for ``data`` (int16 pixels times slope plus intercept)."""
    stored = np.clip(np.round((data - intercept) / slope), -32768, 32767)
    return (stored * slope + intercept).astype(np.float32)


def write_dicom_series(volume: Volume, folder: Path, slope: float = 0.5, intercept: float = -1024.0,
                       modality: str = "CT", description: str = "test series", series_uid: str | None = None,
                       skip: tuple[int, ...] = (), start: int = 1, prefix: str = "IM") -> list[Path]:
    """Write ``volume`` as a classic DICOM series: one slice per index ``k``, columns along ``i``."""
    folder.mkdir(parents=True, exist_ok=True)
    lps = LPS_TO_RAS @ volume.affine
    column_step, row_step, slice_step = lps[:3, 0], lps[:3, 1], lps[:3, 2]
    row_dir = column_step / np.linalg.norm(column_step)
    col_dir = row_step / np.linalg.norm(row_step)
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    frame_uid = generate_uid()
    stored = np.clip(np.round((volume.data - intercept) / slope), -32768, 32767).astype(np.int16)
    paths = []
    for k in range(volume.shape[2]):
        if k in skip:
            continue
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        for key, value in PATIENT.items():
            setattr(ds, key, value)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.Modality, ds.SeriesDescription, ds.SeriesNumber, ds.InstanceNumber = modality, description, 3, k + start
        position = lps[:3, 3] + k * slice_step
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [f"{np.linalg.norm(row_step):.6f}", f"{np.linalg.norm(column_step):.6f}"]
        ds.SliceThickness = f"{np.linalg.norm(slice_step):.6f}"
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:g}", f"{intercept:g}"
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()  # rows = j, columns = i
        path = folder / f"{prefix}{k:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_itk(volume: Volume, path: Path) -> Path:
    """Write ``volume`` as NRRD or MetaImage (by suffix; a .nhdr/.mhd gets its detached data file)."""
    import SimpleITK as sitk

    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(itk_from_array(volume.data, volume.affine), str(path))
    return path


def write_mgz(volume: Volume, path: Path) -> Path:
    """Write ``volume`` as FreeSurfer MGH/MGZ."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.MGHImage(volume.data, volume.affine).to_filename(str(path))
    return path


def copy_real_slices(source: Path, folder: Path, count: int = 4, spacing: float = 2.5) -> list[Path]:
    """A series made of copies of one real DICOM slice at ``count`` positions along its normal."""
    folder.mkdir(parents=True, exist_ok=True)
    template = pydicom.dcmread(source)
    orientation = np.array([float(v) for v in template.ImageOrientationPatient])
    normal = np.cross(orientation[:3], orientation[3:])
    origin = np.array([float(v) for v in template.ImagePositionPatient])
    series_uid = generate_uid()
    paths = []
    for k in range(count):
        ds = pydicom.dcmread(source)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{v:.6f}" for v in origin + k * spacing * normal]
        path = folder / f"slice{k}.dcm"
        ds.save_as(path)
        paths.append(path)
    return paths
