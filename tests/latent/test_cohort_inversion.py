"""A cohort inverted into a folder: codes files, the index, reading them back, names, stops and errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_latent.errors import DataError, MismatchError, UserInputError
from napari_latent.latent.codes import LatentCodes
from napari_latent.latent.cohort_codes import iter_cohort_codes
from napari_latent.latent.cohort_inversion import (
    INDEX_NAME,
    codes_file_names,
    invert_cohort,
    load_cohort_codes,
    read_codes_index,
)
from napari_latent.latent.inversion import InversionSettings
from napari_latent.models.base import build_model
from napari_latent.progress import StopFlag, run_operation
from napari_latent.volumes import load_cohort

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("vae", image_size=32, latent_dim=8, base_channels=8, max_channels=32).eval()


def test_the_folder_holds_one_codes_file_per_volume_and_the_index(model, tiny_cohort: Path, tmp_path: Path) -> None:
    cohort = load_cohort(tiny_cohort)
    model.fingerprint = "f" * 16  # as a loaded model has
    result = invert_cohort(model, cohort, tmp_path / "codes", settings=InversionSettings(batch_size=30))
    names = [f"sub-00{k}.safetensors" for k in range(1, 9)]
    assert sorted(p.name for p in (tmp_path / "codes").iterdir()) == sorted([INDEX_NAME, *names])
    index = json.loads((tmp_path / "codes" / INDEX_NAME).read_text())
    assert index["format"] == "napari-latent-cohort-codes" and index["format_version"] == 1
    assert index["model"] == "vae" and index["space"] == "z" and index["method"] == "encoder"
    assert index["model_fingerprint"] == "f" * 16
    assert index["world_size"] == 1 and index["cohort"]["fingerprint"] == cohort.fingerprint()
    assert [v["codes"] for v in index["volumes"]] == names
    reference = run_operation(iter_cohort_codes(model, cohort, "z"))
    for entry, subject, codes in zip(index["volumes"], cohort.subjects, reference.per_subject, strict=True):
        assert entry["name"] == subject.name and entry["path"] == str(subject.path)
        assert entry["group"] == subject.group and entry["factors"] == pytest.approx(subject.factors)
        stored = LatentCodes.load(tmp_path / "codes" / entry["codes"])
        assert entry["slices"] == len(stored) == len(codes)
        assert entry["mean_mse"] == pytest.approx(float(stored.errors.mean()))
        torch.testing.assert_close(stored.codes, codes.codes, atol=1e-5, rtol=1e-5)
    assert result.complete and result.slices == sum(v["slices"] for v in index["volumes"])
    assert result.table()[0] == {"volume": "sub-001", "slices": index["volumes"][0]["slices"],
                                 "mean_mse": index["volumes"][0]["mean_mse"], "codes": "sub-001.safetensors"}
    # read back without the volumes: the same codes and labels
    loaded = load_cohort_codes(tmp_path / "codes", model)
    torch.testing.assert_close(loaded.codes, reference.codes, atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(loaded.subject, reference.subject)
    np.testing.assert_allclose(loaded.position, reference.position)
    assert loaded.cohort.factor_names == cohort.factor_names and list(loaded.groups()) == list(reference.groups())
    other = build_model("vae", image_size=32, latent_dim=8, base_channels=8, max_channels=32)
    other.fingerprint = "0" * 16
    with pytest.raises(MismatchError, match="another model"):
        load_cohort_codes(tmp_path / "codes", other)


def test_repeated_and_unsafe_names_get_unique_file_names(model, tiny_cohort: Path, tmp_path: Path) -> None:
    data = tmp_path / "nested"
    for folder in ("a", "b", "c d"):
        (data / folder).mkdir(parents=True)
        shutil.copy(tiny_cohort / "sub-001.nii.gz", data / folder / "scan.nii.gz")
    shutil.copy(tiny_cohort / "sub-002.nii.gz", data / "c d" / "my scan#1.nii.gz")
    shutil.copy(tiny_cohort / "sub-003.nii.gz", data / "index.nii.gz")
    cohort = load_cohort(data)
    names = codes_file_names(cohort)
    assert names == ["scan.safetensors", "scan_2.safetensors", "my_scan_1.safetensors", "scan_3.safetensors",
                     "index_2.safetensors"]
    result = invert_cohort(model, cohort, tmp_path / "out")
    assert [v["codes"] for v in result.volumes] == names
    assert [v["path"] for v in result.volumes] == [str(s.path) for s in cohort.subjects]


def test_a_stopped_run_writes_no_index_and_removes_a_stale_one(model, tiny_cohort: Path, tmp_path: Path) -> None:
    cohort = load_cohort(tiny_cohort)
    out = tmp_path / "codes"
    invert_cohort(model, cohort, out)
    assert (out / INDEX_NAME).is_file()
    stop = StopFlag()

    def progress(event):
        if event.message.startswith("inverted"):
            stop.request()

    result = invert_cohort(model, cohort, out, method="optimize", steps=3, settings=InversionSettings(batch_size=20),
                           progress=progress, stop=stop)
    assert not result.complete and 1 <= len(result.volumes) < len(cohort)
    assert not (out / INDEX_NAME).exists()  # the earlier run's index is gone, and no partial one was written
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files
    with pytest.raises(DataError, match=r"no index\.json"):
        load_cohort_codes(out)


def test_bad_folders_and_indexes_are_clear_errors(model, tiny_cohort: Path, tmp_path: Path) -> None:
    cohort = load_cohort(tiny_cohort)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserInputError, match="is a file"):
        invert_cohort(model, cohort, tmp_path / "file")
    with pytest.raises(DataError, match="no such folder"):
        read_codes_index(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / INDEX_NAME).write_text('{"format": "something else"}')
    with pytest.raises(DataError, match="not a napari-latent cohort codes index"):
        read_codes_index(tmp_path / "bad")
    (tmp_path / "bad" / INDEX_NAME).write_text("{not json")
    with pytest.raises(DataError, match="not a readable cohort codes index"):
        read_codes_index(tmp_path / "bad")
    out = tmp_path / "gone"
    invert_cohort(model, load_cohort(tiny_cohort / "sub-001.nii.gz"), out)
    (out / "sub-001.safetensors").unlink()
    with pytest.raises(UserInputError, match="no such codes file"):
        load_cohort_codes(out)
