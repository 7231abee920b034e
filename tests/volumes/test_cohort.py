"""Resolving DATA arguments: files, folders and cohort tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_latent.errors import DataError
from napari_latent.volumes import load_cohort, read_cohort_table, save_volume


def _write(folder: Path, name: str) -> Path:
    return save_volume(np.random.default_rng(0).random((4, 4, 4)).astype(np.float32), folder / name, affine=np.eye(4))


def test_folder_without_table_lists_nifti_files(tmp_path: Path) -> None:
    _write(tmp_path, "b.nii.gz")
    _write(tmp_path, "a.nii")
    (tmp_path / "notes.txt").write_text("x")
    cohort = load_cohort(tmp_path)
    assert [s.name for s in cohort.subjects] == ["a", "b"]
    assert cohort.table is None and cohort.groups == []


def test_single_file_is_a_cohort_of_one(tmp_path: Path) -> None:
    path = _write(tmp_path, "one.nii.gz")
    assert [s.path for s in load_cohort(path).subjects] == [path]


def test_table_gives_groups_and_numeric_factors(tiny_cohort: Path) -> None:
    cohort = load_cohort(tiny_cohort)
    assert len(cohort) == 8
    assert cohort.groups == ["disease", "healthy"]
    assert "ventricle_enlargement" in cohort.factor_names
    assert "labels" not in cohort.factor_names  # a text column is not a factor
    values = cohort.column("ventricle_enlargement")
    assert len(values) == 8 and all(np.isfinite(values))
    with pytest.raises(DataError, match="no numeric column 'age'"):
        cohort.column("age")
    assert cohort.fingerprint() == load_cohort(tiny_cohort).fingerprint()


@pytest.mark.parametrize("content, message", [
    ("", "no rows"),
    ("file,group\nx.nii,healthy\n", "needs a 'path' column"),
    ("path,group\nmissing.nii.gz,healthy\n", "do not exist: missing.nii.gz"),
    ("path,group\nnotes.txt,healthy\n", "not a DICOM series, MetaImage, MGH/MGZ, NIfTI or NRRD file"),
])
def test_bad_tables_are_clear_errors(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "notes.txt").write_text("x")
    table = tmp_path / "cohort.csv"
    table.write_text(content)
    with pytest.raises(DataError, match=message):
        read_cohort_table(table)


def test_bad_data_arguments(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or folder"):
        load_cohort(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="the folder is empty"):
        load_cohort(empty)
    (empty / "a.txt").write_text("x")
    with pytest.raises(DataError, match="holds no DICOM series, MetaImage, MGH/MGZ, NIfTI or NRRD files"):
        load_cohort(empty)
    with pytest.raises(DataError, match="no such labels file"):
        load_cohort(empty, labels=tmp_path / "labels.csv")
