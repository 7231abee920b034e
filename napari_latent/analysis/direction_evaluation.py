"""How strongly moving along each direction changes each known factor of a labelled cohort.

Measured honestly, without looking at the direction's method:

1. the cohort's volumes are inverted; a regressor per factor learns to predict the factor
   from a slice's code and the slice's relative position in its volume (every slice
   carries its subject's factors; the position lets the regressor separate "which slice"
   from "which anatomy"): ridge regression on quadratic features of the codes (reduced by
   PCA to at most 32 dimensions) and the position. Its R² on *held-out subjects* says how
   far that factor's column can be trusted;
2. for each direction, base codes (slices of the cohort) are shifted by plus and minus one
   spread of the codes along the direction (``code_std``); the shifted codes are decoded,
   and the images are encoded again (models with an encoder) so that the regressors read
   what the *images* show, not the codes we wrote;
3. the change of each predicted factor per spread of shift, in units of the factor's
   standard deviation across subjects, is the effect matrix (directions x factors);
4. image measurements complement the regressors where a factor is visible directly: the
   in-plane angle of the head (the orientation of the decoded foreground's second
   moments, averaged with weights by how elongated the outline is, so that round slices
   with an ill-defined axis do not dominate) and the fraction of dark (CSF-like) pixels
   inside the head.

For each factor: the direction with the largest effect, and a MIG-style gap (the
normalised difference between the largest and the second-largest effect). For encoder
models the representation itself is also scored with MIG, SAP and DCI against the factors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from ..errors import DataError
from ..latent.cohort_codes import CohortCodes, iter_cohort_codes
from ..latent.directions import Directions
from ..latent.inversion import encode_images
from ..models.base import GenerativeModel
from ..progress import Operation, ProgressArg, ProgressEvent, StopFlag, run_operation
from ..volumes.cohort import Cohort, load_cohort
from .disentanglement import dci, mutual_information_gap, separated_attribute_predictability

IMAGE_MEASURES = ("image_angle_deg", "image_dark_fraction")


@dataclass
class DirectionEvaluation:
    """The direction-by-factor effects and what they mean.

    Attributes
    ----------
    directions : list of str
        Direction names.
    factors : list of str
        Factor names (cohort columns), then the image measurements.
    effects : numpy.ndarray
        ``(K, F)`` signed change per spread of shift, in factor standard deviations (image
        measures in their own units: degrees, fraction).
    regressor_r2 : dict
        Held-out R² of each factor's regressor (how trustworthy a column is).
    best : dict
        Best direction (index) per factor.
    gap : dict
        MIG-style gap per factor: (|e1| - |e2|) / |e1| of the two largest effects.
    representation : dict or None
        MIG, SAP and DCI of the codes (encoder models only).
    """

    directions: list[str]
    factors: list[str]
    effects: np.ndarray
    regressor_r2: dict[str, float]
    best: dict[str, int]
    gap: dict[str, float]
    representation: dict[str, Any] | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_gap(self) -> float:
        """Mean gap over the cohort's factors (not the image measures)."""
        values = [self.gap[f] for f in self.factors if f not in IMAGE_MEASURES]
        return float(np.mean(values)) if values else float("nan")

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable report."""
        rep = None
        if self.representation is not None:
            rep = {k: v for k, v in self.representation.items() if not isinstance(v, dict)}
            rep.update({k: {kk: vv for kk, vv in v.items() if not isinstance(vv, list) or kk == "per_factor"}
                        for k, v in self.representation.items() if isinstance(v, dict)})
        return {"directions": self.directions, "factors": self.factors, "effects": self.effects.tolist(),
                "regressor_r2": self.regressor_r2, "best_direction": self.best, "gap": self.gap,
                "mean_gap": self.mean_gap, "representation": rep, "settings": self.settings}


def _subject_split(subjects: np.ndarray, seed: int) -> np.ndarray:
    unique = np.random.default_rng(seed).permutation(np.unique(subjects))
    held_out = unique[: max(1, len(unique) // 4)]
    return np.isin(subjects, held_out)


READOUT_DIMENSIONS = 32


def factor_readout(codes: np.ndarray, positions: np.ndarray, target: np.ndarray) -> Pipeline:
    """Fit the factor regressor: PCA (at most 32 dims), quadratic features with the position, ridge."""
    reduce = PCA(n_components=min(READOUT_DIMENSIONS, codes.shape[1], len(codes) - 1), random_state=0)
    reduced = reduce.fit_transform(codes)
    features = np.hstack([reduced, positions[:, None]])
    readout = make_pipeline(StandardScaler(), PolynomialFeatures(2), RidgeCV(alphas=np.logspace(-1, 4, 11)))
    readout.fit(features, target)
    return Pipeline([("pca", reduce), ("readout", readout)])


def predict_factor(readout: Pipeline, codes: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Apply :func:`factor_readout`'s regressor."""
    reduced = readout.named_steps["pca"].transform(codes)
    return readout.named_steps["readout"].predict(np.hstack([reduced, positions[:, None]]))


