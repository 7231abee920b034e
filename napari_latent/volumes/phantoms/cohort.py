"""Writing cohorts of healthy and disease phantoms with a ``cohort.csv``."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..._atomic import write_text_atomic
from ...errors import DataError
from ..io import save_volume
from .anatomy import _check_size, make_phantom
from .factors import FACTOR_NAMES, PhantomFactors, sample_factors


@dataclass
class CohortInfo:
    """What :func:`make_phantom_cohort` wrote.

    Attributes
    ----------
    folder : Path
        The output folder.
    csv_path : Path
        The ``cohort.csv`` table.
    paths : list of Path
        The subject volumes, in table order.
    groups : list of str
        ``"healthy"`` or ``"disease"`` per subject.
    factors : list of PhantomFactors
        The generating factors per subject.
    """

    folder: Path
    csv_path: Path
    paths: list[Path]
    groups: list[str]
    factors: list[PhantomFactors]


def make_phantom_cohort(out_dir: str | os.PathLike, n_subjects: int = 20, size: int = 64, seed: int = 0,
                        spacing: float | None = None, disease_fraction: float = 0.5,
                        write_labels: bool = True,
                        progress: Callable[[int, int], None] | None = None) -> CohortInfo:
    """Write a cohort of healthy and disease phantoms with a ``cohort.csv``.

    Parameters
    ----------
    out_dir : path-like
        Output folder (created if missing). Files already there with the same names are
        replaced.
    n_subjects : int
        Number of subjects (at least 1).
    size : int
        Voxels along each axis (16..512).
    seed : int
        Seed of everything: groups, factors and each subject's anatomy and noise. The same
        arguments write byte-identical files.
    spacing : float, optional
        Voxel size in mm (default: a 192 mm field of view).
    disease_fraction : float
        Fraction of disease subjects, 0..1; exactly ``round(n_subjects * disease_fraction)``
        subjects are in the disease group, in an order shuffled by the seed.
    write_labels : bool
        Also write each subject's tissue labels (uint8) as ``labels/sub-XXX_labels.nii.gz``.
    progress : callable, optional
        Called as ``progress(done, total)`` after each subject.

    Returns
    -------
    CohortInfo
        The folder, the table and, per subject, the volume path, the group and the factors.

    Raises
    ------
    DataError
        For fewer than one subject, a size outside 16..512, a non-positive spacing or a
        disease fraction outside 0..1.
    """
    if isinstance(n_subjects, bool) or not isinstance(n_subjects, int | np.integer) or n_subjects < 1:
        raise DataError(f"n_subjects must be a whole number of at least 1, got {n_subjects!r}")
    n_subjects = int(n_subjects)
    size, spacing_mm = _check_size(size, spacing)
    try:
        fraction = float(disease_fraction)
    except (TypeError, ValueError):
        raise DataError(f"disease_fraction must be a number between 0 and 1, got {disease_fraction!r}") from None
    if not 0.0 <= fraction <= 1.0:
        raise DataError(f"disease_fraction must be between 0 and 1, got {disease_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise DataError(f"seed must be a non-negative whole number, got {seed!r}")

    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder}: exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)

    n_disease = round(n_subjects * fraction)
    master = np.random.default_rng(int(seed))
    group_rng, factor_rng, subject_rng = master.spawn(3)
    groups = ["disease"] * n_disease + ["healthy"] * (n_subjects - n_disease)
    groups = [groups[i] for i in group_rng.permutation(n_subjects)]
    factors = [sample_factors(g, factor_rng) for g in groups]
    subject_seeds = subject_rng.integers(0, 2**31 - 1, size=n_subjects)

    width = max(3, len(str(n_subjects)))
    paths: list[Path] = []
    lines = [",".join(["path", "group", *FACTOR_NAMES, "labels"])]
    for i, (group, fac) in enumerate(zip(groups, factors)):
        name = f"sub-{i + 1:0{width}d}"
        phantom = make_phantom(fac, size=size, spacing=spacing_mm, seed=int(subject_seeds[i]))
        path = save_volume(phantom.image, folder / f"{name}.nii.gz", affine=phantom.affine,
                           description=f"napari-latent phantom {group}")
        label_rel = ""
        if write_labels:
            label_rel = f"labels/{name}_labels.nii.gz"
            save_volume(phantom.labels, folder / label_rel, affine=phantom.affine, dtype=np.uint8,
                        description="napari-latent phantom labels")
        paths.append(path)
        values = [repr(float(v)) for v in fac.to_dict().values()]
        lines.append(",".join([f"{name}.nii.gz", group, *values, label_rel]))
        if progress is not None:
            progress(i + 1, n_subjects)
    csv_path = write_text_atomic(folder / "cohort.csv", "\n".join(lines) + "\n")
    return CohortInfo(folder, csv_path, paths, groups, factors)
