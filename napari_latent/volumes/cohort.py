"""Data sets of volumes: a volume file, or a folder of them with an optional ``cohort.csv``.

A volume is anything a registered volume reader accepts (:mod:`napari_latent.volumes.readers`:
NIfTI ``.nii``/``.nii.gz`` built in).

``cohort.csv`` has one row per volume: a ``path`` column (relative to the CSV's folder or
absolute), an optional ``group`` column (for example ``healthy``/``disease``), and any
numeric factor columns (age, lesion load, ...). When present, it is authoritative: only
the volumes it lists are used (a ``path`` may name a DICOM series folder or ``FOLDER::UID``;
an optional ``subject`` column names the participant, so that the sessions of one participant
stay on one side of a split). Without it, every readable volume under the folder is a subject
(searched recursively; a DICOM series folder is one volume). A BIDS root is read by
:mod:`napari_latent.volumes.bids`.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from .dicom_series import split_series_path
from .io import volume_name
from .readers import formats_phrase, readable, suffixes_phrase

COHORT_FILE = "cohort.csv"


@dataclass(frozen=True)
class Subject:
    """One volume of a data set with its labels."""

    path: Path
    group: str | None = None
    factors: dict[str, float] = field(default_factory=dict)
    subject_id: str | None = None
    session: str | None = None
    entities: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The file (or folder) name without extension; a chosen DICOM series adds its UID's tail."""
        folder, uid = split_series_path(self.path)
        if uid is not None:
            return f"{folder.name}_{uid.rsplit('.', 1)[-1]}"
        return volume_name(self.path)

    @property
    def participant(self) -> str:
        """Who the volume belongs to: ``subject_id``, else the volume itself (its path)."""
        return self.subject_id or str(self.path)


@dataclass
class Cohort:
    """A list of subjects, with the table they came from (if any)."""

    root: Path
    subjects: list[Subject]
    table: Path | None = None

    def __len__(self) -> int:
        return len(self.subjects)

    @property
    def factor_names(self) -> list[str]:
        """Numeric columns present for every subject, in table order."""
        if not self.subjects:
            return []
        names = list(self.subjects[0].factors)
        return [n for n in names if all(n in s.factors for s in self.subjects)]

    @property
    def groups(self) -> list[str]:
        """The distinct group labels, sorted."""
        return sorted({s.group for s in self.subjects if s.group})

    def column(self, name: str) -> list[float]:
        """Values of a numeric column for every subject (NaN where empty)."""
        if name not in self.factor_names:
            available = ", ".join(self.factor_names) or "none"
            raise DataError(f"the cohort has no numeric column {name!r} (numeric columns: {available})")
        return [s.factors[name] for s in self.subjects]

    def participant_groups(self) -> list[int] | None:
        """For each entry, the index of its participant; None when every entry is its own.

        Splits by subject keep the entries of one participant (sessions, runs) together.
        """
        ids = [s.participant for s in self.subjects]
        if len(set(ids)) == len(ids):
            return None
        order = {pid: k for k, pid in enumerate(dict.fromkeys(ids))}
        return [order[pid] for pid in ids]

    def fingerprint(self) -> str:
        """A short hash of the subjects' names, sizes and labels (identifies the data set)."""
        digest = hashlib.sha256()
        for s in self.subjects:
            digest.update(f"{s.name}|{_size(s.path)}|{s.group}|{sorted(s.factors.items())}\n".encode())
        return digest.hexdigest()[:16]


def _size(path: Path) -> int | str:
    """A file's size; for a folder volume (a DICOM series), a hash of its files' names and sizes."""
    folder, uid = split_series_path(path)
    if folder.is_file():
        return folder.stat().st_size
    if folder.is_dir():
        digest = hashlib.sha256(str(uid).encode())
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                item = Path(root) / name
                digest.update(f"{item.relative_to(folder)}|{item.stat().st_size}\n".encode())
        return digest.hexdigest()[:16]
    return -1


def _parse_float(text: str) -> float | None:
    text = text.strip()
    if text == "" or text.lower() in {"nan", "na", "n/a"}:
        return math.nan
    try:
        return float(text)
    except ValueError:
        return None


