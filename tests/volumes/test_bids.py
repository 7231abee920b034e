"""BIDS datasets as DATA: subjects, sessions and runs from sub-*/[ses-*/]anat/, labels from
participants.tsv, the split keeping a participant's sessions together; the recursive folder scan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_latent.errors import DataError
from napari_latent.training.data import split_subjects
from napari_latent.volumes import Volume, load_cohort, save_volume
from napari_latent.volumes.bids import is_bids_root, parse_entities

from ._series import write_dicom_series


def _volume(seed: int) -> Volume:
    data = np.random.default_rng(seed).random((6, 6, 6)).astype(np.float32)
    return Volume(data, np.eye(4), None, {}, "v")


def make_bids(root: Path, participants: str | None = None) -> Path:
    layout = ["sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz", "sub-01/ses-2/anat/sub-01_ses-2_T1w.nii.gz",
              "sub-01/ses-2/anat/sub-01_ses-2_T2w.nii.gz", "sub-02/anat/sub-02_run-1_T1w.nii.gz",
              "sub-02/anat/sub-02_run-2_T1w.nii.gz", "sub-03/ses-1/anat/sub-03_ses-1_acq-mprage_T1w.nii.gz",
              "derivatives/fmriprep/sub-01/anat/sub-01_desc-preproc_T1w.nii.gz"]
    for k, name in enumerate(layout):
        save_volume(_volume(k), root / name)
    (root / "sub-01/ses-1/anat/sub-01_ses-1_T1w.json").write_text("{}")
    (root / "dataset_description.json").write_text('{"Name": "test", "BIDSVersion": "1.9.0"}')
    if participants is None:
        participants = "participant_id\tgroup\tage\tsite\nsub-01\tpatient\t61\tA\nsub-02\tcontrol\tn/a\tB\n" \
                       "sub-03\tcontrol\t70\tA\n"
    (root / "participants.tsv").write_text(participants)
    return root


def test_a_bids_root_gives_subjects_sessions_runs_and_labels(tmp_path: Path) -> None:
    root = make_bids(tmp_path / "ds")
    assert is_bids_root(root)
    cohort = load_cohort(root)
    assert [s.name for s in cohort.subjects] == ["sub-01_ses-1_T1w", "sub-01_ses-2_T1w", "sub-02_run-1_T1w",
                                                 "sub-02_run-2_T1w", "sub-03_ses-1_acq-mprage_T1w"]
    assert [s.subject_id for s in cohort.subjects] == ["sub-01", "sub-01", "sub-02", "sub-02", "sub-03"]
    assert [s.session for s in cohort.subjects] == ["ses-1", "ses-2", None, None, "ses-1"]
    assert cohort.subjects[4].entities == {"sub": "03", "ses": "1", "acq": "mprage"}
    assert [s.group for s in cohort.subjects] == ["patient", "patient", "control", "control", "control"]
    assert cohort.factor_names == ["age"]  # 'site' is not numeric
    assert np.isnan(cohort.column("age")[2]) and cohort.column("age")[0] == 61.0
    assert cohort.participant_groups() == [0, 0, 1, 1, 2]
    t2 = load_cohort(root, bids_suffix="T2w")
    assert [s.name for s in t2.subjects] == ["sub-01_ses-2_T2w"]


def test_bad_bids_datasets_are_clear_errors(tmp_path: Path) -> None:
    root = make_bids(tmp_path / "ds", "participant_id\tgroup\nsub-01\tpatient\n")
    with pytest.raises(DataError, match=r"participants\.tsv: 2 subject\(s\) with volumes have no row: sub-02, sub-03"):
        load_cohort(root)
    with pytest.raises(DataError, match=r"without FLAIR volumes .*suffixes found: T1w, T2w; choose one with "
                                        r"--bids-suffix"):
        load_cohort(make_bids(tmp_path / "ds2"), bids_suffix="FLAIR")
    assert parse_entities("sub-01_ses-2_T1w.nii.gz") == ({"sub": "01", "ses": "2"}, "T1w")
    assert parse_entities("notes.txt") is None and parse_entities("ses-1_sub-01_T1w.nii") is None


def test_the_split_keeps_every_session_of_a_participant_together(tmp_path: Path) -> None:
    cohort = load_cohort(make_bids(tmp_path / "ds"))
    groups = cohort.participant_groups()
    for seed in range(30):
        train, val = split_subjects(len(cohort), 0.34, seed, groups)
        assert sorted(train + val) == list(range(len(cohort))) and val and train
        for pid in {s.subject_id for s in cohort.subjects}:
            sides = {k in val for k, s in enumerate(cohort.subjects) if s.subject_id == pid}
            assert len(sides) == 1
    # without participants the split is the one it always was
    assert split_subjects(10, 0.2, 3) == split_subjects(10, 0.2, 3, None)


def test_folders_are_searched_recursively_and_a_series_folder_is_one_volume(tmp_path: Path) -> None:
    save_volume(_volume(0), tmp_path / "site-a" / "p1.nii.gz")
    save_volume(_volume(1), tmp_path / "site-b" / "deep" / "p2.nii.gz")
    save_volume(_volume(2), tmp_path / ".hidden" / "p3.nii.gz")
    write_dicom_series(_volume(3), tmp_path / "site-b" / "p4")
    cohort = load_cohort(tmp_path)
    assert [s.name for s in cohort.subjects] == ["p1", "p2", "p4"]
    assert len(cohort.fingerprint()) == 16


def test_a_cohort_table_subject_column_groups_sessions(tmp_path: Path) -> None:
    for k in range(4):
        save_volume(_volume(k), tmp_path / f"v{k}.nii.gz")
    (tmp_path / "cohort.csv").write_text("path,subject,group,age\nv0.nii.gz,a,x,1\nv1.nii.gz,a,x,2\n"
                                         "v2.nii.gz,b,y,3\nv3.nii.gz,c,y,4\n")
    cohort = load_cohort(tmp_path)
    assert cohort.participant_groups() == [0, 0, 1, 2] and cohort.factor_names == ["age"]
