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

A direction fitted to one column (``classifier="ridge"``, ``target=``) is read out in the
band where that column is read out best: :func:`choose_readout_band` scores every candidate
band by the same readout, cross-validated over the training subjects.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...volumes.cohort import Cohort
from .supervised_fit import SLICE_BAND, SLICE_BAND_STEP, best_band, fit_regression

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


def subject_means(codes: np.ndarray, subject: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The subjects present, and each one's mean code ``(n_subjects, d)``."""
    present, owner = np.unique(subject, return_inverse=True)
    sums = np.zeros((len(present), codes.shape[1]))
    np.add.at(sums, owner, codes)
    return present, sums / np.bincount(owner)[:, None]


def cross_validated_readout(codes: np.ndarray, values: np.ndarray, subject: np.ndarray, folds: list[np.ndarray],
                            aggregate: bool) -> float:
    """Leave-subjects-out R² of the ridge readout of ``values`` (one per code, its subject's).

    In each fold the regression is fitted on the other subjects (their mean codes with
    ``aggregate``, else their codes), a line from mean projection to value is fitted on them,
    and each held-out subject's value is predicted from its own mean projection; the R² is
    over every subject's prediction, pooled across the folds.
    """
    from sklearn.metrics import r2_score

    predicted: list[np.ndarray] = []
    truth: list[np.ndarray] = []
    for held_out in folds:
        train = ~held_out
        _, means = subject_means(codes[train], subject[train])
        known = subject_means(values[train][:, None], subject[train])[1][:, 0]  # a subject's codes share its value
        weights, _ = fit_regression(means, known) if aggregate else fit_regression(codes[train], values[train])
        slope, intercept = np.polyfit(means @ weights, known, 1)
        _, held_means = subject_means(codes[held_out], subject[held_out])
        predicted.append(slope * (held_means @ weights) + intercept)
        truth.append(subject_means(values[held_out][:, None], subject[held_out])[1][:, 0])
    everything = np.concatenate(truth)
    return float(r2_score(everything, np.concatenate(predicted))) if np.ptp(everything) > 0 else float("nan")


def choose_readout_band(codes: np.ndarray, values: np.ndarray, labels: np.ndarray, subject: np.ndarray,
                        position: np.ndarray, aggregate: bool = False, seed: int = 0, width: float = SLICE_BAND,
                        step: float = SLICE_BAND_STEP) -> tuple[float, float, float | None]:
    """The band of slice positions where ``values`` are read out best, and its cross-validated R².

    The candidates and the folds are those of
    :func:`~napari_latent.latent.discovery.supervised_fit.choose_slice_band` (leave-subjects-out
    over the given training codes, each fold holding out subjects of both groups); each band
    is scored by :func:`cross_validated_readout` (:func:`~napari_latent.latent.discovery.supervised_fit.best_band`:
    on a tie the wider candidate wins). Returns ``(0, 1, None)`` when a group has fewer than
    two subjects.
    """
    def readout(band: np.ndarray, folds: list[np.ndarray]) -> float:
        return cross_validated_readout(codes[band], values[band], subject[band], [f[band] for f in folds], aggregate)

    return best_band(subject, labels, position, readout, seed, width, step)
