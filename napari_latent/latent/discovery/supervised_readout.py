"""How well a supervised direction reads out the cohort's numeric factors, subject by subject.

A direction that separates two groups need not follow the factor behind them: it may
separate the groups by a nuisance that happens to differ, or by an all-or-nothing feature.
This readout asks whether *how far* a subject lies along the direction tracks *how much* of
each factor the subject has (for example the ventricle enlargement of the disease):

1. each subject's position along the direction is the mean projection ``code @ v`` of its
   slices in the classifier's band (subject-level aggregation over the slice band, the same
   slices that trained and scored the direction);
2. a straight line from position to factor is fitted on the *training subjects*;
3. its R² on the *held-out subjects* is the readout (negative when the line predicts worse
   than the held-out subjects' own mean), with the Pearson correlation over the held-out
   subjects beside it.

Factors are the cohort table's numeric columns that vary; a factor with fewer than two
known training or three known held-out values is skipped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...volumes.cohort import Cohort

#: Known held-out values a factor needs for a readout.
MIN_HELD_OUT = 3


def subject_positions(codes: np.ndarray, subject: np.ndarray, in_band: np.ndarray, vector: np.ndarray,
                      n_subjects: int) -> np.ndarray:
    """Each subject's mean projection onto ``vector`` over its slices in the band (NaN without any)."""
    projection = codes[in_band] @ vector
    owners = subject[in_band]
    sums = np.bincount(owners, weights=projection, minlength=n_subjects)
    counts = np.bincount(owners, minlength=n_subjects)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def held_out_r2(positions: np.ndarray, factor: np.ndarray, train: np.ndarray, held_out: np.ndarray) -> dict[str, float]:
    """R² and Pearson r on ``held_out`` subjects of a line fitted on ``train`` subjects (NaN when too few)."""
    known = np.isfinite(positions) & np.isfinite(factor)
    fit_on, score_on = known & train, known & held_out
    if fit_on.sum() < 2 or score_on.sum() < MIN_HELD_OUT or np.ptp(positions[fit_on]) == 0:
        return {"r2": float("nan"), "pearson": float("nan")}
    from sklearn.metrics import r2_score

    slope, intercept = np.polyfit(positions[fit_on], factor[fit_on], 1)
    truth, seen = factor[score_on], positions[score_on]
    r2 = float(r2_score(truth, slope * seen + intercept)) if np.ptp(truth) > 0 else float("nan")
    pearson = float(np.corrcoef(seen, truth)[0, 1]) if np.ptp(seen) > 0 and np.ptp(truth) > 0 else float("nan")
    return {"r2": r2, "pearson": pearson}


def varying_factors(cohort: Cohort) -> list[str]:
    """The cohort's numeric columns that vary across subjects."""
    names = []
    for name in cohort.factor_names:
        values = np.asarray(cohort.column(name), dtype=float)
        values = values[np.isfinite(values)]
        if values.size >= 2 and np.ptp(values) > 0:
            names.append(name)
    return names


def factor_readouts(codes: np.ndarray, subject: np.ndarray, in_band: np.ndarray, vectors: list[np.ndarray],
                    cohort: Cohort, train_subjects: np.ndarray, val_subjects: np.ndarray) -> dict[str, Any]:
    """Held-out readout of every varying factor along every direction (see the module docstring).

    Returns
    -------
    dict
        ``{factor: {"r2": [per direction], "pearson": [per direction]}}``, factors in table order;
        None where there are too few known values (so that the dict stays valid JSON).
    """
    n = len(cohort)
    train = np.isin(np.arange(n), train_subjects)
    held_out = np.isin(np.arange(n), val_subjects)
    positions = [subject_positions(codes, subject, in_band, v, n) for v in vectors]
    out: dict[str, Any] = {}
    for name in varying_factors(cohort):
        factor = np.asarray(cohort.column(name), dtype=float)
        rows = [held_out_r2(p, factor, train, held_out) for p in positions]
        out[name] = {key: [_finite_or_none(r[key]) for r in rows] for key in ("r2", "pearson")}
    return out


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def best_readouts(readouts: dict[str, Any], index: int = 0, count: int = 3) -> list[tuple[str, float]]:
    """The ``count`` factors direction ``index`` reads out best, as ``(factor, R²)``, best first."""
    known = [(name, float(r["r2"][index])) for name, r in readouts.items()
             if index < len(r["r2"]) and r["r2"][index] is not None and np.isfinite(r["r2"][index])]
    return sorted(known, key=lambda item: -item[1])[:count]
