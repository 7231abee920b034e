"""The on-disk slice cache: each volume sliced and preprocessed once, read back by many runs.

An entry holds the model-ready slices of one volume under one preprocessing: a ``.npy``
file of float32 ``(n, 1, S, S)`` in [-1, 1], exactly what
:func:`~napari_latent.volumes.slicing.slice_volume` returns (the pixels are bit-identical to
slicing in memory). Its key is a hash of

- :data:`CACHE_FORMAT` and the package version (bump :data:`CACHE_FORMAT` when reading or
  slicing changes what a volume gives),
- the preprocessing (:meth:`SliceSpec.to_json <napari_latent.volumes.slicing.SliceSpec.to_json>`),
- the volume's *content*: a SHA-256 of its bytes (of every file of a DICOM series folder,
  and of the data file a detached ``.nhdr``/``.mhd`` header names), never its name or
  size, so a renamed or copied volume hits the same entry and an edited one misses.

Hashing every volume on every run would be slow for big cohorts, so each content digest is
memoised under the file's *stat key* (absolute path, size, mtime in ns, inode; for a folder,
those of each of its files), as make and ccache do: a file whose stat changed is hashed again.

Entries are written atomically (a temporary file, then a rename): a killed run leaves no
entry at all rather than a corrupt one. An entry whose header, shape, type or size is wrong
(truncated, foreign, unreadable) is never used: it is deleted and rebuilt. The folder holds
``CACHEDIR.TAG``, ``entries/ab/ab12....npy`` and ``digests/cd/cd34....json`` (docs/training.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._atomic import atomic_path, write_json_atomic
from .._version import __version__
from ..errors import UserInputError, VolumeError
from ..user_cache import user_cache_folder
from ..volumes.dicom_series import split_series_path
from ..volumes.io import open_volume
from ..volumes.itk_formats import detached_data_files
from ..volumes.slicing import SliceSpec, slice_volume

#: Version of the entries' layout and meaning; part of every key.
CACHE_FORMAT = 1

#: Environment variable naming the cache folder (``--cache-dir`` wins over it).
CACHE_ENV = "NAPARI_LATENT_CACHE"

#: Temporary files of writes older than this (seconds) are left-overs of killed runs.
STALE_TEMPORARY_S = 3600.0

_TAG = ("Signature: 8a477f597d28d172789f06886806bc55\n"
        "# This file is a cache directory tag created by napari-latent (its slice cache).\n"
        "# For information about cache directory tags see https://bford.info/cachedir/\n")
_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """Where the slice cache lives: ``$NAPARI_LATENT_CACHE``, else the user cache folder's ``slices``
    (see :func:`napari_latent.user_cache.user_cache_folder`)."""
    return user_cache_folder("slices", CACHE_ENV)


@dataclass(frozen=True)
class CacheEntry:
    """One volume's slices in the cache.

    Attributes
    ----------
    path : Path
        The ``.npy`` file (float32 ``(count, 1, size, size)``).
    count : int
        Number of slices.
    size : int
        Image size in pixels.
    data_offset : int
        Byte offset of the first slice in the file (after the ``.npy`` header).
    """

    path: Path
    count: int
    size: int
    data_offset: int

    @property
    def slice_bytes(self) -> int:
        """Bytes of one slice."""
        return self.size * self.size * 4


def read_entry_header(path: str | os.PathLike[str], size: int | None = None) -> CacheEntry | None:
    """Check an entry file and describe it; None when it is missing, truncated or not an entry.

    Parameters
    ----------
    path : path-like
        The ``.npy`` file.
    size : int, optional
        The expected image size (any when None).
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
            else:
                return None
            offset = handle.tell()
            length = os.fstat(handle.fileno()).st_size
    except (OSError, ValueError, EOFError):
        return None
    if fortran or dtype != np.dtype(np.float32) or len(shape) != 4 or shape[1] != 1 or shape[2] != shape[3]:
        return None
    if size is not None and shape[2] != size:
        return None
    if length != offset + int(np.prod(shape)) * 4:
        return None  # truncated (or padded): never trusted
    return CacheEntry(path, int(shape[0]), int(shape[2]), offset)


def _content_files(source: Path) -> tuple[Path, str | None, list[Path]]:
    """``(anchor, series UID, files)``: the files whose bytes are a volume's content."""
    folder, uid = split_series_path(source)
    if folder.is_dir():
        files: list[Path] = []
        for root, dirs, names in os.walk(folder):
            dirs.sort()
            files.extend(Path(root) / name for name in sorted(names))
        return folder, uid, files
    return folder.parent, uid, [folder, *detached_data_files(folder)]


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while True:
            n = handle.readinto(buffer)
            if not n:
                break
            digest.update(view[:n])
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheInfo:
    """What a slice cache holds (see :meth:`SliceCache.info`)."""

    root: Path
    entries: int
    entry_bytes: int
    digests: int
    temporary_files: int
    temporary_bytes: int


