"""Every built-in reader returns the same Volume: round trips of a real scan through NRRD, MetaImage,
MGZ and a DICOM series (oblique, with rescale slope and intercept), and the real DICOM slices that
pydicom ships."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from nibabel.testing import data_path
from pydicom.data import get_testdata_file

from napari_latent.errors import VolumeError
from napari_latent.volumes import Volume, load_cohort, open_volume
from napari_latent.volumes.orientation import DISPLAY_CODES, reorientation
from napari_latent.volumes.readers import find_reader, readable

from ._series import PATIENT, copy_real_slices, quantised, rotated, write_dicom_series, write_itk, write_mgz

ANATOMICAL = Path(data_path) / "anatomical.nii"


@pytest.fixture(scope="module")
def oblique() -> Volume:
    """nibabel's real T1 scan on an oblique grid (15 degrees about the x axis, 8 about z)."""
    volume = open_volume(ANATOMICAL)
    affine = rotated(rotated(volume.affine, 15.0, axis=0), 8.0, axis=2)
    return Volume(volume.data, affine, None, {}, "anatomical")


def canonical(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    """Voxels and affine in one fixed orientation (so files in different array orders compare)."""
    reo = reorientation(volume.grid, DISPLAY_CODES)
    return np.asarray(reo.apply(volume.data)), reo.target_affine(volume.affine)


def assert_same_volume(read: Volume, source: Volume, data: np.ndarray | None = None) -> None:
    a, affine_a = canonical(read)
    ref = source if data is None else source.with_data(data)
    b, affine_b = canonical(ref)
    assert a.shape == b.shape
    np.testing.assert_allclose(affine_a, affine_b, atol=1e-4, rtol=0)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name,reader", [("scan.nrrd", "nrrd"), ("scan.nhdr", "nrrd"), ("scan.mha", "metaimage"),
                                         ("scan.mhd", "metaimage"), ("scan.mgz", "mgh"), ("scan.mgh", "mgh")])
def test_itk_and_freesurfer_formats_round_trip_exactly(oblique: Volume, tmp_path: Path, name: str, reader: str) -> None:
    path = tmp_path / name
    (write_mgz if reader == "mgh" else write_itk)(oblique, path)
    assert find_reader(path).name == reader
    read = open_volume(path)
    assert read.header["format"] == reader and read.grid.is_oblique
    assert_same_volume(read, oblique)
    assert read.name == "scan"


def test_a_dicom_series_round_trips_with_rescale_and_an_oblique_orientation(oblique: Volume, tmp_path: Path) -> None:
    hu = Volume(oblique.data * 3.0 - 1000.0, oblique.affine, None, {}, "ct")  # CT-like values, negative included
    write_dicom_series(hu, tmp_path / "series", slope=0.5, intercept=-1024.0)
    assert readable(tmp_path / "series") and find_reader(tmp_path / "series").name == "dicom"
    read = open_volume(tmp_path / "series")
    assert_same_volume(read, hu, quantised(hu.data, 0.5, -1024.0))
    assert read.grid.is_oblique and read.data.min() < -900
    assert read.header["modality"] == "CT" and read.header["slices"] == hu.shape[2]
    assert read.name == "series"
    text = repr(read) + repr(read.header)
    for value in PATIENT.values():
        assert value not in text and value.split("^")[0] not in text
    # a single file of the series opens the whole series
    one = open_volume(sorted((tmp_path / "series").iterdir())[3])
    np.testing.assert_array_equal(one.data, read.data)


def test_pydicoms_real_ct_slice_reads_in_hounsfield_units(tmp_path: Path) -> None:
    source = Path(get_testdata_file("CT_small.dcm"))
    copy_real_slices(source, tmp_path / "ct", count=4, spacing=2.5)
    volume = open_volume(tmp_path / "ct")
    reference = pydicom.dcmread(source)
    hu = reference.pixel_array * float(reference.RescaleSlope) + float(reference.RescaleIntercept)
    assert volume.shape == (128, 128, 4)
    np.testing.assert_array_equal(volume.data[:, :, 0], hu.T)
    np.testing.assert_allclose(volume.spacing, (0.661468, 0.661468, 2.5), atol=1e-6)
    # the world position of voxel 0 is ImagePositionPatient, converted from LPS to RAS
    lps = np.array([float(v) for v in reference.ImagePositionPatient])
    np.testing.assert_allclose(volume.affine[:3, 3], lps * [-1, -1, 1], atol=1e-6)
    assert str(reference.PatientName) not in repr(volume.header)


def test_a_jpeg2000_compressed_series_is_decoded(tmp_path: Path) -> None:
    copy_real_slices(Path(get_testdata_file("MR_small_jp2klossless.dcm")), tmp_path / "jp2k", count=3)
    volume = open_volume(tmp_path / "jp2k")
    plain = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array
    np.testing.assert_array_equal(volume.data[:, :, 1], plain.T)  # lossless
    assert "JPEG 2000" in volume.header["transfer_syntax"]


def test_a_cohort_folder_of_mixed_formats(oblique: Volume, tmp_path: Path) -> None:
    write_itk(oblique, tmp_path / "a.nrrd")
    write_mgz(oblique, tmp_path / "b.mgz")
    write_dicom_series(oblique, tmp_path / "c", slope=1.0, intercept=0.0)
    (tmp_path / "cohort.csv").write_text("path,group\na.nrrd,healthy\nb.mgz,disease\nc,disease\n")
    cohort = load_cohort(tmp_path)
    assert [s.name for s in cohort.subjects] == ["a", "b", "c"]
    assert [s.group for s in cohort.subjects] == ["healthy", "disease", "disease"]
    for subject in cohort.subjects:
        expected = np.round(oblique.data) if subject.name == "c" else None  # DICOM stores integers
        assert_same_volume(open_volume(subject.path), oblique, expected)


@pytest.mark.parametrize("name", ["series.nrrd", "series.mha", "series.mgz"])
def test_4d_files_open_one_frame_like_a_4d_nifti(tmp_path: Path, name: str) -> None:
    import nibabel as nib
    import SimpleITK as sitk

    frames = np.random.default_rng(0).random((5, 6, 7, 3)).astype(np.float32)
    path = tmp_path / name
    if name.endswith(".mgz"):
        nib.MGHImage(frames, np.eye(4)).to_filename(str(path))
    else:
        sitk.WriteImage(sitk.GetImageFromArray(np.ascontiguousarray(frames.transpose(3, 2, 1, 0)), isVector=False),
                        str(path))
    volume = open_volume(path, index=-1)
    np.testing.assert_array_equal(volume.data, frames[..., 2])
    assert volume.header["frame"] == 2 and volume.header["frames"] == 3
    with pytest.raises(VolumeError, match=r"a 4D series with 3 frames; choose one with an index from 0 to 2"):
        open_volume(path)
    with pytest.raises(VolumeError, match=r"frame index 3 is out of range"):
        open_volume(path, index=3)