def image_measures(images: torch.Tensor) -> np.ndarray:
    """Per image: foreground orientation (degrees), its weight (elongation), dark fraction in the head."""
    array = images[:, 0].detach().float().cpu().numpy()
    out = np.zeros((len(array), 3))
    rows, cols = np.mgrid[0:array.shape[1], 0:array.shape[2]]
    for i, image in enumerate(array):
        foreground = image > -0.7
        if foreground.sum() < 10:
            continue
        r, c = rows[foreground] - rows[foreground].mean(), cols[foreground] - cols[foreground].mean()
        rr, cc, rc = (r * r).mean(), (c * c).mean(), (r * c).mean()
        out[i, 0] = 0.5 * np.degrees(np.arctan2(2 * rc, cc - rr))
        out[i, 1] = np.hypot(cc - rr, 2 * rc) / (rr + cc)  # 0 for a disc, 1 for a line
        head = image[foreground]
        low, high = np.percentile(head, [5, 95])
        out[i, 2] = float(np.mean(head < low + 0.35 * (high - low)))
    return out


def _angle_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a - b + 90.0) % 180.0 - 90.0


@torch.no_grad()
def _readout(model: GenerativeModel, codes: torch.Tensor, space: str, reencode: bool) -> tuple[np.ndarray, np.ndarray]:
    images = model.decode(codes.to(model.device), space).float().cpu()
    read = encode_images(model, images, space) if reencode else codes
    return read.double().numpy(), image_measures(images)


@dataclass
class FactorReadouts:
    """The per-factor regressors of a cohort's codes (fitted once, reusable for many direction sets).

    Attributes
    ----------
    factors : list of str
        The cohort's numeric factor columns that vary.
    regressors : list of Pipeline
        One regressor per factor, fitted on all subjects.
    r2 : dict
        Held-out-subject R² of each factor's regressor (fitted without the held-out subjects).
    subject_std : numpy.ndarray
        Standard deviation of each factor across subjects.
    seed : int
        Seed of the held-out split.
    """

    factors: list[str]
    regressors: list[Pipeline]
    r2: dict[str, float]
    subject_std: np.ndarray
    seed: int


def _spread(values: object) -> float:
    """Standard deviation of a column's known values (0 when fewer than two are known)."""
    known = np.asarray(values, dtype=float)
    known = known[np.isfinite(known)]
    return float(known.std()) if known.size >= 2 else 0.0


def fit_factor_readouts(codes_set: CohortCodes, seed: int = 0) -> FactorReadouts:
    """Fit the factor regressors of :func:`evaluate_directions` (step 1 of the module docstring).

    Raises
    ------
    DataError
        When the cohort has no numeric factor column that varies.
    """
    factor_names = [f for f in codes_set.cohort.factor_names if _spread(codes_set.cohort.column(f)) > 0]
    if not factor_names:
        raise DataError("the cohort has no numeric factor columns that vary; nothing to evaluate against")
    codes, positions = codes_set.codes.double().numpy(), codes_set.position
    targets = np.stack([codes_set.factor(f) for f in factor_names], axis=1)
    held_out = _subject_split(codes_set.subject, seed)
    regressors, r2 = [], {}
    subject_std = np.array([_spread(codes_set.cohort.column(f)) for f in factor_names])
    for k, name in enumerate(factor_names):
        probe = factor_readout(codes[~held_out], positions[~held_out], targets[~held_out, k])
        r2[name] = float(r2_score(targets[held_out, k], predict_factor(probe, codes[held_out], positions[held_out])))
        regressors.append(factor_readout(codes, positions, targets[:, k]))
    return FactorReadouts(factor_names, regressors, r2, subject_std, seed)


