"""The slice cache on the command line: train --cache-dir/--no-cache/--workers, cache info and cache clear."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from napari_latent.cli import main

TINY = ["--size", "32", "--latent-dim", "8", "--set", "base_channels=8", "--set", "max_channels=32",
        "--batch-size", "32", "--device", "cpu", "--quiet", "--epochs", "1", "--no-augment"]


def test_train_fills_the_cache_that_info_shows_and_clear_empties(tiny_cohort: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    assert main(["cache", "info", "--cache-dir", str(cache)]) == 0
    assert "not created yet" in capsys.readouterr().out
    assert main(["train", str(tiny_cohort), "--model", "vae", "--out", str(tmp_path / "m.safetensors"),
                 "--cache-dir", str(cache), "--workers", "1", *TINY]) == 0
    capsys.readouterr()
    assert main(["cache", "info", "--cache-dir", str(cache)]) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert lines["location"] == str(cache)
    assert lines["entries"].startswith("8 (")  # one per volume of the cohort
    assert lines["digests"].startswith("8 ")
    assert main(["cache", "clear", "--cache-dir", str(cache), "--older-than", "1"]) == 0
    assert capsys.readouterr().out.startswith("removed 0 files unused for 1 days")
    assert main(["cache", "clear", "--cache-dir", str(cache)]) == 0
    assert capsys.readouterr().out.startswith("removed 16 files")
    assert not list(cache.rglob("*.npy"))


def test_no_cache_keeps_nothing(tiny_cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("NAPARI_LATENT_CACHE", str(tmp_path / "default"))
    assert main(["train", str(tiny_cohort), "--model", "vae", "--out", str(tmp_path / "m.safetensors"),
                 "--no-cache", *TINY]) == 0
    assert (tmp_path / "m.safetensors").is_file()
    assert list(scratch.iterdir()) == []  # the temporary cache is gone
    assert not (tmp_path / "default").exists()  # and the default one was not used


@pytest.mark.parametrize("argv, message", [
    (["cache"], "choose an action"),
    (["cache", "clear", "--older-than", "soon"], "number of days"),
    (["train", "{cohort}", "--model", "vae", "--out", "{tmp}/m.safetensors", "--workers", "-1"], "0 or more"),
    (["train", "{cohort}", "--model", "vae", "--out", "{tmp}/m.safetensors", "--no-cache", "--cache-dir", "{tmp}"],
     "not allowed with"),
    (["train", "{cohort}", "--model", "vae", "--out", "{tmp}/m.safetensors", "--cache-dir", "{tmp}/file/c", *TINY],
     "cannot create the slice cache"),
])
def test_cache_errors_are_one_line_exit_2(argv: list[str], message: str, tiny_cohort: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    values = {"cohort": tiny_cohort, "tmp": tmp_path}
    try:
        code = main([a.format(**values) for a in argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert message in err
    assert not (tmp_path / "m.safetensors").exists()