class SliceCache:
    """A folder of slice-cache entries (see the module docstring).

    Parameters
    ----------
    root : path-like, optional
        The cache folder (created when first written); :func:`default_cache_dir` when None.
    trust_paths : bool
        Key volumes by their stat key instead of their content (no hashing). Only for
        :meth:`temporary` caches, which live no longer than one run.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, trust_paths: bool = False) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.trust_paths = trust_paths
        self._finalizer: weakref.finalize | None = None

    def __repr__(self) -> str:
        return f"SliceCache({str(self.root)!r})"

    @classmethod
    def temporary(cls) -> SliceCache:
        """A cache in a new temporary folder (under ``$TMPDIR``), deleted by :meth:`close` or at exit.

        What ``napari-latent train --no-cache`` uses: the run still streams its slices from
        disk (memory stays bounded), and nothing is kept afterwards.
        """
        cache = cls(tempfile.mkdtemp(prefix="napari-latent-slices-"), trust_paths=True)
        cache._finalizer = weakref.finalize(cache, shutil.rmtree, str(cache.root), ignore_errors=True)
        return cache

    def close(self) -> None:
        """Delete a temporary cache's folder (no-op for a persistent cache)."""
        if self._finalizer is not None:
            self._finalizer()

    # -- keys ---------------------------------------------------------------------------------
    def content_digest(self, source: str | os.PathLike[str]) -> str:
        """A SHA-256 of a volume's content, memoised under its stat key.

        Parameters
        ----------
        source : path-like
            A volume file, a DICOM series folder or ``FOLDER::UID``.

        Raises
        ------
        VolumeError
            When the volume cannot be found or read.
        """
        anchor, uid, files = _content_files(Path(source))
        try:
            stats = [(f, f.stat()) for f in files]
        except OSError as exc:
            raise VolumeError(f"{source}: cannot be read ({exc.strerror or exc})") from exc
        lines = [f"{os.path.realpath(source)}|{uid}"]
        lines += [f"{os.path.realpath(f)}|{s.st_size}|{s.st_mtime_ns}|{s.st_ino}" for f, s in stats]
        stat_key = "\n".join(lines)
        if self.trust_paths:
            return hashlib.sha256(stat_key.encode()).hexdigest()
        memo = self._digest_path(stat_key)
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            record = json.loads(memo.read_text())
            if record["stat_key"] == stat_key:
                _touch(memo)
                return str(record["digest"])
        digest = hashlib.sha256(f"uid {uid}\n".encode())
        for f in files:
            try:
                name = f.relative_to(anchor).as_posix() if len(files) > 1 else ""
            except ValueError:  # a data file named by an absolute path elsewhere
                name = f.as_posix()
            try:
                digest.update(f"{name}|{_hash_file(f)}\n".encode())
            except OSError as exc:
                raise VolumeError(f"{source}: cannot be read ({exc.strerror or exc})") from exc
        value = digest.hexdigest()
        with contextlib.suppress(OSError):
            write_json_atomic(memo, {"stat_key": stat_key, "digest": value})
        return value

    def key(self, source: str | os.PathLike[str], spec: SliceSpec) -> str:
        """The entry key of a volume under a preprocessing."""
        text = json.dumps({"format": CACHE_FORMAT, "version": __version__, "spec": spec.to_json(),
                           "content": self.content_digest(source)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:40]

    def entry_path(self, key: str) -> Path:
        """Where the entry of ``key`` lives."""
        return self.root / "entries" / key[:2] / f"{key}.npy"

    def _digest_path(self, stat_key: str) -> Path:
        name = hashlib.sha256(stat_key.encode()).hexdigest()[:40]
        return self.root / "digests" / name[:2] / f"{name}.json"

    # -- entries ------------------------------------------------------------------------------
    def get(self, source: str | os.PathLike[str], spec: SliceSpec) -> CacheEntry:
        """The entry of a volume, sliced and written first when missing or unusable.

        Parameters
        ----------
        source : path-like
            A volume (any path :func:`~napari_latent.volumes.io.open_volume` reads).
        spec : SliceSpec
            The preprocessing.

        Raises
        ------
        VolumeError
            When the volume cannot be read.
        UserInputError
            When the cache folder cannot be written.
        """
        path = self.entry_path(self.key(source, spec))
        return self._usable(path, spec) or self._build(Path(source), spec, path)

    def find(self, source: str | os.PathLike[str], spec: SliceSpec) -> CacheEntry | None:
        """The usable entry of a volume, or None (nothing is sliced)."""
        return self._usable(self.entry_path(self.key(source, spec)), spec)

    def _usable(self, path: Path, spec: SliceSpec) -> CacheEntry | None:
        entry = read_entry_header(path, spec.size)
        if entry is not None:
            _touch(path)
        return entry

    def _build(self, source: Path, spec: SliceSpec, path: Path) -> CacheEntry:
        """Slice a volume exactly as training in memory did and write its entry atomically."""
        images, _ = slice_volume(open_volume(source), spec)
        array = np.ascontiguousarray(images.numpy(), dtype=np.float32)
        self._ensure_root()
        try:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # an unusable entry
            with atomic_path(path) as tmp:
                np.save(tmp, array, allow_pickle=False)
        except OSError as exc:
            raise UserInputError(f"cannot write the slice cache at {self.root} ({exc.strerror or exc}); choose "
                                 f"another folder with --cache-dir or ${CACHE_ENV}, or use --no-cache") from exc
        entry = read_entry_header(path, spec.size)
        if entry is None or entry.count != len(array):
            raise UserInputError(f"{path}: the slice cache entry just written cannot be read back")
        return entry

    def _ensure_root(self) -> None:
        tag = self.root / "CACHEDIR.TAG"
        if not tag.is_file():
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                tag.write_text(_TAG)
            except OSError as exc:
                raise UserInputError(f"cannot create the slice cache at {self.root} ({exc.strerror or exc}); "
                                     f"choose another folder with --cache-dir or ${CACHE_ENV}, or use "
                                     "--no-cache") from exc

    # -- maintenance --------------------------------------------------------------------------
    def _files(self) -> tuple[list[Path], list[Path], list[Path]]:
        """``(entries, digests, temporary files)``: only files of the cache's own layout."""
        entries, digests, temporary = [], [], []
        for kind, suffix, found in (("entries", ".npy", entries), ("digests", ".json", digests)):
            top = self.root / kind
            if not top.is_dir():
                continue
            for shard in sorted(top.iterdir()):
                if not shard.is_dir() or len(shard.name) != 2:
                    continue
                for item in sorted(shard.iterdir()):
                    if item.name.startswith(".") and ".tmp" in item.name:
                        temporary.append(item)
                    elif item.suffix == suffix and item.is_file():
                        found.append(item)
        return entries, digests, temporary

    def info(self) -> CacheInfo:
        """Count the entries, memoised digests and left-over temporary files, and their sizes."""
        entries, digests, temporary = self._files()
        return CacheInfo(self.root, len(entries), sum(_size(p) for p in entries), len(digests), len(temporary),
                         sum(_size(p) for p in temporary))

    def clear(self, older_than_days: float | None = None) -> tuple[int, int]:
        """Delete entries and digests (those unused for ``older_than_days`` days, or all).

        Only files of the cache's layout are deleted, never anything else in the folder.
        Temporary files are deleted once older than an hour (younger ones may belong to a
        run writing right now). Do not clear a cache while a training run reads from it.

        Returns
        -------
        tuple of int
            Files deleted and their bytes.
        """
        if older_than_days is not None and not older_than_days >= 0:
            raise UserInputError(f"--older-than must be a number of days >= 0, got {older_than_days}")
        now = time.time()
        limit = None if older_than_days is None else now - 86400.0 * older_than_days
        entries, digests, temporary = self._files()
        removed = freed = 0
        for path in [*entries, *digests, *temporary]:
            try:
                stat = path.stat()
            except OSError:
                continue
            is_temporary = path.name.startswith(".")
            if is_temporary and stat.st_mtime > now - STALE_TEMPORARY_S:
                continue
            if limit is not None and stat.st_mtime > limit:
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
                freed += stat.st_size
        for kind in ("entries", "digests"):
            top = self.root / kind
            if top.is_dir():
                for shard in top.iterdir():
                    with contextlib.suppress(OSError):
                        shard.rmdir()  # only empty ones
        return removed, freed


def resolve_cache(cache: SliceCache | str | os.PathLike[str] | None) -> SliceCache:
    """A :class:`SliceCache` from a cache, a folder, or None (the default location)."""
    return cache if isinstance(cache, SliceCache) else SliceCache(cache)


def _touch(path: Path) -> None:
    """Mark a file as used now (``clear --older-than`` goes by last use); never fails."""
    with contextlib.suppress(OSError):
        os.utime(path)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
