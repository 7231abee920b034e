"""Where the Traverse widget's traversal stores live, and when they are deleted.

A traversal of a CT-sized volume is several gigabytes (15 alphas of 512 x 512 x 300 float32
are 4.7 GB, about 3 GB compressed), so the widget never keeps one in memory: it streams the
frames into a traversal store (:mod:`napari_latent.latent.traversal.store`) and napari reads
that store lazily. A store goes either where the user asks ("save to", kept) or, by
default, into the viewer's *session folder*, a temporary folder deleted with the viewer:

``$NAPARI_LATENT_TRAVERSALS`` (when set), else the user cache folder's ``traversals``
(platformdirs' ``user_cache_dir("napari-latent")``: ``~/.cache/napari-latent/traversals``
on Linux), holds one ``session-<pid>-<random>`` folder per viewer that made a traversal.
The user cache folder is on disk: the system temporary folder is a RAM disk (tmpfs) on
many Linux systems, where a store would take the memory it is meant to save.

Rules (:class:`SessionStores`):

* a store that a layer still shows, that is the session's traversal, that an analysis is
  reading (:meth:`SessionStores.hold`), or that a widget is still writing or about to show
  (:meth:`SessionStores.new_path` reserves it until :meth:`SessionStores.release`) is never
  deleted;
* after a new traversal is shown, the session folder's stores that nothing shows any more
  are deleted (:meth:`SessionStores.collect`; a re-run replaces the old layer);
* the whole session folder is deleted when the viewer's window is destroyed, and at the
  latest when the Python process exits;
* a folder left by a process that was killed is deleted the next time a session folder is
  made (its process id is no longer running).

Stores the user saved elsewhere are never deleted.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..latent.traversal import STORE_SUFFIX, is_store_path
from ..user_cache import user_cache_folder
from ..volumes.orientation import display_geometry
from .layers import layer_entry

#: Environment variable naming the folder of the GUI's temporary traversal stores.
TRAVERSALS_ENV = "NAPARI_LATENT_TRAVERSALS"

#: Prefix of a viewer's session folder (``session-<pid>-<random>``).
SESSION_PREFIX = "session-"

_SESSION_NAME = re.compile(rf"^{SESSION_PREFIX}(\d+)-")


def default_store_root() -> Path:
    """The folder of the session folders: ``$NAPARI_LATENT_TRAVERSALS``, else ``<user cache>/traversals``."""
    return user_cache_folder("traversals", TRAVERSALS_ENV)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        import psutil

        return bool(psutil.pid_exists(pid))
    except ImportError:  # pragma: no cover - psutil comes with napari
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
        return True


def sweep_stale_sessions(root: Path) -> list[Path]:
    """Delete the session folders under ``root`` whose process is no longer running; returns them."""
    removed = []
    if not root.is_dir():
        return removed
    for folder in root.iterdir():
        match = _SESSION_NAME.match(folder.name)
        if folder.is_dir() and match and not _process_alive(int(match.group(1))):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _safe_name(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return keep or "traversal"


def layer_store(layer: Any) -> Path | None:
    """The traversal store a layer reads (from its metadata), or None."""
    path = layer_entry(layer).get("store")
    return Path(path) if path else None


def layer_showing(viewer: Any, traversal: Any, kind: str = "traversal") -> Any:
    """The 4D layer of ``kind`` (``"traversal"``, ``"traversal_difference"``) that shows ``traversal``, or None.

    A store's layer reads that store; an in-memory traversal's layer holds its images (or,
    reading no store, has its display shape).
    """
    path = getattr(traversal, "path", None)
    path = Path(path).resolve() if path is not None and is_store_path(path) else None
    images = getattr(traversal, "images", None)
    for layer in viewer.layers:
        if layer_entry(layer).get("kind") != kind or layer.ndim != 4:
            continue
        store = layer_store(layer)
        if path is not None:
            if store is not None and store.resolve() == path:
                return layer
        elif store is None and images is not None and (
                (isinstance(layer.data, np.ndarray) and np.shares_memory(layer.data, images))
                or tuple(layer.data.shape) == (len(traversal), *display_geometry(traversal.grid).reorientation
                                               .target_shape)):
            return layer
    return None


def shown_stores(viewer: Any) -> set[Path]:
    """The stores that the viewer's layers read (resolved paths)."""
    stores = (layer_store(layer) for layer in viewer.layers)
    return {path.resolve() for path in stores if path is not None}


