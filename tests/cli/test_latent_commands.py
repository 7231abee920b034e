"""The ``discover`` command: its table, its JSON report, and one-line errors for bad input."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from napari_latent.cli import main
from napari_latent.latent.directions import Directions
from tests._plugin_method import plugin_method_fixture  # noqa: F401 (the plugin_method fixture)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["discover", *argv, "--quiet", "--device", "cpu"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def rewrite_groups(source: Path, target: Path, keep) -> Path:
    """A copy of a cohort folder whose cohort.csv rows are filtered/changed by ``keep(rows)``."""
    shutil.copytree(source, target)
    rows = list(csv.DictReader((source / "cohort.csv").open()))
    rows = keep(rows)
    with (target / "cohort.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return target


def test_sefa_prints_its_table_and_writes_directions_and_report(capsys, tmp_path: Path) -> None:
    out, report = tmp_path / "dirs.safetensors", tmp_path / "report.json"
    code, stdout, _ = run(capsys, "demo", "--method", "sefa", "--count", "4", "--out", str(out), "--report",
                          str(report))
    assert code == 0
    lines = stdout.splitlines()
    assert lines[0].startswith("4 sefa directions in space z of vae saved to")
    assert lines[1].split() == ["index", "name", "code_std", "eigenvalue"]
    assert [line.split()[:3] for line in lines[2:6]] == [[str(i), "sefa", str(i + 1)] for i in range(4)]
    found = Directions.load(out)
    assert len(found) == 4 and found.method == "sefa"
    data = json.loads(report.read_text())
    assert data["method"] == "sefa" and len(data["directions"]) == 4 and "accuracy" not in data
    assert data["directions"][0]["eigenvalue"] == pytest.approx(found.scores["eigenvalue"][0])


@pytest.mark.slow
def test_supervised_report_has_the_held_out_accuracy(capsys, tmp_path: Path, tiny_cohort: Path) -> None:
    out, report = tmp_path / "sup.safetensors", tmp_path / "sup.json"
    code, stdout, stderr = run(capsys, "demo", "--method", "supervised", "--data", str(tiny_cohort), "--out",
                               str(out), "--report", str(report), "--no-evaluate", "--slices", "0.2:0.8")
    assert code == 0
    data = json.loads(report.read_text())
    assert data["info"]["slices"] == [0.2, 0.8] and data["settings"]["slices"] == [0.2, 0.8]
    assert 0.0 <= data["accuracy"] <= 1.0
    assert data["accuracy"] == data["directions"][0]["accuracy"]
    assert f"held-out accuracy: {data['accuracy']:.3f}" in stdout
    assert "healthy → disease (svm)" in stdout
    assert set(data["info"]["validation_subjects"]).isdisjoint(data["info"]["train_subjects"])
    assert Directions.load(out).names[0] == "healthy → disease (svm)"
    # the baselines of the same split: printed, in the report and in the saved file's metadata
    row = data["directions"][0]
    assert f"chance {row['chance_accuracy']:.3f} (95th percentile {row['chance_accuracy_95']:.3f}" in stdout
    pixel = data["info"]["baselines"]["pixel"]
    assert f"pixel logistic regression {pixel['accuracy']:.3f}" in stdout
    assert Directions.load(out).info["baselines"]["pixel"]["accuracy"] == pixel["accuracy"]
    # the factor readout: every varying phantom factor, None with 2 held-out subjects (too few for an R²)
    readout = data["info"]["factor_readout"]
    assert "ventricle_enlargement" in readout and readout["ventricle_enlargement"]["r2"] == [None, None]
    assert "factor readout" not in stdout
    # 8 subjects hold out 2: nothing is above chance, and the command says so
    kinds = [w["kind"] for w in data["warnings"]]
    assert ("chance" in kinds) == (row["accuracy"] <= row["chance_accuracy_95"])
    for warning in data["warnings"]:
        assert f"warning: {warning['message']}" in stderr


@pytest.mark.slow
def test_labelled_data_adds_the_evaluation(capsys, tmp_path: Path, tiny_cohort: Path) -> None:
    report = tmp_path / "eval.json"
    code, stdout, _ = run(capsys, "demo", "--method", "sefa", "--count", "3", "--data", str(tiny_cohort), "--out",
                          str(tmp_path / "d.safetensors"), "--report", str(report))
    assert code == 0
    evaluation = json.loads(report.read_text())["evaluation"]
    assert len(evaluation["effects"]) == 3 and len(evaluation["effects"][0]) == len(evaluation["factors"])
    assert "ventricle_enlargement" in evaluation["factors"] and "image_angle_deg" in evaluation["factors"]
    assert all(0 <= evaluation["best_direction"][f] < 3 for f in evaluation["factors"])
    assert "evaluation against the cohort's factors" in stdout and "ventricle_enlargement" in stdout


@pytest.fixture(scope="module")
def bad_cohorts(tiny_cohort: Path, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad")
    one_group = rewrite_groups(tiny_cohort, root / "one", lambda rows: [{**r, "group": "healthy"} for r in rows])

    def few(rows):
        return [r for r in rows if r["group"] == "healthy"][:3] + [r for r in rows if r["group"] == "disease"][:1]

    too_few = rewrite_groups(tiny_cohort, root / "few", few)
    labels = root / "labels.csv"
    rows = list(csv.DictReader((tiny_cohort / "cohort.csv").open()))
    with labels.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "weight"])
        writer.writerows([[r["path"], i] for i, r in enumerate(rows)])
    return {"one": one_group, "few": too_few, "labels": labels}


@pytest.mark.parametrize("case, argv, message", [
    ("labels without the column", ["--method", "supervised", "--data", "{cohort}", "--labels", "{labels}",
                                   "--column", "age"], "no numeric column 'age'"),
    ("labels without groups", ["--method", "supervised", "--data", "{cohort}", "--labels", "{labels}"],
     "needs a 'group' for every volume"),
    ("one group only", ["--method", "supervised", "--data", "{one}"], "exactly two groups, found 1"),
    ("too few subjects", ["--method", "supervised", "--data", "{few}"], "too few subjects"),
    ("supervised without data", ["--method", "supervised"], "needs --data"),
    ("a bad slice band", ["--method", "supervised", "--data", "{cohort}", "--slices", "0.7:0.2"], "0 <= LOW < HIGH"),
    ("a target without ridge", ["--method", "supervised", "--data", "{cohort}", "--target", "head_size"],
     "use classifier ridge"),
    ("a target the cohort lacks", ["--method", "supervised", "--data", "{cohort}", "--classifier", "ridge",
                                   "--target", "age"], "no numeric column 'age'"),
    ("slices for another method", ["--method", "sefa", "--slices", "all"], "has no --slices setting"),
    ("space the model lacks", ["--method", "sefa", "--space", "w"], "has no latent space 'w'"),
    ("K > dim (sefa)", ["--method", "sefa", "--count", "33"], "only 32 dimensions"),
    ("K > dim (pca)", ["--method", "pca", "--count", "33"], "only 32 dimensions"),
    ("K > dim (voynov)", ["--method", "voynov", "--count", "33"], "only 32 dimensions"),
    ("K > dim (axes)", ["--method", "axes", "--count", "33"], "only 32 dimensions"),
    ("K > dim (jacobian)", ["--method", "jacobian", "--count", "33"], "only 32 dimensions"),
    ("unknown setting", ["--method", "sefa", "--set", "deformator=proj"], "has no setting(s) deformator"),
    ("setting the method lacks", ["--method", "sefa", "--steps", "10"], "has no --steps setting"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(capsys, tmp_path: Path, tiny_cohort: Path, bad_cohorts,
                                                            case: str, argv: list[str], message: str) -> None:
    out, report = tmp_path / "dirs.safetensors", tmp_path / "report.json"
    filled = [a.format(cohort=tiny_cohort, labels=bad_cohorts["labels"], one=bad_cohorts["one"],
                       few=bad_cohorts["few"]) for a in argv]
    code, stdout, stderr = run(capsys, "demo", *filled, "--out", str(out), "--report", str(report))
    assert code == 2, (case, stdout, stderr)
    assert stderr.count("\n") == 1 and stderr.startswith("napari-latent discover: error: "), stderr
    assert message in stderr and "Traceback" not in stderr
    assert not out.exists() and not report.exists() and not list(tmp_path.iterdir())


def test_bad_output_names_are_refused_before_any_work(capsys, tmp_path: Path) -> None:
    code, _, stderr = run(capsys, "demo", "--method", "sefa", "--out", str(tmp_path / "d.pt"))
    assert code == 2 and "--out must end in .safetensors" in stderr
    code, _, stderr = run(capsys, "demo", "--method", "sefa", "--out", str(tmp_path / "d.safetensors"), "--report",
                          str(tmp_path / "r.txt"))
    assert code == 2 and "--report must end in .json" in stderr and not list(tmp_path.iterdir())


@pytest.mark.parametrize("argv, message", [
    (["--method", "sefa", "--count", "abc"], "method 'sefa': count must be a whole number, got 'abc'"),
    (["--method", "sefa", "--set", "count=abc"], "method 'sefa': count must be a whole number, got 'abc'"),
    (["--method", "sefa", "--count", "0"], "method 'sefa': count must be at least 1, got 0"),
    (["--method", "sefa", "--layers", "0-x"], "method 'sefa': layers must be whole numbers such as 0-3,6"),
    (["--method", "voynov", "--set", "deformator=fc"], "method 'voynov': unknown deformator 'fc'; use one of"),
    (["--method", "voynov", "--deformator", "fc"], "method 'voynov': unknown deformator 'fc'; use one of"),
    (["--method", "voynov", "--batch-size", "1"], "method 'voynov': batch_size must be at least 2, got 1"),
    (["--method", "voynov", "--set", "lr=fast"], "method 'voynov': lr must be a number, got 'fast'"),
    (["--method", "voynov", "--set", "bogus=1"], "method 'voynov' has no setting(s) bogus; it accepts"),
    (["--method", "supervised", "--set", "condition=x", "--data", "{cohort}"], "condition can only be given from "
     "Python"),
    (["--method", "pca", "--set", "data=somewhere"], "--set data=...: give the data with --data"),
    (["--method", "pca", "--deformator", "proj"], "method 'pca' has no --deformator setting"),
    (["--method", "sefa", "--set", "count"], "--set expects KEY=VALUE"),
])
def test_settings_are_checked_against_the_method_description(capsys, tmp_path: Path, tiny_cohort: Path,
                                                             argv: list[str], message: str) -> None:
    out = tmp_path / "dirs.safetensors"
    code, stdout, stderr = run(capsys, "demo", *[a.format(cohort=tiny_cohort) for a in argv], "--out", str(out))
    assert code == 2, (stdout, stderr)
    assert stderr.count("\n") == 1 and stderr.startswith("napari-latent discover: error: "), stderr
    assert message in stderr and "Traceback" not in stderr
    assert not list(tmp_path.iterdir())


def test_generated_options_reach_the_method(capsys, tmp_path: Path) -> None:
    out, report = tmp_path / "pca.safetensors", tmp_path / "pca.json"
    code, _, stderr = run(capsys, "demo", "--method", "pca", "--count", "3", "--samples", "600", "--set",
                          "seed=4", "--batch-size", "256", "--out", str(out), "--report", str(report))
    assert code == 0, stderr
    settings = json.loads(report.read_text())["settings"]
    assert settings == {"count": 3, "samples": 600, "seed": 4, "batch_size": 256, "data": None}
    assert Directions.load(out).info["samples"] == 600


def test_help_lists_every_method_with_its_settings(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["discover", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "methods (--method NAME):" in text
    for name in ("axes", "jacobian", "pca", "sefa", "supervised", "voynov"):
        assert f"{name}: " in text
    assert "--deformator {linear,orthonormal,proj}" in text and "--classifier {svm,logistic,lda,ridge}" in text
    assert "--target TEXT" in text
    assert "--slices auto|all|LOW:HIGH" in text and "--layers N,N-M" in text and "--eval-samples N" in text
    assert "supervised: inversion steps where volumes are optimised (default 100); voynov: training steps" in text
    assert "steps=2000" in text and "data: required --data" in text
    assert "--condition" not in text  # a Python object: not on the command line


def test_a_plugin_method_gets_its_options(capsys, tmp_path: Path, plugin_method: str) -> None:
    out, report = tmp_path / "r.safetensors", tmp_path / "r.json"
    code, stdout, stderr = run(capsys, "demo", "--method", plugin_method, "--count", "2", "--seed", "3",
                               "--no-normalise", "--out", str(out), "--report", str(report))
    assert code == 0, stderr
    assert json.loads(report.read_text())["settings"] == {"count": 2, "seed": 3, "normalise": False}
    assert stdout.startswith(f"2 {plugin_method} directions in space z of vae")
    code, _, stderr = run(capsys, "demo", "--method", "sefa", "--normalise", "--out", str(out))
    assert code == 2 and "method 'sefa' has no --normalise setting" in stderr


@pytest.mark.slow
def test_codes_for_the_method_use_its_inversion_settings(capsys, tmp_path: Path, tiny_cohort: Path,
                                                         monkeypatch) -> None:
    from napari_latent.latent import cohort_codes

    calls: list[dict] = []
    original = cohort_codes.iter_cohort_codes

    def recording(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(cohort_codes, "iter_cohort_codes", recording)
    out, report = tmp_path / "sup.safetensors", tmp_path / "sup.json"
    code, _, stderr = run(capsys, "demo", "--method", "supervised", "--data", str(tiny_cohort), "--inversion",
                          "encoder", "--steps", "7", "--slices", "all", "--no-evaluate", "--out", str(out),
                          "--report", str(report))
    assert code == 0, stderr
    assert calls == [{"method": "encoder", "steps": 7}]
    assert json.loads(report.read_text())["settings"]["inversion"] == "encoder"
    assert Directions.load(out).method == "supervised"