def read_cohort_table(csv_path: str | os.PathLike[str], root: Path | None = None) -> Cohort:
    """Read a cohort table.

    Parameters
    ----------
    csv_path : path-like
        The CSV file. It needs a ``path`` column; ``group`` and numeric columns are optional.
    root : Path, optional
        Folder that relative paths are resolved against (the CSV's folder by default).

    Raises
    ------
    DataError
        If the table is unreadable, lacks a ``path`` column, is empty, or names files that
        do not exist or are not readable volumes.
    """
    csv_path = Path(csv_path)
    root = root or csv_path.parent
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{csv_path}: cannot read the cohort table ({exc})") from exc
    if not rows:
        raise DataError(f"{csv_path}: the cohort table has no rows")
    columns = [c.strip() for c in rows[0] if c is not None]
    if "path" not in columns:
        raise DataError(f"{csv_path}: the cohort table needs a 'path' column (found: {', '.join(columns)})")
    numeric = [c for c in columns if c not in ("path", "group", "subject")
               and all(_parse_float(r.get(c) or "") is not None for r in rows)]
    subjects: list[Subject] = []
    missing: list[str] = []
    for row in rows:
        raw = (row.get("path") or "").strip()
        if not raw:
            raise DataError(f"{csv_path}: a row has an empty 'path'")
        path = Path(raw) if os.path.isabs(raw) else root / raw
        if not split_series_path(path)[0].exists():
            missing.append(raw)
            continue
        if not readable(path):
            raise DataError(f"{csv_path}: {raw} is not a {formats_phrase()} file ({suffixes_phrase()})")
        group = (row.get("group") or "").strip() or None
        factors = {c: float(_parse_float(row.get(c) or "")) for c in numeric}  # type: ignore[arg-type]
        subject_id = (row.get("subject") or "").strip() or None
        subjects.append(Subject(path, group, factors, subject_id=subject_id))
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise DataError(f"{csv_path}: {len(missing)} file(s) named in the table do not exist: {shown}")
    return Cohort(root, subjects, csv_path)


def find_volumes(folder: Path) -> list[Path]:
    """Every readable volume under ``folder``, recursively, in sorted order.

    A folder that is itself a volume (a DICOM series) is one entry and is not searched
    further; hidden files and folders are skipped.
    """
    out: list[Path] = []
    for entry in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
        if entry.is_dir():
            if readable(entry):
                out.append(entry)
            else:
                out.extend(find_volumes(entry))
        elif entry.is_file() and entry.name != COHORT_FILE and readable(entry):
            out.append(entry)
    return out


def load_cohort(data: str | os.PathLike[str], labels: str | os.PathLike[str] | None = None,
                bids_suffix: str = "T1w") -> Cohort:
    """Resolve a DATA argument to a cohort.

    Parameters
    ----------
    data : path-like
        A volume (a file, a DICOM series folder or ``FOLDER::UID``: a cohort of one), a
        folder of volumes searched recursively with an optional ``cohort.csv``, or a BIDS
        root (:mod:`napari_latent.volumes.bids`).
    labels : path-like, optional
        A cohort table to use instead of the folder's ``cohort.csv``.
    bids_suffix : str
        The suffix of a BIDS dataset's volumes (``T1w`` by default).

    Returns
    -------
    Cohort

    Raises
    ------
    DataError
        For a missing path, an empty folder, a folder without readable volumes, or a bad table.
    """
    data = Path(data)
    if labels is not None:
        labels = Path(labels)
        if not labels.is_file():
            raise DataError(f"{labels}: no such labels file")
        return read_cohort_table(labels, root=data if data.is_dir() else labels.parent)
    if not data.exists():
        if readable(data):  # FOLDER::SERIESUID
            return Cohort(split_series_path(data)[0].parent, [Subject(data)])
        raise DataError(f"{data}: no such file or folder")
    if data.is_file():
        if not readable(data):
            raise DataError(f"{data}: not a {formats_phrase()} file or a folder of them")
        return Cohort(data.parent, [Subject(data)])
    table = data / COHORT_FILE
    if table.is_file():
        return read_cohort_table(table)
    if readable(data):  # a folder that is one volume (a reader plugin's folder format)
        return Cohort(data.parent, [Subject(data)])
    from .bids import is_bids_root, load_bids

    if is_bids_root(data):
        return load_bids(data, suffix=bids_suffix)
    entries = sorted(p for p in data.iterdir() if not p.name.startswith("."))
    if not entries:
        raise DataError(f"{data}: the folder is empty")
    volumes = find_volumes(data)
    if not volumes:
        raise DataError(f"{data}: the folder holds no {formats_phrase()} files ({suffixes_phrase()})")
    return Cohort(data, [Subject(p) for p in volumes])
