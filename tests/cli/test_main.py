"""The command line: help, version, exit codes and one-line errors."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from napari_latent import __version__
from napari_latent.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed module as a user would, in a fresh process."""
    return subprocess.run([sys.executable, "-m", "napari_latent", *args], capture_output=True, text=True, timeout=300)


def test_help_and_version() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("phantoms", "info"):
        assert command in result.stdout
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"napari-latent {__version__}"


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["frobnicate"], ["phantoms"], ["phantoms", "x", "--subjects", "zero"],
                                  ["phantoms", "x", "--subjects", "0"], ["info"]])
def test_usage_errors_are_one_line_with_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "error:" in err


def test_info_on_a_real_scan(anatomical_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(anatomical_path)]) == 0
    out = capsys.readouterr().out
    assert "33 x 41 x 25" in out
    assert "LAS" in out
    assert "foreground_fraction" in out


def test_info_json_on_a_4d_frame(example4d_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["info", str(example4d_path), "--index", "1", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["shape"] == [128, 96, 24]
    assert facts["oblique"] is True
    assert facts["frame"] == 1


@pytest.mark.parametrize("setup, message", [
    ("missing", "no such file"),
    ("4d", "index from 0 to 1"),
    ("text", "not a valid NIfTI file"),
])
def test_info_user_errors_print_one_line_and_exit_2(setup: str, message: str, tmp_path: Path, example4d_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = {"missing": tmp_path / "missing.nii", "4d": example4d_path, "text": tmp_path / "bad.nii"}[setup]
    if setup == "text":
        path.write_text("hello")
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("napari-latent info: error:")
    assert message in err
    assert "Traceback" not in err


def test_phantoms_command_writes_a_cohort(tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    result = run_cli("phantoms", str(out), "--subjects", "4", "--size", "32", "--seed", "5", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "wrote 4 volumes" in result.stdout
    with open(out / "cohort.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    assert {r["group"] for r in rows} == {"healthy", "disease"}
    assert all((out / r["path"]).is_file() for r in rows)
    # a second run into the same folder refuses without --overwrite, in one line
    again = run_cli("phantoms", str(out), "--subjects", "4", "--size", "32", "--quiet")
    assert again.returncode == 2
    assert len(again.stderr.strip().splitlines()) == 1
    assert "not empty" in again.stderr


def test_phantoms_bad_size_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["phantoms", str(tmp_path / "x"), "--size", "4", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "size" in err


def test_a_negative_alpha_range_is_read_as_the_value_of_alphas() -> None:
    from napari_latent.cli import join_signed_values

    assert join_signed_values(["traverse", "m", "v", "--alphas", "-3:3:7", "--out", "o"]) == \
        ["traverse", "m", "v", "--alphas=-3:3:7", "--out", "o"]
    assert join_signed_values(["--alphas", "-.5,0,.5"]) == ["--alphas=-.5,0,.5"]
    # an option after --alphas stays an option (argparse then says the value is missing)
    assert join_signed_values(["--alphas", "--out", "o"]) == ["--alphas", "--out", "o"]
    assert join_signed_values(["--alphas=0:1:3"]) == ["--alphas=0:1:3"]
