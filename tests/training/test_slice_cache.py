"""The slice cache: bit-identical entries, content keys with memoised digests, atomic and checked entries."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from napari_latent.errors import UserInputError
from napari_latent.training import slice_cache
from napari_latent.training.slice_cache import CACHE_ENV, SliceCache, default_cache_dir, read_entry_header
from napari_latent.volumes import SliceSpec, open_volume
from napari_latent.volumes.slicing import slice_volume

SPEC = SliceSpec(size=32)


def _volumes(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.endswith((".nii", ".nii.gz")))


def test_entries_are_the_in_memory_slices_bit_for_bit_and_open_as_memory_maps(tiny_cohort: Path,
                                                                              tmp_path: Path) -> None:
    cache = SliceCache(tmp_path / "cache")
    for path in _volumes(tiny_cohort)[:3]:
        entry = cache.get(path, SPEC)
        expected = slice_volume(open_volume(path), SPEC)[0].numpy()
        mapped = np.load(entry.path, mmap_mode="r")
        assert isinstance(mapped, np.memmap) and mapped.dtype == np.float32
        assert mapped.shape == expected.shape == (entry.count, 1, 32, 32)
        np.testing.assert_array_equal(mapped, expected)
    assert (tmp_path / "cache" / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")


def test_the_key_follows_content_and_preprocessing_not_the_name(tiny_cohort: Path, tmp_path: Path) -> None:
    cache = SliceCache(tmp_path / "cache")
    first, second = _volumes(tiny_cohort)[:2]
    copy = tmp_path / "renamed_copy.nii.gz"
    shutil.copyfile(first, copy)
    assert cache.key(copy, SPEC) == cache.key(first, SPEC)  # content, not name
    assert cache.key(second, SPEC) != cache.key(first, SPEC)
    assert cache.key(first, SliceSpec(size=64)) != cache.key(first, SPEC)
    assert cache.key(first, SliceSpec(size=32, plane="coronal")) != cache.key(first, SPEC)
    entry = cache.get(copy, SPEC)
    assert cache.get(first, SPEC).path == entry.path  # one entry serves both
    data = bytearray(copy.read_bytes())
    data[-5] ^= 0xFF  # same size, other content
    copy.write_bytes(bytes(data))
    assert cache.key(copy, SPEC) != cache.key(first, SPEC)


def test_content_digests_are_memoised_under_the_stat_key(tiny_cohort: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    volume = tmp_path / "v.nii.gz"
    shutil.copyfile(_volumes(tiny_cohort)[0], volume)
    hashed: list[Path] = []
    original = slice_cache._hash_file
    monkeypatch.setattr(slice_cache, "_hash_file", lambda p: hashed.append(p) or original(p))
    cache = SliceCache(tmp_path / "cache")
    digest = cache.content_digest(volume)
    assert hashed == [volume]
    assert SliceCache(tmp_path / "cache").content_digest(volume) == digest  # a new process: read from the memo
    assert hashed == [volume]
    stat = volume.stat()
    os.utime(volume, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: hashed again, same content
    assert cache.content_digest(volume) == digest
    assert len(hashed) == 2
    assert SliceCache(tmp_path / "other").content_digest(volume) == digest  # the digest is the content's


def test_folder_volumes_and_detached_headers_have_content_keys(tmp_path: Path) -> None:
    cache = SliceCache(tmp_path / "cache")
    series = tmp_path / "series"
    (series / "sub").mkdir(parents=True)
    for i in range(3):
        (series / f"im{i}.dcm").write_bytes(bytes([i]) * 100)
    (series / "sub" / "im3.dcm").write_bytes(b"x" * 100)
    digest = cache.content_digest(series)
    assert cache.content_digest(f"{series}::1.2.3") != digest  # the chosen series is part of the key
    moved = tmp_path / "moved"
    shutil.copytree(series, moved)
    assert cache.content_digest(moved) == digest
    (moved / "sub" / "im3.dcm").write_bytes(b"y" * 100)  # a file deep inside changes
    assert cache.content_digest(moved) != digest
    header = tmp_path / "v.mhd"
    header.write_text("ObjectType = Image\nNDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\n"
                      "ElementDataFile = v.raw\n")
    (tmp_path / "v.raw").write_bytes(bytes(8))
    before = cache.content_digest(header)
    (tmp_path / "v.raw").write_bytes(bytes(range(8)))  # the voxels change, the header does not
    assert cache.content_digest(header) != before


def test_truncated_or_foreign_entries_are_rebuilt_never_trusted(tiny_cohort: Path, tmp_path: Path) -> None:
    cache = SliceCache(tmp_path / "cache")
    path = _volumes(tiny_cohort)[0]
    entry = cache.get(path, SPEC)
    good = entry.path.read_bytes()
    entry.path.write_bytes(good[:-100])  # truncated
    assert read_entry_header(entry.path, 32) is None
    assert cache.find(path, SPEC) is None
    assert cache.get(path, SPEC) == entry and entry.path.read_bytes() == good
    np.save(entry.path, np.zeros((entry.count, 1, 32, 32), np.float64))  # right shape, wrong type
    assert cache.find(path, SPEC) is None
    assert cache.get(path, SPEC) == entry and entry.path.read_bytes() == good
    entry.path.write_bytes(b"not a numpy file at all")
    assert cache.get(path, SPEC) == entry and entry.path.read_bytes() == good
    assert read_entry_header(entry.path, 64) is None  # another image size is not this entry


def test_a_failed_write_leaves_no_entry(tiny_cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = SliceCache(tmp_path / "cache")
    path = _volumes(tiny_cohort)[0]

    def killed(file, array, allow_pickle=False):
        Path(file).write_bytes(b"\x93NUMPY half")
        raise KeyboardInterrupt

    monkeypatch.setattr(slice_cache.np, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        cache.get(path, SPEC)
    monkeypatch.undo()
    assert cache.find(path, SPEC) is None
    assert not list((tmp_path / "cache").rglob("*.npy"))  # neither an entry nor a temporary file
    assert cache.get(path, SPEC).count > 0


def test_info_and_clear_by_age_touch_only_the_caches_files(tiny_cohort: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    cache = SliceCache(root)
    entries = [cache.get(p, SPEC) for p in _volumes(tiny_cohort)[:3]]
    info = cache.info()
    assert (info.entries, info.digests, info.temporary_files) == (3, 3, 0)
    assert info.entry_bytes == sum(e.path.stat().st_size for e in entries)
    stale = entries[0].path.parent / f".{entries[0].path.name}.abc.tmp.npy"  # left by a killed run
    stale.write_bytes(b"partial")
    old = time.time() - 3 * 86400
    os.utime(stale, (old, old))
    os.utime(entries[0].path, (old, old))
    (root / "notes.txt").write_text("mine")
    assert cache.info().temporary_files == 1
    size = entries[0].path.stat().st_size
    assert cache.clear(older_than_days=2) == (2, size + len(b"partial"))
    assert not entries[0].path.exists() and entries[1].path.exists() and not stale.exists()
    cache.get(_volumes(tiny_cohort)[1], SPEC)  # using an entry makes it recent
    assert cache.clear(older_than_days=1)[0] == 0
    removed, _ = cache.clear()
    assert removed == 2 + 3  # two entries, three digests
    assert cache.info().entries == 0 and (root / "notes.txt").read_text() == "mine"
    with pytest.raises(UserInputError, match="older-than"):
        cache.clear(older_than_days=-1)


def test_the_location_is_the_environment_variable_else_the_user_cache(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "here"))
    assert default_cache_dir() == tmp_path / "here" == SliceCache().root
    monkeypatch.delenv(CACHE_ENV)
    import platformdirs

    assert default_cache_dir() == Path(platformdirs.user_cache_dir("napari-latent", appauthor=False)) / "slices"


def test_a_temporary_cache_is_deleted_on_close(tiny_cohort: Path) -> None:
    cache = SliceCache.temporary()
    entry = cache.get(_volumes(tiny_cohort)[0], SPEC)
    assert entry.path.is_file() and cache.root.is_dir()
    cache.close()
    assert not cache.root.exists()


def test_an_unwritable_cache_is_one_clear_error(tiny_cohort: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserInputError, match="--cache-dir"):
        SliceCache(blocker / "cache").get(_volumes(tiny_cohort)[0], SPEC)


def test_sharded_preparation_slices_each_volume_once_per_cache_folder(tiny_cohort: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Two nodes of two processes (threads here), each node with its own cache folder: every volume is
    sliced once per node, and every process ends with the whole set."""
    import threading
    from dataclasses import dataclass

    from napari_latent.progress import run_operation
    from napari_latent.training.data import iter_load_slices
    from napari_latent.volumes.cohort import load_cohort

    barrier = threading.Barrier(4, timeout=60)

    @dataclass
    class Context:
        rank: int
        local_rank: int
        world_size: int = 4

        def barrier(self) -> None:
            barrier.wait()

    built: list[tuple[str, str]] = []
    build = SliceCache._build

    def noting_build(self, source, spec, path):
        built.append((self.root.name, Path(source).name))
        return build(self, source, spec, path)

    monkeypatch.setattr(SliceCache, "_build", noting_build)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    cohort = load_cohort(tiny_cohort)
    indices = list(range(len(cohort)))
    results: dict[int, object] = {}

    def process(rank: int) -> None:
        cache = SliceCache(tmp_path / f"node{rank // 2}")
        results[rank] = run_operation(iter_load_slices(cohort, indices, SPEC, cache=cache,
                                                       context=Context(rank, rank % 2)))

    threads = [threading.Thread(target=process, args=(r,)) for r in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    names = sorted(s.name + ".nii.gz" for s in cohort.subjects)
    for node in ("node0", "node1"):
        assert sorted(v for n, v in built if n == node) == names  # once per node, no volume twice
    assert len(results) == 4
    for rank in range(4):
        assert results[rank].names == [s.name for s in cohort.subjects]
        assert results[rank].counts == results[0].counts