def iter_evaluate_directions(model: GenerativeModel, directions: Directions,
                             cohort: str | os.PathLike[str] | Cohort | CohortCodes, shift: float = 1.0,
                             base_count: int = 256, seed: int = 0, readouts: FactorReadouts | None = None,
                             stop: StopFlag | None = None) -> Operation[DirectionEvaluation]:
    """Evaluate directions against a cohort's known factors (a generator; see :func:`evaluate_directions`)."""
    directions.check_model(model)
    if isinstance(cohort, CohortCodes):
        codes_set = cohort
    else:
        loaded = cohort if isinstance(cohort, Cohort) else load_cohort(cohort)
        codes_set = yield from iter_cohort_codes(model, loaded, directions.space, stop=stop)
    positions = codes_set.position
    if readouts is None:
        readouts = fit_factor_readouts(codes_set, seed)
    factor_names, regressors, r2, subject_std = readouts.factors, readouts.regressors, readouts.r2, \
        readouts.subject_std
    codes = codes_set.codes.double().numpy()
    targets = np.stack([codes_set.factor(f) for f in factor_names], axis=1)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(codes), size=min(base_count, len(codes)), replace=False)
    base = codes_set.codes[chosen].float()
    base_positions = positions[chosen]
    reencode = model.has_encoder and directions.space == model.default_space
    effects = np.zeros((len(directions), len(factor_names) + len(IMAGE_MEASURES)))
    for index in range(len(directions)):
        step = float(shift) * directions.code_std[index]
        vector = directions.vectors[index]
        plus_codes, plus_images = _readout(model, base + step * vector, directions.space, reencode)
        minus_codes, minus_images = _readout(model, base - step * vector, directions.space, reencode)
        for k, regressor in enumerate(regressors):
            change = (predict_factor(regressor, plus_codes, base_positions)
                      - predict_factor(regressor, minus_codes, base_positions)).mean() / (2 * shift)
            effects[index, k] = change / subject_std[k]
        weight = np.minimum(plus_images[:, 1], minus_images[:, 1])
        turn = _angle_difference(plus_images[:, 0], minus_images[:, 0])
        effects[index, -2] = float((weight * turn).sum() / max(weight.sum(), 1e-9)) / (2 * shift)
        effects[index, -1] = (plus_images[:, 2] - minus_images[:, 2]).mean() / (2 * shift)
        yield ProgressEvent(index + 1, len(directions), f"measured {directions.names[index]}", stage="evaluate")
    columns = [*factor_names, *IMAGE_MEASURES]
    best, gap = {}, {}
    for k, name in enumerate(columns):
        magnitude = np.abs(effects[:, k])
        order = np.argsort(magnitude)[::-1]
        best[name] = int(order[0])
        second = magnitude[order[1]] if len(order) > 1 else 0.0
        gap[name] = float((magnitude[order[0]] - second) / magnitude[order[0]]) if magnitude[order[0]] > 0 else 0.0
    representation = None
    if model.has_encoder and directions.space == model.default_space:
        representation = {"mig": mutual_information_gap(codes, targets),
                          "sap": separated_attribute_predictability(codes, targets),
                          "dci": dci(codes, targets, codes_set.subject, seed)}
        representation["summary"] = {"mig": representation["mig"]["mig"], "sap": representation["sap"]["sap"],
                                     "dci_disentanglement": representation["dci"]["disentanglement"],
                                     "dci_completeness": representation["dci"]["completeness"],
                                     "dci_informativeness": representation["dci"]["informativeness"]}
    settings = {"shift": shift, "base_count": len(chosen), "seed": seed, "reencoded": reencode,
                "subjects": len(codes_set.cohort)}
    return DirectionEvaluation(list(directions.names), columns, effects, r2, best, gap, representation, settings)


def evaluate_directions(model: GenerativeModel, directions: Directions,
                        cohort: str | os.PathLike[str] | Cohort | CohortCodes, shift: float = 1.0,
                        base_count: int = 256, seed: int = 0, progress: ProgressArg = None,
                        readouts: FactorReadouts | None = None) -> DirectionEvaluation:
    """Measure how each direction changes each known factor of a cohort (see the module docstring).

    Parameters
    ----------
    model : GenerativeModel
    directions : Directions
        Directions of ``model``.
    cohort : path-like, Cohort or CohortCodes
        Volumes with numeric factor columns in ``cohort.csv`` (the phantoms'), or their codes.
    shift : float
        Shift in spreads of the codes along each direction (plus and minus).
    base_count : int
        Number of cohort slices shifted per direction.
    seed : int
    progress : callable, bool or None
    readouts : FactorReadouts, optional
        Regressors already fitted on these codes by :func:`fit_factor_readouts` (they do not
        depend on the directions; pass them to evaluate several direction sets quickly).

    Returns
    -------
    DirectionEvaluation
    """
    return run_operation(iter_evaluate_directions(model, directions, cohort, shift, base_count, seed, readouts),
                         progress)
