"""Inversion of many volumes with their slices batched together: the engine of cohort inversion.

Volumes stream through in their order: each is loaded, sliced (:func:`~napari_latent.volumes.slicing.slice_volume`)
and its voxel array dropped; its slices wait in a queue of at most ``open_volumes`` sliced
volumes; batches of ``batch_size`` slices are taken from the front of the queue, across
volume boundaries, and inverted together (:func:`~napari_latent.latent.inversion.iter_invert_slices`:
one encoder pass, or one batched optimisation, per batch); as soon as every slice of the
front volume has its code, its :class:`~napari_latent.latent.codes.LatentCodes` go to the
caller's ``sink`` (which writes or keeps them) and the volume's images are freed. Memory
is therefore bounded by ``open_volumes`` sliced volumes plus one batch, whatever the
number of volumes.

Because no code of a batch depends on the others (see :mod:`napari_latent.latent.inversion`),
a volume gets the same codes as when it is inverted alone, to float rounding.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UserInputError
from ..progress import Operation, ProgressEvent, StopFlag, stop_requested
from ..volumes.io import Volume
from ..volumes.slicing import SliceGeometry, slice_volume
from .codes import LatentCodes
from .inversion import InversionPlan, iter_invert_slices

#: Sliced volumes held at a time unless told otherwise.
DEFAULT_OPEN_VOLUMES = 4


@dataclass(frozen=True)
class VolumeSource:
    """One volume to invert: a name for messages, the source recorded in its codes, and how to open it."""

    name: str
    source: str
    open: Callable[[], Volume]


@dataclass(eq=False)
class _Sliced:
    """A sliced volume waiting in the queue, with the codes found so far."""

    position: int
    item: VolumeSource
    targets: torch.Tensor
    geometry: SliceGeometry
    codes: torch.Tensor
    errors: np.ndarray
    taken: int = 0
    done: int = 0

    @property
    def count(self) -> int:
        return len(self.targets)


def _slice(plan: InversionPlan, position: int, item: VolumeSource) -> _Sliced:
    volume = item.open()
    targets, geometry = slice_volume(volume, plan.spec)
    del volume  # only the slices stay in memory
    dim = plan.model.latent_dim(plan.space)
    return _Sliced(position, item, targets, geometry, torch.zeros(len(targets), dim),
                   np.zeros(len(targets), dtype=np.float64))


def iter_invert_volumes(plan: InversionPlan, items: Sequence[VolumeSource],
                        sink: Callable[[int, LatentCodes], None], open_volumes: int = DEFAULT_OPEN_VOLUMES,
                        stop: StopFlag | None = None, stage: str = "invert") -> Operation[int]:
    """Invert volumes with their slices batched across volumes (a generator; see the module docstring).

    Parameters
    ----------
    plan : InversionPlan
        From :func:`~napari_latent.latent.inversion.plan_inversion`; ``plan.batch_size``
        slices go through the encoder or the optimiser together.
    items : sequence of VolumeSource
        The volumes, in order.
    sink : callable
        ``sink(position, codes)`` is called once per volume, in order, as soon as its codes
        are complete (``position`` indexes ``items``).
    open_volumes : int
        Sliced volumes held at most at a time (at least 1).
    stop : StopFlag, optional
        Stops after the current optimisation step: the volumes whose slices all have codes
        by then still go to ``sink``, the others are skipped. If no volume is complete
        yet, the first one is completed first (its remaining slices get one optimisation
        step), as a stopped single-volume inversion returns the codes it has.
    stage : str
        The stage of the progress events.

    Returns
    -------
    int
        The number of volumes given to ``sink``.
    """
    if open_volumes < 1:
        raise UserInputError(f"open volumes must be at least 1, got {open_volumes}")
    total = len(items)
    queue: deque[_Sliced] = deque()
    loaded = finished = 0
    batch_number = 0
    stopping = False
    while True:
        waiting = sum(entry.count - entry.taken for entry in queue)
        while loaded < total and len(queue) < open_volumes and waiting < plan.batch_size and not stopping:
            item = items[loaded]
            yield ProgressEvent(finished, total, f"slicing {item.name}", stage=stage)
            entry = _slice(plan, loaded, item)
            queue.append(entry)
            waiting += entry.count
            loaded += 1
        if waiting == 0:
            break
        batch, keys, room = [], [], plan.batch_size
        for entry in queue:
            take = min(entry.count - entry.taken, room)
            if take <= 0:
                continue
            begin, entry.taken = entry.taken, entry.taken + take
            batch.append((entry, begin, entry.taken))
            keys.append(entry.geometry.indices[begin:entry.taken])
            room -= take
            if room == 0:
                break
        batch_number += 1
        targets = torch.cat([entry.targets[begin:end] for entry, begin, end in batch])
        inner = iter_invert_slices(plan, targets, np.concatenate(keys), stop)
        while True:
            try:
                event = next(inner)
            except StopIteration as result:
                codes, errors = result.value
                break
            counter = f" {event.step}/{event.total}" if event.total else ""
            yield ProgressEvent(finished, total, f"batch {batch_number} ({len(targets)} slices): {event.message}"
                                f"{counter}", event.metrics, stage=stage)
        offset = 0
        for entry, begin, end in batch:
            entry.codes[begin:end] = codes[offset:offset + end - begin]
            entry.errors[begin:end] = errors[offset:offset + end - begin]
            entry.done += end - begin
            offset += end - begin
        while queue and queue[0].done == queue[0].count:
            entry = queue.popleft()
            sink(entry.position, plan.codes(entry.codes, entry.errors, entry.geometry, entry.item.source))
            finished += 1
            yield ProgressEvent(finished, total, f"inverted {entry.item.name}",
                                {"slices": entry.count, "mean_mse": float(entry.errors.mean())}, stage=stage)
        stopping = stop_requested(stop)
        if stopping and finished > 0:
            break
    return finished
