"""A cohort inverted into a folder: one codes file per volume and an ``index.json``, optionally over torchrun ranks.

Layout of the folder (``napari-latent invert MODEL DATA --out DIR``)::

    DIR/
      index.json            what was inverted, how, and one entry per volume
      <name>.safetensors    the LatentCodes of each volume (LatentCodes.load reads one)

``<name>`` is the volume's name in the cohort (:attr:`~napari_latent.volumes.cohort.Subject.name`:
the file name without its extension; a BIDS entry's full name), with characters other than
letters, digits, ``.``, ``_`` and ``-`` replaced by ``_``; a name that repeats (the same
file name in two sub-folders) gets ``_2``, ``_3``, ... in cohort order. The index holds the
format and version, the model's name and fingerprint, the space, method and settings, the
cohort's root, table and fingerprint, the number of processes, and per volume its
``name``, ``path`` (as the cohort gives it), ``codes`` (the file name, relative to
``DIR``), ``slices``, ``mean_mse`` and its labels (``group``, ``factors`` with ``null`` for
a missing value, ``subject`` when the cohort has them), in cohort order. Nothing else about the patient: the names come
from the cohort.

Writes are atomic. The index is removed when a run starts and written only when every
volume is done, so an interrupted run leaves complete codes files (those of the volumes
finished) and no index, never a stale one.

Under torchrun (``WORLD_SIZE > 1``) rank ``r`` inverts the volumes ``i`` with
``i % WORLD_SIZE == r`` and writes their codes files; the ranks then sum a small table of
per-volume results (a collective that also serves as the barrier), and rank 0 writes the
index. A volume's codes do not depend on the rank that inverted it.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._atomic import write_json_atomic
from ..errors import DataError, UserInputError
from ..models.base import GenerativeModel
from ..progress import Operation, ProgressArg, StopFlag, run_operation
from ..training.distributed import DistributedContext
from ..volumes.cohort import Cohort, Subject
from .batched_inversion import DEFAULT_OPEN_VOLUMES, iter_invert_volumes
from .codes import LatentCodes
from .cohort_codes import CohortCodes, volume_sources
from .inversion import InversionSettings, plan_inversion

INDEX_NAME = "index.json"
INDEX_FORMAT = "napari-latent-cohort-codes"
INDEX_VERSION = 1


@dataclass
class CohortInversion:
    """The index of a folder of cohort codes.

    Attributes
    ----------
    folder : Path
    header : dict
        Everything but the volumes (model, space, method, settings, cohort, world size).
    volumes : list of dict
        One entry per volume, in cohort order (see the module docstring).
    complete : bool
        Every volume was inverted (False only for a stopped run, whose index is not written).
    """

    folder: Path
    header: dict[str, Any]
    volumes: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = True

    @property
    def index_path(self) -> Path:
        """The folder's ``index.json``."""
        return self.folder / INDEX_NAME

    @property
    def slices(self) -> int:
        """Slices inverted in all."""
        return sum(int(v["slices"]) for v in self.volumes)

    @property
    def mean_mse(self) -> float:
        """The mean per-slice MSE over every slice of every volume."""
        slices = self.slices
        return sum(v["mean_mse"] * v["slices"] for v in self.volumes) / slices if slices else float("nan")

    def table(self) -> list[dict[str, Any]]:
        """One row per volume: name, slices, mean MSE, codes file."""
        return [{"volume": v["name"], "slices": v["slices"], "mean_mse": v["mean_mse"], "codes": v["codes"]}
                for v in self.volumes]

    def to_json(self) -> dict[str, Any]:
        """The index document."""
        return {"format": INDEX_FORMAT, "format_version": INDEX_VERSION, **self.header, "volumes": self.volumes}


