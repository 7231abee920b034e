"""Atomic file writes: write a temporary file beside the target, then rename it.

A crash or an exception during the write never leaves a partly written file at the
target path; the previous content (if any) stays intact until the rename.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    Parameters
    ----------
    path : path-like
        The final file path. Its parent folder is created if missing.

    Yields
    ------
    Path
        A temporary path with the same suffixes as ``path`` (so that libraries that
        choose a format by extension behave). Write the file there.
    """
    tmp = temporary_beside(path)
    try:
        yield tmp
        publish(tmp, path)
    except BaseException:
        discard(tmp)
        raise


def temporary_beside(path: str | os.PathLike[str]) -> Path:
    """A new empty temporary file in ``path``'s folder (created if missing), with its suffixes.

    For writers that cannot use :func:`atomic_path` as a ``with`` block (a file written
    piece by piece across calls): write there, then :func:`publish` or :func:`discard` it.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(fd)
    return Path(tmp_name)


def publish(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Rename a finished temporary file onto ``path`` (with the permissions of a normally created file)."""
    # mkstemp makes the file private (0600); give it the permissions of a normally created file.
    os.chmod(tmp, _default_mode())
    os.replace(tmp, path)
    return Path(path)


def discard(tmp: str | os.PathLike[str]) -> None:
    """Remove a temporary file (gone already is fine)."""
    with contextlib.suppress(FileNotFoundError):
        Path(tmp).unlink()


def _read_umask() -> int:
    umask = os.umask(0o022)  # reading the umask means setting it: done once, at import, before any worker thread
    os.umask(umask)
    return umask


_UMASK = _read_umask()


def _default_mode() -> int:
    """``0o666`` less the process's umask: what ``open(path, "w")`` would give."""
    return 0o666 & ~_UMASK


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically and return the path."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
