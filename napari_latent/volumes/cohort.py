"""Data sets of volumes: a volume file, or a folder of them with an optional ``cohort.csv``.

A volume is anything a registered volume reader accepts (:mod:`napari_latent.volumes.readers`:
NIfTI ``.nii``/``.nii.gz`` built in).

``cohort.csv`` has one row per volume: a ``path`` column (relative to the CSV's folder or
absolute), an optional ``group`` column (for example ``healthy``/``disease``), and any
numeric factor columns (age, lesion load, ...). When present, it is authoritative: only
the volumes it lists are used. Without it, every readable volume directly in the folder is a
subject (a ``.nii``/``.nii.gz`` file, or a file or folder a reader plugin accepts; other
sub-folders are not searched).
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from .io import volume_name
from .readers import formats_phrase, readable, suffixes_phrase

COHORT_FILE = "cohort.csv"


@dataclass(frozen=True)
class Subject:
    """One volume of a data set with its labels."""

    path: Path
    group: str | None = None
    factors: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The file name without extension."""
        return volume_name(self.path)


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

    def fingerprint(self) -> str:
        """A short hash of the subjects' names, sizes and labels (identifies the data set)."""
        digest = hashlib.sha256()
        for s in self.subjects:
            size = s.path.stat().st_size if s.path.exists() else -1
            digest.update(f"{s.name}|{size}|{s.group}|{sorted(s.factors.items())}\n".encode())
        return digest.hexdigest()[:16]


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
    numeric = [c for c in columns if c not in ("path", "group")
               and all(_parse_float(r.get(c) or "") is not None for r in rows)]
    subjects: list[Subject] = []
    missing: list[str] = []
    for row in rows:
        raw = (row.get("path") or "").strip()
        if not raw:
            raise DataError(f"{csv_path}: a row has an empty 'path'")
        path = Path(raw) if os.path.isabs(raw) else root / raw
        if not path.is_file():
            missing.append(raw)
            continue
        if not readable(path):
            raise DataError(f"{csv_path}: {raw} is not a {formats_phrase()} file ({suffixes_phrase()})")
        group = (row.get("group") or "").strip() or None
        factors = {c: float(_parse_float(row.get(c) or "")) for c in numeric}  # type: ignore[arg-type]
        subjects.append(Subject(path, group, factors))
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise DataError(f"{csv_path}: {len(missing)} file(s) named in the table do not exist: {shown}")
    return Cohort(root, subjects, csv_path)


def load_cohort(data: str | os.PathLike[str], labels: str | os.PathLike[str] | None = None) -> Cohort:
    """Resolve a DATA argument to a cohort.

    Parameters
    ----------
    data : path-like
        A volume file (a cohort of one), or a folder of them with an optional
        ``cohort.csv``.
    labels : path-like, optional
        A cohort table to use instead of the folder's ``cohort.csv``.

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
    entries = sorted(p for p in data.iterdir() if not p.name.startswith("."))
    if not entries:
        raise DataError(f"{data}: the folder is empty")
    volumes = [p for p in entries if (p.is_file() or p.is_dir()) and readable(p)]
    if not volumes:
        raise DataError(f"{data}: the folder holds no {formats_phrase()} files ({suffixes_phrase()})")
    return Cohort(data, [Subject(p) for p in volumes])
