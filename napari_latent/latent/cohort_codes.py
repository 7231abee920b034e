"""Latent codes of a whole labelled cohort (for data-driven discovery and evaluation)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch

from ..errors import DataError
from ..models.base import GenerativeModel
from ..progress import Operation, StopFlag
from ..volumes.cohort import Cohort, load_cohort
from ..volumes.io import open_volume
from .batched_inversion import DEFAULT_OPEN_VOLUMES, VolumeSource, iter_invert_volumes
from .codes import LatentCodes
from .inversion import InversionSettings, plan_inversion


@dataclass
class CohortCodes:
    """Codes of every kept slice of every subject of a cohort.

    Attributes
    ----------
    codes : torch.Tensor
        ``(n, d)`` codes of all slices, subject after subject.
    subject : numpy.ndarray
        ``(n,)`` subject index of each code (into ``cohort.subjects``).
    position : numpy.ndarray
        ``(n,)`` relative slice position in [0, 1] within its volume's kept slices.
    cohort : Cohort
    per_subject : list of LatentCodes
    """

    codes: torch.Tensor
    subject: np.ndarray
    position: np.ndarray
    cohort: Cohort
    space: str
    per_subject: list[LatentCodes] = field(default_factory=list)

    def groups(self) -> np.ndarray:
        """The group label of each code's subject (``""`` when unlabelled)."""
        labels = [s.group or "" for s in self.cohort.subjects]
        return np.asarray([labels[i] for i in self.subject])

    def factor(self, name: str) -> np.ndarray:
        """A numeric cohort column, per code."""
        values = np.asarray(self.cohort.column(name), dtype=np.float64)
        return values[self.subject]

    @classmethod
    def from_codes(cls, cohort: Cohort, per_subject: list[LatentCodes], space: str) -> CohortCodes:
        """Join the codes of the first ``len(per_subject)`` subjects of ``cohort`` (in its order)."""
        subject = [np.full(len(codes), index) for index, codes in enumerate(per_subject)]
        position = [np.linspace(0.0, 1.0, len(codes)) if len(codes) > 1 else np.zeros(1) for codes in per_subject]
        return cls(torch.cat([c.codes for c in per_subject]), np.concatenate(subject), np.concatenate(position),
                   cohort, space, per_subject)


def volume_sources(cohort: Cohort) -> list[VolumeSource]:
    """The cohort's volumes as :class:`~napari_latent.latent.batched_inversion.VolumeSource` items (opened lazily)."""
    return [VolumeSource(item.name, str(item.path), partial(open_volume, item.path)) for item in cohort.subjects]


def iter_cohort_codes(model: GenerativeModel, data: str | os.PathLike[str] | Cohort, space: str | None = None,
                      method: str = "auto", steps: int = 100, labels: str | os.PathLike[str] | None = None,
                      stop: StopFlag | None = None, batch_size: int | None = None,
                      open_volumes: int = DEFAULT_OPEN_VOLUMES) -> Operation[CohortCodes]:
    """Invert every volume of a cohort, slices of several volumes batched together.

    Parameters
    ----------
    model : GenerativeModel
    data : path-like or Cohort
        A folder of volumes with ``cohort.csv``, a single volume, or a cohort.
    space : str, optional
        Latent space (inversion's default otherwise).
    method : str
        Inversion method (``auto``: the model's encoder if it has one).
    steps : int
        Optimisation steps where optimisation is used.
    labels : path-like, optional
        A cohort table to use instead of the folder's ``cohort.csv``.
    stop : StopFlag, optional
        Returns the codes of the volumes finished so far (at least the first volume's).
    batch_size : int, optional
        Slices inverted together, across volumes (see :class:`~napari_latent.latent.inversion.InversionSettings`).
    open_volumes : int
        Sliced volumes held in memory at a time (see :mod:`~napari_latent.latent.batched_inversion`).
    """
    cohort = data if isinstance(data, Cohort) else load_cohort(data, labels)
    if len(cohort) == 0:
        raise DataError("the cohort has no volumes")
    plan = plan_inversion(model, method, space, settings=InversionSettings(steps=steps, batch_size=batch_size))
    results: list[LatentCodes] = []
    yield from iter_invert_volumes(plan, volume_sources(cohort), lambda _, codes: results.append(codes),
                                   open_volumes, stop, stage="codes")
    return CohortCodes.from_codes(cohort, results, plan.space)
