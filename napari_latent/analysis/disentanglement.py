"""Disentanglement metrics of a representation against known factors: MIG, SAP and DCI.

``codes`` are ``(n, d)`` representations (e.g. posterior means of an encoder), ``factors``
``(n, F)`` the known generating factors (continuous; the phantoms' factor columns).

* MIG, the mutual information gap (Chen et al. 2018, "Isolating sources of disentanglement
  in VAEs"): codes and factors are discretised into 20 equal-width bins; for each factor,
  the gap between the two code dimensions with the most mutual information, divided by
  the factor's entropy; averaged over factors.
* SAP, the separated attribute predictability (Kumar et al. 2018, "Variational inference
  of disentangled latent concepts from unlabeled observations"): for each factor, the R²
  of a linear fit from each single code dimension; the gap between the best two; averaged.
* DCI (Eastwood & Williams 2018, "A framework for the quantitative evaluation of
  disentangled representations"): a random forest predicts each factor from all codes; its
  feature importances form R (d x F). Disentanglement weighs ``1 - H_F(R_i / sum R_i)`` over
  code dimensions by their total importance; completeness averages ``1 - H_d`` over
  factors; informativeness is the mean held-out R² of the forests.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestRegressor
from sklearn.metrics import mutual_info_score, r2_score

from ..errors import MismatchError

BINS = 20


def _check(codes: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes = np.asarray(codes, dtype=np.float64)
    factors = np.asarray(factors, dtype=np.float64)
    if factors.ndim == 1:
        factors = factors[:, None]
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors):
        raise MismatchError(f"codes {codes.shape} and factors {factors.shape} do not match")
    if len(codes) < 10:
        raise MismatchError("at least 10 samples are needed for disentanglement metrics")
    return codes, factors


def _discretise(values: np.ndarray, bins: int = BINS) -> np.ndarray:
    out = np.zeros(values.shape, dtype=int)
    for j in range(values.shape[1]):
        column = values[:, j]
        edges = np.histogram_bin_edges(column, bins=bins)
        out[:, j] = np.digitize(column, edges[1:-1])
    return out


def mutual_information_gap(codes: np.ndarray, factors: np.ndarray) -> dict[str, Any]:
    """MIG: mean over factors of the normalised gap between the two most informative code dims."""
    codes, factors = _check(codes, factors)
    c, f = _discretise(codes), _discretise(factors)
    mi = np.array([[mutual_info_score(f[:, k], c[:, i]) for k in range(f.shape[1])] for i in range(c.shape[1])])
    gaps = []
    for k in range(f.shape[1]):
        entropy = mutual_info_score(f[:, k], f[:, k])
        ordered = np.sort(mi[:, k])[::-1]
        second = ordered[1] if len(ordered) > 1 else 0.0
        gaps.append(float((ordered[0] - second) / entropy) if entropy > 0 else 0.0)
    return {"mig": float(np.mean(gaps)), "per_factor": gaps, "mutual_information": mi.tolist()}


def separated_attribute_predictability(codes: np.ndarray, factors: np.ndarray) -> dict[str, Any]:
    """SAP: mean over factors of the gap between the best two single-dimension linear R² values."""
    codes, factors = _check(codes, factors)
    scores = np.zeros((codes.shape[1], factors.shape[1]))
    for i in range(codes.shape[1]):
        x = codes[:, i]
        for k in range(factors.shape[1]):
            y = factors[:, k]
            if x.std() < 1e-12 or y.std() < 1e-12:
                continue
            scores[i, k] = np.corrcoef(x, y)[0, 1] ** 2  # R² of a simple linear fit
    gaps = []
    for k in range(factors.shape[1]):
        ordered = np.sort(scores[:, k])[::-1]
        gaps.append(float(ordered[0] - (ordered[1] if len(ordered) > 1 else 0.0)))
    return {"sap": float(np.mean(gaps)), "per_factor": gaps, "r2": scores.tolist()}


def _entropy(p: np.ndarray, base: int) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / np.log(base)) if base > 1 else 0.0


def dci(codes: np.ndarray, factors: np.ndarray, groups: np.ndarray | None = None, seed: int = 0,
        trees: int = 50) -> dict[str, Any]:
    """DCI disentanglement, completeness and informativeness with random-forest importances.

    Parameters
    ----------
    codes, factors : numpy.ndarray
    groups : numpy.ndarray, optional
        Group (subject) of each sample: the informativeness split keeps groups apart.
    seed : int
    trees : int
        Trees per forest.
    """
    codes, factors = _check(codes, factors)
    n, d = codes.shape
    n_factors = factors.shape[1]
    rng = np.random.default_rng(seed)
    if groups is None:
        groups = np.arange(n)
    unique = rng.permutation(np.unique(groups))
    test_groups = unique[: max(1, len(unique) // 4)]
    test = np.isin(groups, test_groups)
    importance = np.zeros((d, n_factors))
    informativeness = []
    for k in range(n_factors):
        forest = RandomForestRegressor(n_estimators=trees, max_depth=8, random_state=seed, n_jobs=1)
        forest.fit(codes[~test], factors[~test, k])
        importance[:, k] = forest.feature_importances_
        informativeness.append(float(r2_score(factors[test, k], forest.predict(codes[test])))
                               if test.sum() > 1 and factors[test, k].std() > 0 else float("nan"))
    total = importance.sum()
    weights = importance.sum(1) / total if total > 0 else np.full(d, 1.0 / d)
    per_code = np.array([1.0 - _entropy(row / row.sum(), n_factors) if row.sum() > 0 else 0.0
                         for row in importance])
    per_factor = np.array([1.0 - _entropy(col / col.sum(), d) if col.sum() > 0 else 0.0 for col in importance.T])
    return {"disentanglement": float((weights * per_code).sum()), "completeness": float(per_factor.mean()),
            "informativeness": float(np.nanmean(informativeness)), "importance": importance.tolist(),
            "informativeness_per_factor": informativeness}
