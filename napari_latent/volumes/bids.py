"""BIDS datasets as data sets: subjects and sessions from ``sub-*/[ses-*/]anat/``, labels from
``participants.tsv``.

A small reader rather than pybids: napari-latent needs only the anatomical files of one suffix
and the participants table, while pybids pulls in SQLAlchemy, formulaic and the BIDS
validator's schema and indexes every file of the dataset into a database before the first
query (seconds to minutes on a large dataset). The rules used here are the BIDS
specification's for these two things:

* a folder is a BIDS root when it holds ``dataset_description.json``, or ``sub-*`` folders
  with an ``anat/`` or ``ses-*/`` inside (a cohort of DICOM folders named ``sub-01`` is not);
* the volumes are ``sub-<label>/[ses-<label>/]anat/sub-<label>[_ses-<label>][_<key>-<value>...]_<suffix>.<ext>``
  with any extension a volume reader accepts (``.nii.gz`` usually); ``derivatives/``,
  ``sourcedata/``, ``code/``, hidden entries and JSON sidecars are ignored; every run and
  acquisition of a session is its own entry, with its entities;
* ``participants.tsv`` (tab-separated, ``n/a`` for missing values) is keyed by
  ``participant_id`` (``sub-01``); its ``group`` column (or the one named by
  ``group_column``) gives the groups and its numeric columns the factors. When the table
  exists, every subject with a volume must have a row (a missing row is an error that names
  the subjects); without a table the entries have no labels.

Each entry's ``subject_id`` is its participant: the training split (and the supervised
method's held-out subjects) keep all sessions and runs of one participant on the same side.
"""

from __future__ import annotations

import csv
import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DataError
from .readers import readable

if TYPE_CHECKING:
    from .cohort import Cohort

#: Folders of a BIDS root that hold no raw subject data.
IGNORED_FOLDERS = frozenset({"derivatives", "sourcedata", "code", "stimuli", "phenotype"})

_ENTITY = re.compile(r"^([a-zA-Z0-9]+)-([a-zA-Z0-9]+)$")


def is_bids_root(folder: Path) -> bool:
    """True for a folder holding ``dataset_description.json`` or ``sub-*/anat``/``sub-*/ses-*`` folders (cheap)."""
    if not folder.is_dir():
        return False
    if (folder / "dataset_description.json").is_file():
        return True
    try:
        return any(entry.is_dir() and entry.name.startswith("sub-") and _has_bids_layout(Path(entry.path))
                   for entry in os.scandir(folder))
    except OSError:
        return False


def _has_bids_layout(subject: Path) -> bool:
    """``sub-*/anat`` or ``sub-*/ses-*`` (a folder of DICOM slices named ``sub-01`` is not BIDS)."""
    return (subject / "anat").is_dir() or any(p.is_dir() and p.name.startswith("ses-") for p in subject.iterdir())


def parse_entities(name: str) -> tuple[dict[str, str], str] | None:
    """``sub-01_ses-2_run-1_T1w.nii.gz`` to ``({"sub": "01", "ses": "2", "run": "1"}, "T1w")``.

    Returns None for a name that is not a BIDS file name (no ``sub`` entity first, or a bad part).
    """
    stem = name.split(".", 1)[0]
    parts = stem.split("_")
    if len(parts) < 2:
        return None
    entities: dict[str, str] = {}
    for part in parts[:-1]:
        match = _ENTITY.match(part)
        if match is None:
            return None
        entities[match.group(1)] = match.group(2)
    if next(iter(entities), None) != "sub":
        return None
    return entities, parts[-1]


def _read_participants(path: Path, group_column: str) -> tuple[dict[str, tuple[str | None, dict[str, float]]],
                                                               list[str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read the participants table ({exc})") from exc
    if not rows:
        return {}, []
    columns = [c.strip() for c in rows[0] if c is not None]
    if "participant_id" not in columns:
        raise DataError(f"{path}: the participants table needs a 'participant_id' column "
                        f"(found: {', '.join(columns)})")

    def number(text: str) -> float | None:
        text = (text or "").strip()
        if text.lower() in ("", "n/a", "na", "nan"):
            return math.nan
        try:
            return float(text)
        except ValueError:
            return None

    numeric = [c for c in columns if c not in ("participant_id", group_column)
               and all(number(r.get(c) or "") is not None for r in rows)]
    table: dict[str, tuple[str | None, dict[str, float]]] = {}
    for row in rows:
        pid = (row.get("participant_id") or "").strip()
        if not pid:
            raise DataError(f"{path}: a row has an empty participant_id")
        if not pid.startswith("sub-"):
            pid = f"sub-{pid}"
        group = (row.get(group_column) or "").strip()
        group = None if group.lower() in ("", "n/a") else group
        table[pid] = (group, {c: float(number(row.get(c) or "")) for c in numeric})  # type: ignore[arg-type]
    return table, numeric


def load_bids(root: str | os.PathLike[str], suffix: str = "T1w", group_column: str = "group") -> Cohort:
    """The cohort of a BIDS root: one entry per anatomical volume of ``suffix``.

    Parameters
    ----------
    root : path-like
        The dataset's root folder.
    suffix : str
        The BIDS suffix of the volumes (``T1w``, ``T2w``, ``FLAIR``, ...).
    group_column : str
        The ``participants.tsv`` column holding the groups.

    Returns
    -------
    Cohort
        Entries sorted by subject, session and file name; each with ``subject_id``
        (``sub-01``), ``session`` (``ses-02`` or None) and the file's entities.

    Raises
    ------
    DataError
        For a root without volumes of the suffix (the message names the suffixes found), a
        bad participants table, or subjects missing from it.
    """
    from .cohort import Cohort, Subject

    root = Path(root)
    found: list[tuple[str, str | None, Path, dict[str, str]]] = []
    other_suffixes: set[str] = set()
    for subject_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("sub-")):
        sessions = sorted(p for p in subject_dir.iterdir() if p.is_dir() and p.name.startswith("ses-"))
        for session_dir in sessions or [subject_dir]:
            anat = session_dir / "anat"
            if not anat.is_dir():
                continue
            for path in sorted(anat.iterdir()):
                if path.name.startswith(".") or path.name.lower().endswith((".json", ".tsv", ".bval", ".bvec")):
                    continue
                parsed = parse_entities(path.name)
                if parsed is None or not readable(path):
                    continue
                entities, file_suffix = parsed
                if file_suffix != suffix:
                    other_suffixes.add(file_suffix)
                    continue
                session = f"ses-{entities['ses']}" if "ses" in entities else None
                found.append((subject_dir.name, session, path, entities))
    if not found:
        seen = f" (suffixes found: {', '.join(sorted(other_suffixes))}; choose one with --bids-suffix)" \
            if other_suffixes else ""
        raise DataError(f"{root}: a BIDS dataset without {suffix} volumes in sub-*/[ses-*/]anat/{seen}")
    table_path = root / "participants.tsv"
    table: dict[str, tuple[str | None, dict[str, float]]] = {}
    if table_path.is_file():
        table, _ = _read_participants(table_path, group_column)
        missing = sorted({pid for pid, *_ in found if pid not in table})
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise DataError(f"{table_path}: {len(missing)} subject(s) with volumes have no row: {shown}")
    subjects = []
    for pid, session, path, entities in found:
        group, factors = table.get(pid, (None, {}))
        subjects.append(Subject(path, group, dict(factors), subject_id=pid, session=session,
                                entities=dict(entities)))
    return Cohort(root, subjects, table_path if table_path.is_file() else None)