def codes_file_names(cohort: Cohort) -> list[str]:
    """The codes file of each volume: its safe name plus ``.safetensors``, made unique in cohort order."""
    names: list[str] = []
    seen: set[str] = set()
    for subject in cohort.subjects:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", subject.name).strip("._") or "volume"
        name, number = base, 1
        while name.lower() in seen or name.lower() == Path(INDEX_NAME).stem:
            number += 1
            name = f"{base}_{number}"
        seen.add(name.lower())
        names.append(f"{name}.safetensors")
    return names


def check_output_folder(out: str | os.PathLike[str]) -> Path:
    """``out`` as a folder for cohort codes; a :class:`UserInputError` if it is an existing file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserInputError(f"{out}: is a file; the codes of a cohort go into a folder")
    return out


def _entry(subject: Subject, codes_file: str, slices: int, mean_mse: float) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": subject.name, "path": str(subject.path), "codes": codes_file,
                             "slices": int(slices), "mean_mse": float(mean_mse)}
    if subject.group:
        entry["group"] = subject.group
    if subject.factors:
        entry["factors"] = {k: float(v) if math.isfinite(v) else None for k, v in subject.factors.items()}
    if subject.subject_id:
        entry["subject"] = subject.subject_id
    return entry


def iter_invert_cohort(model: GenerativeModel, cohort: Cohort, out: str | os.PathLike[str], method: str = "auto",
                       space: str | None = None, steps: int | None = None, settings: InversionSettings | None = None,
                       open_volumes: int = DEFAULT_OPEN_VOLUMES, context: DistributedContext | None = None,
                       stop: StopFlag | None = None, seed: int = 0) -> Operation[CohortInversion]:
    """Invert every volume of ``cohort`` into ``out`` (a generator; see :func:`invert_cohort`)."""
    out = check_output_folder(out)
    if len(cohort) == 0:
        raise DataError("the cohort has no volumes")
    context = context or DistributedContext()
    plan = plan_inversion(model, method, space, steps, settings, seed=seed)
    names = codes_file_names(cohort)
    if context.is_main:
        (out / INDEX_NAME).unlink(missing_ok=True)  # a stale index never outlives the start of a new run
    mine = list(range(context.rank, len(cohort), context.world_size))
    results = torch.zeros((len(cohort), 3), dtype=torch.float64)  # done, slices, mean MSE

    def write(position: int, codes: LatentCodes) -> None:
        index = mine[position]
        codes.save(out / names[index])
        results[index] = torch.tensor([1.0, len(codes), float(codes.errors.mean())], dtype=torch.float64)

    sources = volume_sources(cohort)
    yield from iter_invert_volumes(plan, [sources[i] for i in mine], write, open_volumes, stop)
    if context.is_distributed:  # every rank's results (NCCL reduces on the GPU); a barrier too
        results = context.all_reduce_sum(results.to(model.device)).cpu()
    header = {"model": model.name, "model_fingerprint": model.fingerprint, "space": plan.space,
              "method": plan.method, "settings": plan.used_settings(),
              "cohort": {"root": str(cohort.root), "table": str(cohort.table) if cohort.table else None,
                         "fingerprint": cohort.fingerprint(), "factors": cohort.factor_names},
              "world_size": context.world_size}
    volumes = [_entry(subject, names[i], int(results[i, 1]), float(results[i, 2]))
               for i, subject in enumerate(cohort.subjects) if results[i, 0] > 0]
    result = CohortInversion(out, header, volumes, complete=len(volumes) == len(cohort))
    if result.complete and context.is_main:
        write_json_atomic(result.index_path, result.to_json())
    context.barrier()
    return result


def invert_cohort(model: GenerativeModel, cohort: Cohort, out: str | os.PathLike[str], method: str = "auto",
                  space: str | None = None, steps: int | None = None, settings: InversionSettings | None = None,
                  open_volumes: int = DEFAULT_OPEN_VOLUMES, context: DistributedContext | None = None,
                  progress: ProgressArg = None, stop: StopFlag | None = None) -> CohortInversion:
    """Invert every volume of a cohort into a folder of codes files and an index.

    Slices of several volumes are inverted together (:mod:`~napari_latent.latent.batched_inversion`);
    each volume's codes are written as soon as they are complete.

    Parameters
    ----------
    model : GenerativeModel
    cohort : Cohort
        From :func:`~napari_latent.volumes.cohort.load_cohort` (a folder, a BIDS root or a
        ``cohort.csv``).
    out : path-like
        The folder (created if missing; see the module docstring for its layout).
    method, space, steps, settings
        As for :func:`~napari_latent.latent.inversion.invert`; ``settings.batch_size`` is the
        number of slices inverted together, across volumes.
    open_volumes : int
        Sliced volumes held in memory at a time.
    context : DistributedContext, optional
        This process's place in a torchrun job
        (:func:`~napari_latent.training.distributed.distributed_context`): its rank inverts
        its share of the volumes, rank 0 writes the index. One process by default.
    progress : callable, bool or None
        ``True`` for a terminal progress bar, a callable for every event.
    stop : StopFlag, optional
        Stops early; the volumes finished keep their codes files, and no index is written.

    Returns
    -------
    CohortInversion
        The index (``complete`` is False after a stop).
    """
    return run_operation(iter_invert_cohort(model, cohort, out, method, space, steps, settings, open_volumes,
                                            context, stop), progress)


def read_codes_index(folder: str | os.PathLike[str]) -> CohortInversion:
    """Read the ``index.json`` of a folder written by :func:`invert_cohort`.

    Raises
    ------
    DataError
        When the folder or its index is missing or is not a napari-latent cohort index.
    """
    folder = Path(folder)
    path = folder / INDEX_NAME
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder of cohort codes")
    if not path.is_file():
        raise DataError(f"{folder}: no {INDEX_NAME} (write one with 'napari-latent invert MODEL DATA --out "
                        f"{folder}'; an interrupted run leaves none)")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable cohort codes index ({exc})") from exc
    if not isinstance(document, dict) or document.get("format") != INDEX_FORMAT:
        raise DataError(f"{path}: not a napari-latent cohort codes index")
    if int(document.get("format_version", 0)) > INDEX_VERSION:
        raise DataError(f"{path}: cohort codes index version {document.get('format_version')} is newer than this "
                        f"napari-latent reads ({INDEX_VERSION}); update napari-latent")
    volumes = document.pop("volumes", None)
    if not isinstance(volumes, list) or not volumes:
        raise DataError(f"{path}: the index lists no volumes")
    header = {k: v for k, v in document.items() if k not in ("format", "format_version")}
    return CohortInversion(folder, header, volumes)


def load_cohort_codes(folder: str | os.PathLike[str], model: GenerativeModel | None = None) -> CohortCodes:
    """The :class:`~napari_latent.latent.cohort_codes.CohortCodes` of a folder written by :func:`invert_cohort`.

    The cohort (names, paths, groups and factors) is rebuilt from the index, so the volumes
    need not be at hand. With ``model``, the codes must belong to it.

    Raises
    ------
    DataError
        For a missing or unreadable index or codes file.
    MismatchError
        When the codes belong to another model.
    """
    index = read_codes_index(folder)
    per_subject, subjects = [], []
    for entry in index.volumes:
        codes = LatentCodes.load(index.folder / entry["codes"])
        if model is not None:
            codes.check_model(model)
        per_subject.append(codes)
        factors = {k: math.nan if v is None else float(v) for k, v in (entry.get("factors") or {}).items()}
        subjects.append(Subject(Path(entry["path"]), entry.get("group"), factors, subject_id=entry.get("subject")))
    cohort_info = index.header.get("cohort") or {}
    table = cohort_info.get("table")
    cohort = Cohort(Path(cohort_info.get("root") or index.folder), subjects, Path(table) if table else None)
    return CohortCodes.from_codes(cohort, per_subject, per_subject[0].space)
