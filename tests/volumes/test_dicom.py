"""DICOM as it comes from a scanner: several series, non-image objects, missing slices, transfer
syntaxes, multi-frame files; and the bad-input corpus of every new format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_latent.errors import VolumeError
from napari_latent.volumes import open_volume
from napari_latent.volumes.dicom_series import scan_folder, split_series_path

from ._series import PATIENT, write_dicom_series
from .bad_inputs import CORPUS, rtstruct_only, small_volume, two_series


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_each_bad_input_is_one_specific_line(name: str, tmp_path: Path) -> None:
    path, pattern = CORPUS[name](tmp_path)
    with pytest.raises(VolumeError, match=pattern) as info:
        open_volume(path)
    message = str(info.value)
    assert "\n" not in message
    for value in PATIENT.values():
        assert value not in message


def test_one_series_of_several_is_chosen_by_uid(tmp_path: Path) -> None:
    folder, _ = two_series(tmp_path)
    volume = open_volume(f"{folder}::1.2.826.0.1.3680043.8.498.2")
    assert volume.header["modality"] == "MR" and volume.header["series_description"] == "T2 axial"
    np.testing.assert_array_equal(volume.data, small_volume().data)
    with pytest.raises(VolumeError, match=r"no image series with UID 9\.9; the folder holds: 1\.2\.826"):
        open_volume(f"{folder}::9.9")
    assert split_series_path(f"{folder}::1.2") == (folder, "1.2")


def test_non_image_objects_and_other_files_are_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "exam"
    write_dicom_series(small_volume(), folder)
    rtstruct_only(folder)  # exam/rtstruct/RS.dcm, searched recursively
    (folder / "README.txt").write_text("exported by PACS")
    series, skipped = scan_folder(folder)
    assert len(series) == 1 and len(series[0].slices) == 6
    assert skipped == {"RTSTRUCT": 1, "not DICOM": 1}
    np.testing.assert_array_equal(open_volume(folder).data, small_volume().data)


def test_slices_are_sorted_by_position_not_by_name_or_instance(tmp_path: Path) -> None:
    folder = tmp_path / "shuffled"
    paths = write_dicom_series(small_volume(), folder)
    for k, path in enumerate(paths):  # names in reverse order of position
        path.rename(folder / f"X{len(paths) - k:03d}.dcm")
    np.testing.assert_array_equal(open_volume(folder).data, small_volume().data)
