"""Training data: volumes sliced by the model's SliceSpec, split by subject, augmented.

The split into training and validation is by *subject* (whole volumes), never by slice:
neighbouring slices of one volume are nearly identical, so a slice-level split would
leak the validation set into training.

Slices are never gathered into one array: each volume is sliced once into the on-disk slice
cache (:mod:`napari_latent.training.slice_cache`) and a :class:`SliceSet` reads the slices
a batch needs from there (:mod:`napari_latent.training.slice_dataset`), so memory does not
grow with the cohort.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError, UserInputError
from ..progress import Operation, ProgressEvent, StopFlag, stop_requested
from ..volumes.cohort import Cohort, load_cohort
from ..volumes.slicing import SliceSpec
from .distributed import DistributedContext
from .slice_cache import CacheEntry, SliceCache, resolve_cache
from .slice_dataset import SliceReader

#: What ``cache=`` accepts: a cache, a folder, or None for the default location.
CacheArg = SliceCache | str | os.PathLike[str] | None


@dataclass(eq=False)
class SliceSet:
    """Model-ready slices of some subjects, kept in slice-cache entries and read on demand.

    Attributes
    ----------
    entries : list of CacheEntry
        One entry per subject: float32 ``(n_i, 1, S, S)`` in [-1, 1] on disk.
    names : list of str
        Subject names, in the order of ``entries``.
    size : int
        Image size ``S``.
    """

    entries: list[CacheEntry]
    names: list[str]
    size: int
    _reader: SliceReader | None = field(default=None, init=False, repr=False)

    def __len__(self) -> int:
        return sum(e.count for e in self.entries)

    @property
    def counts(self) -> list[int]:
        """Slices per subject."""
        return [e.count for e in self.entries]

    @property
    def reader(self) -> SliceReader:
        """The reader of this process (the files it opens stay open for the next reads)."""
        if self._reader is None:
            self._reader = SliceReader(self.entries, self.size)
        return self._reader

    def read(self, indices: list[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """Slices ``indices`` (in that order) as a float32 tensor ``(len(indices), 1, S, S)``."""
        if isinstance(indices, torch.Tensor):
            indices = indices.numpy()
        return torch.from_numpy(self.reader.read(indices))

    def read_range(self, start: int, stop: int) -> torch.Tensor:
        """Slices ``start`` to ``stop`` (exclusive; clipped to the set)."""
        return torch.from_numpy(self.reader.read_range(start, stop))

    @property
    def subject(self) -> torch.Tensor:
        """``(n,)`` index of each slice's subject in :attr:`names`."""
        return torch.repeat_interleave(torch.arange(len(self.entries)), torch.tensor(self.counts, dtype=torch.long))

    @property
    def images(self) -> torch.Tensor:
        """Every slice at once, ``(n, 1, S, S)``: it reads the whole set into memory.

        For small sets (tests, scripts); training, validation and previews read batches
        with :meth:`read` and :meth:`read_range` instead.
        """
        return self.read_range(0, len(self))


@dataclass
class TrainingData:
    """Training and validation slices plus where they came from.

    ``cache`` is the slice cache the slices live in (it must outlive the data: a
    :meth:`SliceCache.temporary` cache is deleted with it).
    """

    train: SliceSet
    validation: SliceSet
    spec: SliceSpec
    cohort: Cohort
    fingerprint: str
    cache: SliceCache | None = None


