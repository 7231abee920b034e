"""``invert MODEL DATA --out DIR``: folders, BIDS roots and cohort tables; bad input; atomic writes;
``discover --codes DIR``; two gloo processes under torchrun."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_latent.cli import main
from napari_latent.latent.codes import LatentCodes
from napari_latent.latent.directions import Directions

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def invert(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["invert", "demo", *argv, "--quiet", "--device", "cpu"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def index_of(folder: Path) -> dict:
    return json.loads((folder / "index.json").read_text())


def test_a_folder_gives_a_codes_file_per_volume_an_index_and_a_table(capsys, tiny_cohort: Path,
                                                                     tmp_path: Path) -> None:
    out = tmp_path / "codes"
    code, stdout, stderr = invert(capsys, str(tiny_cohort), "--out", str(out), "--batch-size", "40")
    assert code == 0, stderr
    index = index_of(out)
    assert [v["name"] for v in index["volumes"]] == [f"sub-00{k}" for k in range(1, 9)]
    assert index["settings"] == {"seed": 0} and index["method"] == "encoder"
    lines = stdout.splitlines()
    assert lines[0].split() == ["volume", "slices", "mean_mse", "codes"] and lines[1].startswith("sub-001")
    assert len(lines) == 10 and lines[-1].startswith("inverted 8 volumes (")
    assert f"index {out / 'index.json'}" in lines[-1]
    # each file is exactly what single-volume invert writes, to float rounding
    single = tmp_path / "one.safetensors"
    assert main(["invert", "demo", str(tiny_cohort / "sub-003.nii.gz"), "--out", str(single), "--quiet",
                 "--device", "cpu"]) == 0
    alone, batched = LatentCodes.load(single), LatentCodes.load(out / "sub-003.safetensors")
    torch.testing.assert_close(batched.codes, alone.codes, atol=1e-5, rtol=1e-5)
    assert batched.source == alone.source and batched.geometry.to_json() == alone.geometry.to_json()


def test_a_cohort_table_chooses_the_volumes(capsys, tiny_cohort: Path, tmp_path: Path) -> None:
    table = tmp_path / "three.csv"
    table.write_text("path,group,age\nsub-002.nii.gz,a,50\nsub-005.nii.gz,b,60\nsub-007.nii.gz,a,\n")
    code, _, stderr = invert(capsys, str(tiny_cohort), "--labels", str(table), "--out", str(tmp_path / "by_labels"))
    assert code == 0, stderr
    index = index_of(tmp_path / "by_labels")
    assert [v["name"] for v in index["volumes"]] == ["sub-002", "sub-005", "sub-007"]
    assert [v["group"] for v in index["volumes"]] == ["a", "b", "a"]
    assert index["volumes"][1]["factors"] == {"age": 60.0} and index["volumes"][2]["factors"] == {"age": None}
    copy = tmp_path / "cohort"
    shutil.copytree(tiny_cohort, copy)
    shutil.copy(table, copy / "chosen.csv")
    code, _, stderr = invert(capsys, str(copy / "chosen.csv"), "--out", str(tmp_path / "by_csv"))
    assert code == 0, stderr
    assert [v["name"] for v in index_of(tmp_path / "by_csv")["volumes"]] == ["sub-002", "sub-005", "sub-007"]


def test_a_bids_root_with_its_suffix(capsys, tiny_cohort: Path, tmp_path: Path) -> None:
    root = tmp_path / "bids"
    layout = {"sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz": "sub-001", "sub-01/ses-2/anat/sub-01_ses-2_T1w.nii.gz":
              "sub-002", "sub-02/anat/sub-02_T1w.nii.gz": "sub-003", "sub-02/anat/sub-02_T2w.nii.gz": "sub-004"}
    for name, source in layout.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tiny_cohort / f"{source}.nii.gz", root / name)
    (root / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.9.0"}')
    (root / "participants.tsv").write_text("participant_id\tgroup\nsub-01\tpatient\nsub-02\tcontrol\n")
    code, _, stderr = invert(capsys, str(root), "--out", str(tmp_path / "t1"))
    assert code == 0, stderr
    volumes = index_of(tmp_path / "t1")["volumes"]
    assert [v["codes"] for v in volumes] == ["sub-01_ses-1_T1w.safetensors", "sub-01_ses-2_T1w.safetensors",
                                            "sub-02_T1w.safetensors"]
    assert [v["subject"] for v in volumes] == ["sub-01", "sub-01", "sub-02"]
    assert [v["group"] for v in volumes] == ["patient", "patient", "control"]
    code, _, stderr = invert(capsys, str(root), "--bids-suffix", "T2w", "--out", str(tmp_path / "t2"))
    assert code == 0, stderr
    assert [v["name"] for v in index_of(tmp_path / "t2")["volumes"]] == ["sub-02_T2w"]


def _bad_inputs(root: Path, cohort: Path) -> dict[str, tuple[list[str], str]]:
    (root / "empty").mkdir(parents=True)
    (root / "notes.txt").write_text("not a volume")
    (root / "texts").mkdir()
    (root / "texts" / "readme.md").write_text("no volumes here")
    (root / "broken").mkdir()
    (root / "broken" / "sub-000.nii.gz").write_bytes(b"not gzip at all")
    shutil.copy(cohort / "sub-001.nii.gz", root / "broken" / "sub-001.nii.gz")
    (root / "a_file").write_text("in the way")
    return {
        "empty folder": (["{root}/empty", "--out", "{out}"], "the folder is empty"),
        "a non-volume file": (["{root}/notes.txt", "--out", "{out}.safetensors"], "notes.txt"),
        "a folder without volumes": (["{root}/texts", "--out", "{out}"], "holds no"),
        "a broken first volume": (["{root}/broken", "--out", "{out}"], "sub-000.nii.gz"),
        "an output that is a file": (["{cohort}", "--out", "{root}/a_file"], "is a file"),
        "a codes file name for a cohort": (["{cohort}", "--out", "{out}.safetensors"], "--out is a folder"),
        "a reconstruction of a cohort": (["{cohort}", "--out", "{out}", "--reconstruction", "{out}.nii.gz"],
                                         "--reconstruction applies to a single VOLUME"),
        "a missing table": (["{root}/nowhere.csv", "--out", "{out}"], "no such cohort table"),
        "cohort options for one volume": (["{cohort}/sub-001.nii.gz", "--out", "{out}.safetensors",
                                           "--open-volumes", "2"], "--open-volumes applies to a cohort DATA"),
    }


CASES = ["empty folder", "a non-volume file", "a folder without volumes", "a broken first volume",
         "an output that is a file", "a codes file name for a cohort", "a reconstruction of a cohort",
         "a missing table", "cohort options for one volume"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2_and_nothing_written(capsys, tiny_cohort: Path, tmp_path: Path,
                                                          case: str) -> None:
    root = tmp_path / "in"
    argv, message = _bad_inputs(root, tiny_cohort)[case]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    out = tmp_path / "out"
    code, stdout, stderr = invert(capsys, *[a.format(root=root, cohort=tiny_cohort, out=out) for a in argv])
    assert code == 2, (case, stdout, stderr)
    assert stderr.count("\n") == 1 and stderr.startswith("napari-latent invert: error: "), stderr
    assert message in stderr and "Traceback" not in stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert (root / "a_file").read_text() == "in the way"


def test_an_interrupted_run_leaves_whole_codes_files_and_no_index(capsys, tiny_cohort: Path, tmp_path: Path,
                                                                  monkeypatch) -> None:
    out = tmp_path / "codes"
    assert invert(capsys, str(tiny_cohort), "--out", str(out))[0] == 0
    assert (out / "index.json").is_file()
    import napari_latent._atomic as atomic

    renames = []
    real_replace = os.replace

    def interrupted(source, target):  # Ctrl-C between writing the third file and renaming it into place
        renames.append(Path(target).name)
        if len(renames) == 3:
            raise KeyboardInterrupt
        real_replace(source, target)

    monkeypatch.setattr(atomic.os, "replace", interrupted)
    code, _, stderr = invert(capsys, str(tiny_cohort), "--out", str(out), "--method", "optimize", "--steps", "1")
    monkeypatch.undo()
    assert code == 130 and "interrupted" in stderr
    assert renames == ["sub-001.safetensors", "sub-002.safetensors", "sub-003.safetensors"]
    assert not (out / "index.json").exists()  # the first run's index went when the second started
    assert sorted(p.name for p in out.iterdir()) == [f"sub-00{k}.safetensors" for k in range(1, 9)]  # no temp file
    assert [LatentCodes.load(out / f"sub-00{k}.safetensors").method for k in range(1, 9)] == \
        ["optimize", "optimize"] + ["encoder"] * 6  # new files whole, the rest still the first run's


def test_discover_reads_precomputed_codes(capsys, tiny_cohort: Path, tmp_path: Path) -> None:
    codes = tmp_path / "codes"
    assert invert(capsys, str(tiny_cohort), "--out", str(codes))[0] == 0
    common = ["--method", "pca", "--count", "4", "--no-evaluate", "--quiet", "--device", "cpu"]
    assert main(["discover", "demo", "--codes", str(codes), "--out", str(tmp_path / "a.safetensors"), *common]) == 0
    assert main(["discover", "demo", "--data", str(tiny_cohort), "--out", str(tmp_path / "b.safetensors"),
                 *common]) == 0
    a, b = Directions.load(tmp_path / "a.safetensors"), Directions.load(tmp_path / "b.safetensors")
    assert a.info["samples"] == b.info["samples"] and a.info["subjects"] == 8
    np.testing.assert_allclose(np.abs((a.vectors * b.vectors).sum(1).numpy()), 1.0, atol=1e-4)
    capsys.readouterr()
    for argv, message in (
        (["--method", "pca", "--codes", str(codes), "--data", str(tiny_cohort)], "not both"),
        (["--method", "axes", "--codes", str(codes)], "reads the cohort's images: give --data"),
        (["--method", "pca", "--codes", str(tmp_path)], "no index.json"),
    ):
        assert main(["discover", "demo", *argv, "--out", str(tmp_path / "c.safetensors"), "--quiet"]) == 2
        stderr = capsys.readouterr().err
        assert stderr.count("\n") == 1 and message in stderr, stderr
    assert not (tmp_path / "c.safetensors").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_under_torchrun_share_the_cohort(capsys, tiny_cohort: Path, tmp_path: Path) -> None:
    # the encoder: what a rank computes for a volume does not depend on the rank (the batching tests in
    # tests/latent cover optimisation); the time here is mostly three Python processes importing torch
    out = tmp_path / "ranks"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(_free_port()), "-m", "napari_latent", "invert", "demo", str(tiny_cohort), "--out", str(out),
               "--device", "cpu", "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("inverted 8 volumes") == 1 and "by 2 processes" in result.stdout  # rank 0 only
    index = index_of(out)
    assert index["world_size"] == 2 and len(index["volumes"]) == 8
    assert code_files(out) == [f"sub-00{k}.safetensors" for k in range(1, 9)]
    single = tmp_path / "single"
    assert invert(capsys, str(tiny_cohort), "--out", str(single))[0] == 0
    for a, b in zip(index["volumes"], index_of(single)["volumes"], strict=True):
        assert (a["name"], a["slices"]) == (b["name"], b["slices"])
        assert a["mean_mse"] == pytest.approx(b["mean_mse"], rel=1e-4)
        torch.testing.assert_close(LatentCodes.load(out / a["codes"]).codes,
                                   LatentCodes.load(single / b["codes"]).codes, atol=1e-5, rtol=1e-4)


def code_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.safetensors"))
