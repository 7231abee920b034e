"""Latent codes of a whole labelled cohort (for data-driven discovery and evaluation)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import DataError
from ..models.base import GenerativeModel
from ..progress import Operation, ProgressEvent, StopFlag, stop_requested
from ..volumes.cohort import Cohort, load_cohort
from ..volumes.io import open_volume
from .codes import LatentCodes
from .inversion import InversionSettings, iter_invert


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


def iter_cohort_codes(model: GenerativeModel, data: str | os.PathLike[str] | Cohort, space: str | None = None,
                      method: str = "auto", steps: int = 100, labels: str | os.PathLike[str] | None = None,
                      stop: StopFlag | None = None) -> Operation[CohortCodes]:
    """Invert every volume of a cohort (encoder where available; else batched optimisation).

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
    """
    cohort = data if isinstance(data, Cohort) else load_cohort(data, labels)
    if len(cohort) == 0:
        raise DataError("the cohort has no volumes")
    results: list[LatentCodes] = []
    subject, position = [], []
    for index, item in enumerate(cohort.subjects):
        volume = open_volume(item.path)
        inner = iter_invert(model, volume, method=method, space=space,
                            settings=InversionSettings(steps=steps), stop=stop)
        while True:
            try:
                next(inner)
            except StopIteration as done:
                codes: LatentCodes = done.value
                break
        results.append(codes)
        subject.append(np.full(len(codes), index))
        position.append(np.linspace(0.0, 1.0, len(codes)) if len(codes) > 1 else np.zeros(1))
        yield ProgressEvent(index + 1, len(cohort), f"inverted {item.name}", {"slices": len(codes)}, stage="codes")
        if stop_requested(stop):
            break
    return CohortCodes(torch.cat([c.codes for c in results]), np.concatenate(subject), np.concatenate(position),
                       cohort, results[0].space, results)
