"""``napari-latent view``: argument errors end with one line and exit 2, before any window."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from napari_latent.cli import main, view_commands


@pytest.fixture
def no_window(monkeypatch):
    """Fail the test if the command tries to open napari."""
    calls: list = []

    def fake_gui_show():
        def show(**kwargs):
            calls.append(kwargs)

        return show

    monkeypatch.setattr(view_commands, "gui_show", fake_gui_show)
    return calls


def _one_line_error(capsys, *parts: str) -> None:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("napari-latent view: error:"), err
    for part in parts:
        assert part in err, err
    assert "Traceback" not in err


def test_missing_file(no_window, capsys, tmp_path: Path) -> None:
    assert main(["view", str(tmp_path / "nope.nii.gz")]) == 2
    _one_line_error(capsys, "nope.nii.gz", "no such file")
    assert no_window == []


def test_unsupported_and_broken_files(no_window, capsys, tmp_path: Path) -> None:
    (tmp_path / "picture.png").write_bytes(b"\x89PNG")
    assert main(["view", str(tmp_path / "picture.png")]) == 2
    _one_line_error(capsys, "unsupported file")
    (tmp_path / "broken.nii.gz").write_bytes(b"nonsense")
    assert main(["view", str(tmp_path / "broken.nii.gz")]) == 2
    _one_line_error(capsys, "broken.nii.gz", "not a valid NIfTI")
    (tmp_path / "weights.safetensors").write_bytes(b"\x80\x04pickle")
    assert main(["view", str(tmp_path / "weights.safetensors")]) == 2
    _one_line_error(capsys, "not a valid safetensors")
    (tmp_path / "folder").mkdir()
    assert main(["view", str(tmp_path / "folder")]) == 2
    _one_line_error(capsys, "the folder is empty")
    (tmp_path / "folder" / "notes.txt").write_text("x")
    assert main(["view", str(tmp_path / "folder")]) == 2
    _one_line_error(capsys, "without eigen.json")
    assert no_window == []


def test_the_first_bad_file_stops_before_the_window(no_window, capsys, anatomical_path: Path,
                                                    tmp_path: Path) -> None:
    assert main(["view", str(anatomical_path), str(tmp_path / "missing.safetensors")]) == 2
    _one_line_error(capsys, "missing.safetensors")
    assert no_window == []


def test_good_files_go_to_show(no_window, anatomical_path: Path) -> None:
    assert main(["view", str(anatomical_path), "--no-widgets"]) == 0
    [kwargs] = no_window
    assert kwargs["volume"] == [anatomical_path] and kwargs["widgets"] is False


def test_view_module_does_not_import_napari() -> None:
    import subprocess

    code = ("import sys; from napari_latent.cli import build_parser; build_parser(); "
            "import napari_latent.cli.view_commands; assert 'napari' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_a_traversal_store_goes_to_show_lazily(no_window, capsys, tmp_path: Path) -> None:
    import numpy as np
    import zarr

    from napari_latent.latent.traversal import StoredTraversal, Traversal
    from napari_latent.latent.traversal.store import write_store
    from napari_latent.volumes.grid import Grid

    grid = Grid((6, 7, 5), np.diag([2.0, 2.0, 3.0, 1.0]))
    frames = np.random.default_rng(0).random((3, *grid.shape)).astype(np.float32)
    store = write_store(Traversal(frames, np.array([-1.0, 0.0, 1.0]), grid), tmp_path / "trav.zarr")
    assert main(["view", str(store), "--no-widgets"]) == 0
    [kwargs] = no_window
    [opened] = kwargs["traversal"]
    assert isinstance(opened, StoredTraversal) and opened.path == store
    np.testing.assert_array_equal(opened.frame(2), frames[2])
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w", zarr_format=3).attrs["x"] = 1
    assert main(["view", str(tmp_path / "other.zarr")]) == 2
    _one_line_error(capsys, "not a napari-latent traversal")
