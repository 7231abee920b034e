"""Atomic writes: all or nothing, with the permissions of a normally written file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from napari_latent._atomic import atomic_path, write_json_atomic, write_text_atomic


def test_written_files_get_normal_permissions(tmp_path: Path) -> None:
    reference = tmp_path / "plain.txt"
    reference.write_text("x")
    written = write_text_atomic(tmp_path / "atomic.txt", "x")
    assert stat.S_IMODE(os.stat(written).st_mode) == stat.S_IMODE(os.stat(reference).st_mode)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = write_json_atomic(tmp_path / "out.json", {"a": 1})

    def crash_while_writing() -> None:
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")

    with pytest.raises(RuntimeError):
        crash_while_writing()
    assert target.read_text().strip().startswith("{") and '"a": 1' in target.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
