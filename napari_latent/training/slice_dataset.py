"""Reading slices from cache entries: positioned reads, a torch Dataset and the batch loader.

A :class:`~napari_latent.training.data.SliceSet` is a list of cache entries
(:mod:`napari_latent.training.slice_cache`); slice ``i`` of the set is slice ``i - offset``
of the entry it falls in. :class:`SliceReader` copies the asked slices straight from the
files into one batch array (one read per run of consecutive slices of an entry), with a
small pool of open files per process. Nothing else is held in memory: no per-slice
objects, no whole-cohort array.

Why reads and not a kept memory map: the entries are ordinary ``.npy`` files that
``np.load(path, mmap_mode="r")`` opens, but pages a process touches through a mapping count
towards its resident memory until the mapping is closed, so over an epoch a mapped cohort
would show up as resident memory of the size of the cohort. Positioned reads go through the
operating system's page cache (shared, and dropped under memory pressure) and keep each
process's memory at a few batches.

:class:`BatchLoader` serves batches through a :class:`torch.utils.data.DataLoader`: the
engine chooses the batches (``epoch_order`` and ``_batches`` of
:mod:`napari_latent.training.loop`) and the loader's workers read them, ahead of the step
that needs them, in worker processes that live as long as the run (``persistent_workers``),
into pinned memory on CUDA.
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import DataError
from .slice_cache import CacheEntry

#: Most entry files a reader keeps open at once (per process).
MAX_OPEN_FILES = 32

#: Most DataLoader workers chosen by default (per training process, on CUDA).
MAX_DEFAULT_WORKERS = 4


class SliceReader:
    """Reads slices of a list of cache entries into batch arrays (one reader per process).

    Parameters
    ----------
    entries : list of CacheEntry
        The entries, in the set's order.
    size : int
        Image size in pixels.
    """

    def __init__(self, entries: Sequence[CacheEntry], size: int) -> None:
        self.entries = list(entries)
        self.size = int(size)
        self.offsets = np.concatenate([[0], np.cumsum([e.count for e in self.entries], dtype=np.int64)])
        self._files: OrderedDict[int, Any] = OrderedDict()
        self._pid = os.getpid()

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def read(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Slices ``indices`` of the set, in that order: float32 ``(len(indices), 1, S, S)``."""
        index = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.empty((len(index), 1, self.size, self.size), np.float32)
        if len(index) == 0:
            return out
        if index.min() < 0 or index.max() >= len(self):
            raise IndexError(f"slice index out of range 0..{len(self) - 1}")
        which = np.searchsorted(self.offsets, index, side="right") - 1
        local = index - self.offsets[which]
        start = 0
        while start < len(index):  # one read per run of consecutive slices of one entry
            stop = start + 1
            while stop < len(index) and which[stop] == which[start] and local[stop] == local[stop - 1] + 1:
                stop += 1
            self._read_run(int(which[start]), int(local[start]), out[start:stop])
            start = stop
        return out

    def read_range(self, start: int, stop: int) -> np.ndarray:
        """Slices ``start`` to ``stop`` (exclusive) of the set."""
        stop = min(int(stop), len(self))
        return self.read(np.arange(int(start), max(int(start), stop)))

    def close(self) -> None:
        """Close the open entry files."""
        for handle in self._files.values():
            with contextlib.suppress(OSError):
                handle.close()
        self._files.clear()

    def _handle(self, which: int) -> Any:
        if self._pid != os.getpid():  # a forked worker: never share the parent's file positions
            self._files = OrderedDict()
            self._pid = os.getpid()
        handle = self._files.get(which)
        if handle is not None:
            self._files.move_to_end(which)
            return handle
        entry = self.entries[which]
        try:
            handle = open(entry.path, "rb", buffering=0)  # noqa: SIM115 (kept open in the pool)
        except OSError as exc:
            raise DataError(f"{entry.path}: the slice cache entry cannot be opened ({exc.strerror or exc}); "
                            "was the cache cleared during the run?") from exc
        self._files[which] = handle
        if len(self._files) > MAX_OPEN_FILES:
            _, oldest = self._files.popitem(last=False)
            oldest.close()
        return handle

    def _read_run(self, which: int, first: int, out: np.ndarray) -> None:
        entry = self.entries[which]
        handle = self._handle(which)
        view = memoryview(out).cast("B")
        handle.seek(entry.data_offset + first * entry.slice_bytes)
        done = 0
        while done < view.nbytes:
            n = handle.readinto(view[done:])
            if not n:
                raise DataError(f"{entry.path}: the slice cache entry is shorter than its header says; "
                                "it changed during the run (run again to rebuild it)")
            done += n

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_files"] = OrderedDict()  # open files stay in their process
        return state


class SliceDataset(Dataset):
    """A map-style Dataset of cache-entry slices; each process opens the files it reads itself.

    ``dataset[i]`` is one ``(1, S, S)`` tensor; ``dataset.__getitems__(batch)`` (what a
    DataLoader with a batch sampler calls) is one ``(len(batch), 1, S, S)`` tensor.
    """

    def __init__(self, reader: SliceReader) -> None:
        self.reader = reader

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.reader.read([index])[0])

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        return torch.from_numpy(self.reader.read(indices))


def _as_batch(batch: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """The DataLoader's collate function: batches already come as one tensor."""
    return batch if isinstance(batch, torch.Tensor) else torch.stack(batch)


class _BatchList(Sampler[list[int]]):
    """A batch sampler that replays the batches it was last given (the engine's order)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def default_workers(device: torch.device) -> int:
    """DataLoader worker processes per training process when ``workers`` is not set.

    On the CPU 0: batches are read in the training process itself (a batch is a few
    positioned reads, far cheaper than a step, and workers would take cores from the
    model). On CUDA the CPU cores shared by the local processes, less one for each
    process's own work, at most :data:`MAX_DEFAULT_WORKERS` and at least 1.
    """
    if device.type != "cuda":
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(MAX_DEFAULT_WORKERS, cpus // local - 1))


class BatchLoader:
    """Batches of a slice set in the engine's order, read by DataLoader workers.

    Parameters
    ----------
    reader : SliceReader
        The slices.
    workers : int
        Worker processes (0: read in this process). They start with the first batch and
        stay until :meth:`close`.
    pin_memory : bool
        Put batches in pinned memory (for fast, asynchronous copies to CUDA).
    """

    def __init__(self, reader: SliceReader, workers: int, pin_memory: bool) -> None:
        self._sampler = _BatchList()
        self.workers = int(workers)
        self.pin_memory = bool(pin_memory)
        self.loader: DataLoader | None = DataLoader(
            SliceDataset(reader), batch_sampler=self._sampler, num_workers=self.workers, collate_fn=_as_batch,
            pin_memory=self.pin_memory, persistent_workers=self.workers > 0)

    def __call__(self, batches: Iterable[Sequence[int]]) -> Iterator[torch.Tensor]:
        """Iterate over the batches (lists of slice indices), one tensor ``(b, 1, S, S)`` each."""
        if self.loader is None:
            raise RuntimeError("the batch loader is closed")
        self._sampler.batches = [list(b) for b in batches]
        return iter(self.loader)

    def close(self) -> None:
        """Stop the worker processes."""
        loader, self.loader = self.loader, None
        iterator = getattr(loader, "_iterator", None)
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()