def split_subjects(n_subjects: int, val_fraction: float, seed: int,
                   groups: list[int] | None = None) -> tuple[list[int], list[int]]:
    """Split subject indices into training and validation, deterministically by seed.

    With at least two subjects and ``val_fraction > 0``, at least one subject is held out
    and at least one is kept for training. A single subject cannot be split: it trains and
    there is no validation set.

    Parameters
    ----------
    n_subjects : int
        Number of entries (volumes).
    val_fraction : float
        Fraction held out, in [0, 1).
    seed : int
    groups : list of int, optional
        The participant of each entry (:meth:`Cohort.participant_groups`): all entries of a
        participant (sessions, runs) go to the same side, and the fraction counts
        participants. None: every entry is its own participant (the same split as before
        groups existed).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise UserInputError(f"validation fraction {val_fraction} must be in [0, 1)")
    if groups is not None:
        if len(groups) != n_subjects:
            raise ValueError(f"{len(groups)} groups for {n_subjects} subjects")
        members: dict[int, list[int]] = {}
        for index, group in enumerate(groups):
            members.setdefault(int(group), []).append(index)
        keys = sorted(members)
        train_groups, val_groups = split_subjects(len(keys), val_fraction, seed)
        train = sorted(i for k in train_groups for i in members[keys[k]])
        return train, sorted(i for k in val_groups for i in members[keys[k]])
    order = np.random.default_rng(seed).permutation(n_subjects).tolist()
    if n_subjects < 2 or val_fraction == 0.0:
        return sorted(order), []
    n_val = min(max(1, round(n_subjects * val_fraction)), n_subjects - 1)
    return sorted(order[n_val:]), sorted(order[:n_val])


def iter_load_slices(cohort: Cohort, indices: list[int], spec: SliceSpec, stage: str = "data",
                     stop: StopFlag | None = None, offset: int = 0, total: int | None = None,
                     cache: CacheArg = None, context: DistributedContext | None = None) -> Operation[SliceSet]:
    """Slice the given subjects into the slice cache, once (a generator with progress per volume).

    Parameters
    ----------
    cohort : Cohort
    indices : list of int
        The subjects, in the order of the set.
    spec : SliceSpec
        The preprocessing.
    stage, offset, total
        The progress events' stage and numbering (``offset + k`` of ``total``).
    stop : StopFlag, optional
        Ends early with the subjects done so far (one process only).
    cache : SliceCache, path-like or None
        Where the slices are kept (:func:`~napari_latent.training.slice_cache.default_cache_dir`
        when None).
    context : DistributedContext, optional
        Under torchrun, rank ``r`` of ``w`` slices the subjects ``k % w == r`` (the others' entries
        are then found in the shared cache after a barrier).

    Returns
    -------
    SliceSet
    """
    store = resolve_cache(cache)
    rank, world = (context.rank, context.world_size) if context is not None else (0, 1)
    entries: dict[int, CacheEntry] = {}
    failure: BaseException | None = None
    for count, index in enumerate(indices):
        if count % world != rank or failure is not None:
            continue
        item = cohort.subjects[index]
        try:
            entries[count] = store.get(item.path, spec)
        except Exception as exc:
            if world == 1:
                raise
            failure = exc  # every rank must still reach the barrier; raised below
            continue
        yield ProgressEvent(offset + count + 1, total or len(indices), f"sliced {item.name}",
                            {"slices": entries[count].count}, stage=stage)
        if world == 1 and stop_requested(stop):
            break
    if world > 1:
        assert context is not None
        context.barrier()
        if failure is not None:
            raise failure
        yield from _iter_fill(cohort, indices, spec, store, context, entries)
    done = sorted(entries)
    return SliceSet([entries[k] for k in done], [cohort.subjects[indices[k]].name for k in done], spec.size)


def _iter_fill(cohort: Cohort, indices: list[int], spec: SliceSpec, store: SliceCache, context: DistributedContext,
               entries: dict[int, CacheEntry]) -> Operation[None]:
    """After the ranks sliced their shares: find the other ranks' entries in the cache.

    With a cache folder per node (several nodes, node-local caches) a node misses the
    entries other nodes wrote: its processes then slice those in turn (local rank ``r`` of
    ``l`` takes every ``l``-th), wait for each other, and find them. Every process takes
    part in the same barriers.
    """
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", context.world_size))
    if local_world < context.world_size:
        missing = [k for k in range(len(indices)) if k not in entries
                   and store.find(cohort.subjects[indices[k]].path, spec) is None]
        for number, count in enumerate(missing):
            if number % local_world == context.local_rank:
                entries[count] = store.get(cohort.subjects[indices[count]].path, spec)
                yield ProgressEvent(count + 1, len(indices), f"sliced {cohort.subjects[indices[count]].name}",
                                    stage="data")
        context.barrier()
    for count, index in enumerate(indices):  # found, not sliced again (sliced here only if still missing)
        if count not in entries:
            entries[count] = store.get(cohort.subjects[index].path, spec)


def iter_prepare_data(data: str | os.PathLike[str] | Cohort, spec: SliceSpec, val_fraction: float = 0.2,
                      seed: int = 0, labels: str | os.PathLike[str] | None = None,
                      stop: StopFlag | None = None, cache: CacheArg = None,
                      context: DistributedContext | None = None) -> Operation[TrainingData]:
    """Load a data set, slice it into the slice cache and split it by subject.

    Parameters
    ----------
    data : path-like or Cohort
        A NIfTI file, a folder of them (with an optional ``cohort.csv``), or a cohort.
    spec : SliceSpec
        The model's preprocessing.
    val_fraction : float
        Fraction of subjects held out for validation.
    seed : int
        Seed of the split.
    labels : path-like, optional
        A cohort table to use instead of the folder's ``cohort.csv``.
    stop : StopFlag, optional
    cache : SliceCache, path-like or None
        The slice cache (the default location when None; :meth:`SliceCache.temporary` for
        none that outlives the data).
    context : DistributedContext, optional
        Shares the slicing between the processes of a distributed run.

    Raises
    ------
    DataError
        For unusable data (see :func:`~napari_latent.volumes.cohort.load_cohort`).
    """
    cohort = data if isinstance(data, Cohort) else load_cohort(data, labels)
    if len(cohort) == 0:
        raise DataError("the data set has no volumes")
    store = resolve_cache(cache)
    train_idx, val_idx = split_subjects(len(cohort), val_fraction, seed, cohort.participant_groups())
    total = len(cohort)
    train = yield from iter_load_slices(cohort, train_idx, spec, stop=stop, total=total, cache=store,
                                        context=context)
    validation = yield from iter_load_slices(cohort, val_idx, spec, stop=stop, offset=len(train_idx), total=total,
                                             cache=store, context=context)
    digest = hashlib.sha256(f"{cohort.fingerprint()}|{spec.to_json()}|{val_fraction}|{seed}".encode())
    return TrainingData(train, validation, spec, cohort, digest.hexdigest()[:16], store)


@dataclass(frozen=True)
class Augmentation:
    """Light geometric augmentation: random rotation and isotropic scaling per image.

    Parameters
    ----------
    rotation : float
        Maximum absolute rotation in degrees.
    scale : float
        Maximum relative change of scale (0.05 means 0.95 to 1.05).
    """

    rotation: float = 5.0
    scale: float = 0.05

    @property
    def enabled(self) -> bool:
        """True when any augmentation is active."""
        return self.rotation > 0 or self.scale > 0

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a batch ``(n, 1, S, S)`` with draws from ``generator``; background stays -1."""
        if not self.enabled:
            return images
        n = images.shape[0]
        angles = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(self.rotation)
        scales = 1.0 + (torch.rand(n, generator=generator) * 2 - 1) * self.scale
        cos, sin = torch.cos(angles) / scales, torch.sin(angles) / scales
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
        theta = theta.to(images.device, images.dtype)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        # Sample the shifted image so that padding outside the field of view is -1 (background).
        return F.grid_sample(images + 1.0, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1.0
