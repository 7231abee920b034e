"""The command line for the analysis: traverse, eigen and demo (outputs, exit codes, the paper's pattern)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_latent.cli import analysis_commands, main
from napari_latent.latent.directions import Directions
from napari_latent.latent.traversal import Traversal, open_traversal
from napari_latent.models.checkpoint import load_model
from napari_latent.volumes import open_volume, save_volume

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def demo_model():
    return load_model("demo", device="cpu")


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_cohort: Path, demo_model) -> dict[str, Path]:
    """A volume, a directions file for the demo model, its codes and one traversal made by the CLI."""
    folder = tmp_path_factory.mktemp("analysis_cli")
    vectors = torch.eye(demo_model.latent_dim())[:3]
    directions = Directions(vectors, "z", demo_model.name, demo_model.fingerprint, "test", code_std=[0.5, 2.0, 1.0])
    dirs = directions.save(folder / "dirs.safetensors")
    volume = tiny_cohort / "sub-001.nii.gz"
    traversal = folder / "trav.nii.gz"
    assert main(["traverse", "demo", str(volume), "--directions", str(dirs), "--index", "1", "--alphas", "0:4:5",
                 "--units", "direction_std", "--out", str(traversal), "--device", "cpu", "--quiet"]) == 0
    return {"folder": folder, "dirs": dirs, "volume": volume, "traversal": traversal}


def _one_line_error(capsys: pytest.CaptureFixture[str], command: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"napari-latent {command}: error:") or lines[0].startswith("napari-latent"), err
    assert "Traceback" not in err
    return lines[0]


# -- traverse -----------------------------------------------------------------------------------

def test_traverse_writes_a_4d_nifti_with_the_source_affine_and_a_sidecar(files: dict[str, Path],
                                                                         demo_model) -> None:
    source = open_volume(files["volume"])
    image = nib.load(files["traversal"])
    assert image.shape == (*source.shape, 5)
    np.testing.assert_allclose(image.affine, source.affine)
    meta = json.loads(files["traversal"].with_name("trav.json").read_text())
    np.testing.assert_allclose(meta["alphas"], [0, 1, 2, 3, 4])
    assert meta["units"] == "direction_std" and meta["alpha_scale"] == pytest.approx(2.0)
    np.testing.assert_allclose(meta["latent_alphas"], [0, 2, 4, 6, 8])
    assert meta["model_fingerprint"] == demo_model.fingerprint and meta["direction"]["index"] == 1
    back = Traversal.load(files["traversal"])
    # Alpha 0 is the reconstruction; the change grows with alpha inside the modelled voxels.
    inside = back.modelled_mask()
    change = [float(np.abs(back.images[a] - back.images[0])[inside].mean()) for a in range(5)]
    assert change[0] == 0.0 and bool(np.all(np.diff(change) > 0))


def test_traverse_with_saved_codes_and_a_weighted_sum(files: dict[str, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    codes = tmp_path / "codes.safetensors"
    assert main(["invert", "demo", str(files["volume"]), "--out", str(codes), "--method", "encoder",
                 "--device", "cpu", "--quiet"]) == 0
    out = tmp_path / "sum.nii.gz"
    assert main(["traverse", "demo", str(files["volume"]), "--directions", str(files["dirs"]), "--codes", str(codes),
                 "--index", "0=1,2=1", "--alphas", "-1,0,1", "--units", "sd", "--out", str(out), "--quiet",
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "traversed" in printed and "units; one is" in printed and "latent units each" not in printed
    back = Traversal.load(out)
    np.testing.assert_allclose(back.direction.vector, np.r_[1.0, 0.0, 1.0, np.zeros(29)] / np.sqrt(2), atol=1e-6)
    assert back.units == "std" and back.baseline_index == 1 and back.direction.weights == {"test 1": 1.0,
                                                                                          "test 3": 1.0}


@pytest.mark.parametrize(("extra", "message"), [
    (["--alphas", "0:50"], "three parts"),
    (["--alphas", "0:a:15"], "not a number"),
    (["--alphas", "0:50:1.5"], "whole number"),
    (["--index", "7"], "out of range"),
    (["--index", "0=x"], "not a number"),
    (["--index", "nope"], "no direction named"),
])
def test_traverse_bad_input_is_one_line_exit_2_and_writes_nothing(files: dict[str, Path], tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str],
                                                                  extra: list[str], message: str) -> None:
    argv = ["traverse", "demo", str(files["volume"]), "--directions", str(files["dirs"]), "--index", "0",
            "--alphas", "0:1:3", "--out", str(tmp_path / "t.nii.gz"), "--quiet"]
    for option in extra[::2]:  # replace the default of the option given
        at = argv.index(option)
        del argv[at:at + 2]
    assert main([*argv, *extra]) == 2
    assert message in _one_line_error(capsys, "traverse")
    assert list(tmp_path.iterdir()) == []


def test_traverse_refuses_codes_of_another_volume_and_a_4d_volume(files: dict[str, Path], tiny_cohort: Path,
                                                                  tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    codes = tmp_path / "codes.safetensors"
    assert main(["invert", "demo", str(tiny_cohort / "sub-002.nii.gz"), "--out", str(codes), "--method", "encoder",
                 "--device", "cpu", "--quiet"]) == 0
    capsys.readouterr()
    out = tmp_path / "t.nii.gz"
    other = save_volume(np.zeros((20, 20, 20), np.float32), tmp_path / "other.nii.gz", affine=np.eye(4))
    assert main(["traverse", "demo", str(other), "--directions", str(files["dirs"]), "--index", "0", "--codes",
                 str(codes), "--alphas", "0:1:3", "--out", str(out), "--quiet"]) == 2
    assert "grid" in _one_line_error(capsys, "traverse")
    assert main(["traverse", "demo", str(files["traversal"]), "--directions", str(files["dirs"]), "--index", "0",
                 "--alphas", "0:1:3", "--out", str(out), "--quiet"]) == 2
    _one_line_error(capsys, "traverse")
    assert not out.exists()


# -- eigen --------------------------------------------------------------------------------------

def test_eigen_writes_maps_with_the_source_affine_eigen_json_and_a_report(files: dict[str, Path], tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eigen"
    assert main(["eigen", str(files["traversal"]), "--out", str(out), "--components", "3", "--differences", "all",
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "component 2" in printed and "report:" in printed
    source = open_volume(files["volume"])
    meta = json.loads((out / "eigen.json").read_text())
    for key in ("alphas", "eigenvalues", "explained_variance_ratio", "eigenvectors"):
        assert key in meta
    vectors = np.asarray(meta["eigenvectors"])
    assert vectors.shape == (5, 3) and len(meta["eigenvalues"]) == 5
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(3), atol=1e-8)
    np.testing.assert_allclose(np.sum(meta["explained_variance_ratio"]), 1.0, atol=1e-9)
    names = [f"component_{k}.nii.gz" for k in (1, 2, 3)] + [d["file"] for d in meta["differences"]]
    assert len(meta["differences"]) == 5  # every alpha
    for name in [*names, "mask.nii.gz"]:
        image = nib.load(out / name)
        assert image.shape == source.shape
        np.testing.assert_allclose(image.affine, source.affine)
    # The difference map of the last alpha is the plain subtraction from the baseline.
    traversal = Traversal.load(files["traversal"])
    last = np.asarray(nib.load(out / meta["differences"][-1]["file"]).dataobj)
    np.testing.assert_allclose(last, traversal.images[-1] - traversal.images[0], atol=1e-5)
    # The paper's pattern on a decoded traversal: eigenvector 1 flat, eigenvector 2 rising with alpha.
    assert np.sum(vectors[:, 0]) ** 2 / 5 > 0.95
    assert np.corrcoef(vectors[:, 1], meta["alphas"])[0, 1] > 0.95
    html = (out / "report" / "report.html").read_text()
    pictures = re.findall(r'<img src="([^"]+)"', html)
    assert len(pictures) == 4 and all((out / "report" / p).stat().st_size > 5000 for p in pictures)
    assert json.loads((out / "report" / "report.json").read_text())["format"] == "napari-latent-report"


def test_eigen_bad_input_is_one_line_exit_2_and_writes_nothing(files: dict[str, Path], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eigen"
    # A 3D file given as a traversal.
    assert main(["eigen", str(files["volume"]), "--out", str(out), "--quiet"]) == 2
    assert "not a traversal" in _one_line_error(capsys, "eigen")
    # A mask on another grid.
    mask = save_volume(np.ones((10, 10, 10), np.uint8), tmp_path / "mask.nii.gz", affine=np.eye(4), dtype=np.uint8)
    assert main(["eigen", str(files["traversal"]), "--out", str(out), "--mask", str(mask), "--quiet"]) == 2
    assert "grid" in _one_line_error(capsys, "eigen")
    # A missing file.
    assert main(["eigen", str(tmp_path / "none.nii.gz"), "--out", str(out), "--quiet"]) == 2
    assert "no such file" in _one_line_error(capsys, "eigen")
    assert not out.exists()


def test_eigen_with_a_mask_file_and_the_baseline_variant(files: dict[str, Path], tmp_path: Path) -> None:
    traversal = Traversal.load(files["traversal"])
    mask = save_volume(traversal.modelled_mask().astype(np.uint8), tmp_path / "mask.nii.gz", like=traversal.grid,
                       dtype=np.uint8)
    out = tmp_path / "eigen"
    assert main(["eigen", str(files["traversal"]), "--out", str(out), "--mask", str(mask), "--center", "baseline",
                 "--differences", "none", "--no-report", "--quiet"]) == 0
    meta = json.loads((out / "eigen.json").read_text())
    assert meta["mask"]["kind"] == "file" and meta["mask"]["voxels"] == int(traversal.modelled_mask().sum())
    assert meta["center"] == "baseline" and meta["differences"] == [] and not (out / "report").exists()
    # Without the anatomy, component 1 is the change, rising with alpha.
    assert np.corrcoef(np.asarray(meta["eigenvectors"])[:, 0], meta["alphas"])[0, 1] > 0.95



# -- the traversal store ---------------------------------------------------------------------------

def test_a_store_gives_the_nifti_traversals_voxels_and_eigen_numbers(files: dict[str, Path], tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "trav.zarr"
    assert main(["traverse", "demo", str(files["volume"]), "--directions", str(files["dirs"]), "--index", "1",
                 "--alphas", "0:4:5", "--units", "direction_std", "--out", str(store), "--device", "cpu",
                 "--quiet"]) == 0
    assert "saved to the store" in capsys.readouterr().out
    reference = Traversal.load(files["traversal"])
    stored = open_traversal(store)
    assert stored.shape == reference.images.shape
    for index in range(len(stored)):
        np.testing.assert_array_equal(stored.frame(index), reference.images[index])
    # eigen reads the store slab by slab; its numbers equal those of the NIfTI traversal.
    for name, source in (("from_store", store), ("from_nifti", files["traversal"])):
        assert main(["eigen", str(source), "--out", str(tmp_path / name), "--components", "3", "--no-report",
                     "--quiet"]) == 0
    ours, theirs = (json.loads((tmp_path / name / "eigen.json").read_text()) for name in ("from_store", "from_nifti"))
    np.testing.assert_allclose(ours["eigenvalues"], theirs["eigenvalues"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ours["eigenvectors"], theirs["eigenvectors"], atol=1e-6)
    assert len(ours["differences"]) == 1 and ours["differences"][0]["index"] == 4  # default: the extreme alpha
    component = [np.asarray(nib.load(tmp_path / name / "component_2.nii.gz").dataobj) for name in ("from_store",
                                                                                                  "from_nifti")]
    np.testing.assert_allclose(component[0], component[1], atol=1e-5)


def test_export_converts_a_store_to_a_4d_nifti_and_back(files: dict[str, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "converted.zarr"
    assert main(["export", str(files["traversal"]), "--out", str(store)]) == 0
    nifti = tmp_path / "again.nii.gz"
    assert main(["export", str(store), "--out", str(nifti)]) == 0
    assert "written to" in capsys.readouterr().out
    back = Traversal.load(nifti)
    np.testing.assert_array_equal(back.images, Traversal.load(files["traversal"]).images)
    np.testing.assert_allclose(nib.load(nifti).affine, open_volume(files["volume"]).affine)
    assert back.direction.index == 1 and back.units == "direction_std"


@pytest.mark.parametrize(("argv", "message"), [
    (["export", "{traversal}", "--out", "{tmp}/t.txt"], "must end in .zarr"),
    (["export", "{tmp}/missing.zarr", "--out", "{tmp}/t.nii.gz"], "no such file"),
    (["export", "{volume}", "--out", "{tmp}/t.zarr"], "not a traversal"),
    (["eigen", "{tmp}", "--out", "{tmp}/e"], "not a traversal"),
    (["traverse", "demo", "{volume}", "--directions", "{dirs}", "--index", "0", "--alphas", "0:1:3", "--out",
      "{tmp}/t.npy"], "must end in .zarr"),
])
def test_store_bad_input_is_one_line_exit_2_and_writes_nothing(files: dict[str, Path], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str], argv: list[str],
                                                              message: str) -> None:
    values = {"traversal": files["traversal"], "volume": files["volume"], "dirs": files["dirs"], "tmp": tmp_path}
    command = [part.format(**values) for part in argv]
    assert main([*command, "--quiet"] if command[0] != "export" else command) == 2
    assert message in _one_line_error(capsys, command[0])
    assert list(tmp_path.iterdir()) == []

# -- demo ---------------------------------------------------------------------------------------

def test_demo_runs_end_to_end_at_a_reduced_size_and_shows_the_papers_pattern(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    shown: dict[str, object] = {}
    monkeypatch.setattr(analysis_commands, "gui_show", lambda: lambda **kwargs: shown.update(kwargs))
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--subjects", "4", "--size", "32", "--alphas", "0:3:6", "--view",
                 "--quiet"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    report = out / "report" / "report.html"
    assert f"report: {report}" in printed
    html = report.read_text()
    assert all((report.parent / p).is_file() for p in re.findall(r'<img src="([^"]+)"', html))
    summary = json.loads((out / "demo.json").read_text())
    run = summary["supervised_run"]
    # The paper: eigenvector 1 a constant offset, eigenvector 2 almost linear in alpha.
    assert run["eigenvector_1_constant_fraction"] > 0.99
    assert run["eigenvector_2_alpha_correlation"] > 0.98
    assert summary["cohort"]["groups"] == {"healthy": 2, "disease": 2}
    # the baselines and the trust warnings: printed, in demo.json and at the top of the report
    assert f"supervised direction: {summary['supervised']['baseline_summary']}" in printed
    assert "chance" in summary["supervised"]["baseline_summary"]
    assert captured.err.count("warning: ") == len(summary["warnings"])
    kinds = [w["kind"] for w in summary["warnings"]]
    assert "chance" in kinds  # 4 subjects hold out 2: a direction cannot be shown above chance
    assert "Warnings: read before trusting this traversal" in html
    assert json.loads((report.parent / "report.json").read_text())["warnings"] == summary["warnings"]
    assert summary["units"] == "direction_std" and len(summary["alphas"]) == 6
    assert (out / "sefa" / "report" / "report.html").is_file()
    source = open_volume(out / "cohort" / f"{summary['traversed_subject']}.nii.gz")
    np.testing.assert_allclose(nib.load(out / "eigen/component_2.nii.gz").affine, source.affine)
    stored = open_traversal(out / "traversal.zarr")  # the demo streams its traversals into stores
    np.testing.assert_allclose(stored.grid.affine, source.affine)
    assert set(shown) == {"volume", "model", "traversal", "eigen"}
    assert shown["traversal"].shape == (6, *source.shape)
    np.testing.assert_array_equal(shown["traversal"].frame(5), stored.frame(5))


def test_demo_view_without_the_gui_launcher_explains_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(analysis_commands, "gui_show", lambda: None)
    assert main(["demo", "--out", str(tmp_path / "demo"), "--view", "--quiet"]) == 2
    assert "--view needs napari_latent.gui.show" in _one_line_error(capsys, "demo")
    assert not (tmp_path / "demo").exists()


def test_demo_bad_settings_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path / "d"), "--subjects", "3", "--quiet"]) == 2
    assert "at least 4 subjects" in _one_line_error(capsys, "demo")
    assert main(["demo", "--out", str(tmp_path / "d"), "--alphas", "0:1", "--quiet"]) == 2
    assert "three parts" in _one_line_error(capsys, "demo")
    assert not (tmp_path / "d").exists()
