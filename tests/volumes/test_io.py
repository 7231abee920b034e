"""Reading and writing NIfTI volumes: round trips of real scans and a corpus of bad files."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_latent import _atomic
from napari_latent.errors import MismatchError, VolumeError
from napari_latent.volumes import NonFiniteVoxelsWarning, Volume, open_volume, save_volume
from napari_latent.volumes.io import MAX_VOXELS, open_series


def test_real_scan_round_trip_keeps_data_affine_and_units(anatomical_path: Path, tmp_path: Path) -> None:
    volume = open_volume(anatomical_path)
    reference = nib.load(anatomical_path)
    assert volume.shape == (33, 41, 25)
    assert volume.data.dtype == np.float32
    np.testing.assert_array_equal(volume.data, reference.get_fdata(dtype=np.float32))
    np.testing.assert_allclose(volume.affine, reference.affine)
    assert volume.orientation == ("L", "A", "S")
    assert volume.spacing == pytest.approx((2.0, 2.0, 2.0))
    assert volume.header["xyz_units"] == "mm"
    assert volume.header["description"] == "spm - 3D normalized"

    for name in ("copy.nii", "copy.nii.gz"):
        written = save_volume(volume, tmp_path / name)
        again = open_volume(written)
        np.testing.assert_array_equal(again.data, volume.data)
        np.testing.assert_allclose(again.affine, volume.affine)
        reopened = nib.load(written)
        assert reopened.header.get_xyzt_units() == ("mm", "sec")
        assert int(reopened.header["sform_code"]) == 2  # the source's code is kept


def test_map_on_a_volume_overlays_the_source(anatomical_path: Path, tmp_path: Path) -> None:
    volume = open_volume(anatomical_path)
    derived = (volume.data > volume.data.mean()).astype(np.float32)
    path = save_volume(derived, tmp_path / "map.nii.gz", like=volume)
    image = nib.load(path)
    assert image.shape == volume.shape
    np.testing.assert_allclose(image.affine, volume.affine)
    np.testing.assert_array_equal(image.get_fdata(), derived)


def test_4d_needs_an_index_and_the_error_counts_frames(example4d_path: Path) -> None:
    with pytest.raises(VolumeError, match=r"4D series with 2 frames.*index from 0 to 1"):
        open_volume(example4d_path)
    with pytest.raises(VolumeError, match=r"out of range.*2 frames"):
        open_volume(example4d_path, index=5)
    frame = open_volume(example4d_path, index=1)
    reference = nib.load(example4d_path).get_fdata()[..., 1]
    np.testing.assert_allclose(frame.data, reference)
    assert frame.header["frame"] == 1 and frame.header["frames"] == 2
    assert frame.grid.is_oblique
    assert open_volume(example4d_path, index=-1).header["frame"] == 1


def test_4d_frame_round_trip_keeps_oblique_affine(example4d_path: Path, tmp_path: Path) -> None:
    frame = open_volume(example4d_path, index=0)
    again = open_volume(save_volume(frame, tmp_path / "frame0.nii.gz"))
    np.testing.assert_allclose(again.affine, frame.affine, atol=1e-5)
    np.testing.assert_array_equal(again.data, frame.data)


def test_open_series_reads_every_frame(example4d_path: Path) -> None:
    frames, first = open_series(example4d_path)
    assert frames.shape == (2, 128, 96, 24)
    np.testing.assert_allclose(frames[1], np.moveaxis(nib.load(example4d_path).get_fdata(), -1, 0)[1])
    assert first.shape == (128, 96, 24)


def test_same_data_same_bytes(anatomical_path: Path, tmp_path: Path) -> None:
    volume = open_volume(anatomical_path)
    a = save_volume(volume, tmp_path / "a.nii.gz").read_bytes()
    b = save_volume(volume, tmp_path / "b.nii.gz").read_bytes()
    assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest()


# -- bad files ---------------------------------------------------------------------------------

def _nifti(tmp_path: Path, name: str, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), path)
    return path


@pytest.fixture
def bad_files(tmp_path: Path, anatomical_path: Path) -> dict[str, tuple[Path, str]]:
    """A corpus of broken inputs, each with the message it must produce."""
    corpus: dict[str, tuple[Path, str]] = {}
    corpus["missing"] = (tmp_path / "nope.nii.gz", "no such file")
    empty = tmp_path / "empty.nii"
    empty.write_bytes(b"")
    corpus["empty"] = (empty, "the file is empty")
    text = tmp_path / "notes.nii"
    text.write_text("this is not an image\n" * 20)
    corpus["not nifti"] = (text, "not a valid NIfTI file")
    png = tmp_path / "scan.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    corpus["wrong extension"] = (png, r"expected a \.dcm, .*\.nii, \.nii\.gz, .* name")
    corpus["2D"] = (_nifti(tmp_path, "flat.nii", np.ones((8, 8), np.float32)), "2D image")
    corpus["single slice"] = (_nifti(tmp_path, "slice.nii", np.ones((8, 8, 1), np.float32)), "single 2D slice")
    corpus["5D"] = (_nifti(tmp_path, "five.nii", np.ones((4, 4, 4, 2, 3), np.float32)), "5D image")
    raw = anatomical_path.read_bytes()
    truncated = tmp_path / "truncated.nii"
    truncated.write_bytes(raw[: len(raw) // 2])
    corpus["truncated"] = (truncated, "truncated")
    truncated_gz = tmp_path / "truncated.nii.gz"
    truncated_gz.write_bytes(gzip.compress(raw)[:4000])
    corpus["truncated gz"] = (truncated_gz, "truncated or corrupt")
    huge = tmp_path / "huge.nii"
    image = nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4))
    image.header.set_data_shape((4096, 4096, 4096))
    huge.write_bytes(image.header.binaryblock + b"\x00" * 4 + bytes(8))
    corpus["absurd size"] = (huge, "probably corrupt")
    allnan = _nifti(tmp_path, "nan.nii", np.full((4, 4, 4), np.nan, np.float32))
    corpus["all NaN"] = (allnan, "every voxel is NaN")
    complex_file = _nifti(tmp_path, "complex.nii", np.ones((4, 4, 4), np.complex64))
    corpus["complex"] = (complex_file, "not supported")
    folder = tmp_path / "folder.nii"
    folder.mkdir()
    corpus["folder"] = (folder, "is a folder")
    return corpus


@pytest.mark.parametrize("case", ["missing", "empty", "not nifti", "wrong extension", "2D", "single slice", "5D",
                                  "truncated", "truncated gz", "absurd size", "all NaN", "complex", "folder"])
def test_bad_files_get_specific_volume_errors(bad_files: dict[str, tuple[Path, str]], case: str) -> None:
    path, message = bad_files[case]
    with pytest.raises(VolumeError, match=message) as info:
        open_volume(path)
    assert isinstance(info.value, ValueError)
    assert str(path.name) in str(info.value)


def test_absurd_size_limit_is_what_the_docs_say() -> None:
    assert MAX_VOXELS == 1024**3


def test_nonfinite_voxels_are_replaced_with_a_warning_or_rejected(tmp_path: Path) -> None:
    data = np.arange(64, dtype=np.float32).reshape(4, 4, 4) + 10
    data[0, 0, 0] = np.nan
    data[1, 1, 1] = np.inf
    path = _nifti(tmp_path, "holes.nii", data)
    with pytest.warns(NonFiniteVoxelsWarning, match="replaced 2 NaN/Inf voxels"):
        volume = open_volume(path)
    assert np.isfinite(volume.data).all()
    assert volume.data[0, 0, 0] == pytest.approx(11.0)  # the smallest finite value
    assert volume.header["nonfinite_voxels"] == 2
    with pytest.raises(VolumeError, match="2 voxels are NaN or infinite"):
        open_volume(path, nonfinite="error")


def test_save_rejects_wrong_grid_and_suffix(anatomical_path: Path, tmp_path: Path) -> None:
    volume = open_volume(anatomical_path)
    with pytest.raises(MismatchError, match="not on the reference grid"):
        save_volume(np.zeros((3, 3, 3), np.float32), tmp_path / "x.nii", like=volume)
    with pytest.raises(VolumeError, match=r"must end in \.nii"):
        save_volume(volume, tmp_path / "x.png")
    with pytest.raises(ValueError, match="needs like="):
        save_volume(np.zeros((3, 3, 3), np.float32), tmp_path / "x.nii")
    with pytest.raises(VolumeError, match="NaN"):
        save_volume(np.full(volume.shape, np.nan, np.float32), tmp_path / "x.nii", like=volume)
    assert not list(tmp_path.iterdir())


def test_writes_are_atomic(anatomical_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    volume = open_volume(anatomical_path)
    target = tmp_path / "out.nii.gz"
    save_volume(volume, target)
    before = target.read_bytes()

    def crash(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(_atomic.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save_volume(volume.with_data(volume.data * 2), target)
    assert target.read_bytes() == before  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nii.gz"]  # no temporary left behind


def test_volume_validates_its_parts() -> None:
    with pytest.raises(VolumeError, match="3D"):
        Volume(np.zeros((3, 3)), np.eye(4))
    with pytest.raises(VolumeError, match="4x4"):
        Volume(np.zeros((3, 3, 3)), np.eye(3))
    volume = Volume(np.zeros((3, 3, 3), np.int16), np.eye(4))
    assert volume.data.dtype == np.float32
    with pytest.raises(MismatchError):
        volume.with_data(np.zeros((2, 3, 3)))
