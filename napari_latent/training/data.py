"""Training data: volumes sliced by the model's SliceSpec, split by subject, augmented.

The split into training and validation is by *subject* (whole volumes), never by slice:
neighbouring slices of one volume are nearly identical, so a slice-level split would
leak the validation set into training.
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
from ..volumes.io import open_volume
from ..volumes.slicing import SliceSpec, slice_volume


@dataclass
class SliceSet:
    """Model-ready slices of some subjects.

    Attributes
    ----------
    images : torch.Tensor
        ``(n, 1, S, S)`` float32 in [-1, 1].
    subject : torch.Tensor
        ``(n,)`` index of each slice's subject in :attr:`names`.
    names : list of str
        Subject names.
    """

    images: torch.Tensor
    subject: torch.Tensor
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass
class TrainingData:
    """Training and validation slices plus where they came from."""

    train: SliceSet
    validation: SliceSet
    spec: SliceSpec
    cohort: Cohort
    fingerprint: str


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
                     stop: StopFlag | None = None, offset: int = 0, total: int | None = None) -> Operation[SliceSet]:
    """Open and slice the given subjects (a generator with progress per volume)."""
    images: list[torch.Tensor] = []
    subject: list[torch.Tensor] = []
    names: list[str] = []
    for count, index in enumerate(indices):
        item = cohort.subjects[index]
        volume = open_volume(item.path)
        batch, _ = slice_volume(volume, spec)
        images.append(batch)
        subject.append(torch.full((batch.shape[0],), len(names), dtype=torch.long))
        names.append(item.name)
        yield ProgressEvent(offset + count + 1, total or len(indices), f"sliced {item.name}",
                            {"slices": batch.shape[0]}, stage=stage)
        if stop_requested(stop):
            break
    if not images:
        empty = torch.zeros((0, 1, spec.size, spec.size))
        return SliceSet(empty, torch.zeros(0, dtype=torch.long), [])
    return SliceSet(torch.cat(images), torch.cat(subject), names)


def iter_prepare_data(data: str | os.PathLike[str] | Cohort, spec: SliceSpec, val_fraction: float = 0.2,
                      seed: int = 0, labels: str | os.PathLike[str] | None = None,
                      stop: StopFlag | None = None) -> Operation[TrainingData]:
    """Load a data set, slice it and split it by subject.

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

    Raises
    ------
    DataError
        For unusable data (see :func:`~napari_latent.volumes.cohort.load_cohort`).
    """
    cohort = data if isinstance(data, Cohort) else load_cohort(data, labels)
    if len(cohort) == 0:
        raise DataError("the data set has no volumes")
    train_idx, val_idx = split_subjects(len(cohort), val_fraction, seed, cohort.participant_groups())
    total = len(cohort)
    train = yield from iter_load_slices(cohort, train_idx, spec, stop=stop, total=total)
    validation = yield from iter_load_slices(cohort, val_idx, spec, stop=stop, offset=len(train_idx), total=total)
    digest = hashlib.sha256(f"{cohort.fingerprint()}|{spec.to_json()}|{val_fraction}|{seed}".encode())
    return TrainingData(train, validation, spec, cohort, digest.hexdigest()[:16])


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