class SessionStores:
    """One viewer's temporary traversal stores (see the module docstring for the rules).

    The session folder is made on first use; nothing is written before a traversal is.
    """

    def __init__(self, root: Path | None = None) -> None:
        self._root = root
        self.folder: Path | None = None
        self._held: Counter[Path] = Counter()
        self._reserved: set[Path] = set()
        self._finalizer: weakref.finalize | None = None
        self._watching = False

    @property
    def root(self) -> Path:
        """The folder of the session folders (:func:`default_store_root` unless given)."""
        return self._root if self._root is not None else default_store_root()

    def session_folder(self) -> Path:
        """The session folder (made, and stale folders swept, on first use)."""
        if self.folder is None or not self.folder.is_dir():
            root = self.root
            root.mkdir(parents=True, exist_ok=True)
            sweep_stale_sessions(root)
            self.folder = Path(tempfile.mkdtemp(prefix=f"{SESSION_PREFIX}{os.getpid()}-", dir=root))
            # deleted when this object goes (with its viewer's session) or, at the latest, at exit
            self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.folder), True)
        return self.folder

    def new_path(self, name: str) -> Path:
        """A fresh store path in the session folder, named after ``name``, reserved until :meth:`release`.

        A reserved store is never collected: between the worker writing it and the GUI
        thread adding its layers, nothing shows it yet.
        """
        folder = self.session_folder()
        stem = _safe_name(name)
        path = folder / f"{stem}{STORE_SUFFIX}"
        number = 2
        while path.exists() or path.resolve() in self._reserved:
            path = folder / f"{stem}-{number}{STORE_SUFFIX}"
            number += 1
        self._reserved.add(path.resolve())
        return path

    def release(self, path: str | os.PathLike[str] | None) -> None:
        """End the reservation of :meth:`new_path` (its layers are shown, or nothing was written)."""
        if path is not None:
            self._reserved.discard(Path(path).resolve())

    def is_temporary(self, path: str | os.PathLike[str]) -> bool:
        """True for a store in this session's folder (deleted with the viewer)."""
        if self.folder is None:
            return False
        return Path(path).resolve().parent == self.folder.resolve()

    @contextlib.contextmanager
    def hold(self, path: str | os.PathLike[str] | None) -> Iterator[None]:
        """Keep a store from being collected while the block runs (an analysis reading it)."""
        key = Path(path).resolve() if path is not None else None
        if key is not None:
            self._held[key] += 1
        try:
            yield
        finally:
            if key is not None:
                self._held[key] -= 1
                if self._held[key] <= 0:
                    del self._held[key]

    def collect(self, in_use: Iterable[str | os.PathLike[str]]) -> list[Path]:
        """Delete the session folder's stores not in ``in_use`` and not held; returns them.

        ``in_use`` is what is still shown or referenced (:func:`shown_stores`, the session's
        traversal); stores being written (hidden temporary folders) are left alone.
        """
        if self.folder is None or not self.folder.is_dir():
            return []
        keep = {Path(p).resolve() for p in in_use} | set(self._held) | self._reserved
        removed = []
        for path in self.folder.iterdir():
            if is_store_path(path) and not path.name.startswith(".") and path.resolve() not in keep:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        return removed

    def release_if_empty(self) -> None:
        """Delete the session folder when it holds nothing (a run cancelled before its first alpha)."""
        if self.folder is not None and self.folder.is_dir() and not any(self.folder.iterdir()):
            self.close()

    def close(self) -> None:
        """Delete the whole session folder (the viewer is gone)."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self.folder = None

    def close_with(self, viewer: Any) -> None:
        """Delete the session folder when the viewer's window is destroyed (once per viewer)."""
        if self._watching:
            return
        window = getattr(getattr(viewer, "window", None), "_qt_window", None)
        destroyed = getattr(window, "destroyed", None)
        if destroyed is None:
            return
        self._watching = True  # (no reference to the window: the session must not keep the viewer alive)
        destroyed.connect(lambda *_: self.close())


def collect_unshown(viewer: Any, session: Any) -> list[Path]:
    """Delete the viewer's temporary stores that no layer shows and that are not the session's traversal.

    ``session`` is the viewer's :class:`~napari_latent.gui.session.Session`; returns the
    deleted stores.
    """
    in_use = shown_stores(viewer)
    path = getattr(session.traversal, "path", None)
    if path is not None:
        in_use.add(Path(path).resolve())
    return session.stores.collect(in_use)
