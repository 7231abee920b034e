"""Supervised directions from labelled volumes: InterFaceGAN and the difference of group means.

InterFaceGAN (Shen et al. 2020, "Interpreting the latent space of GANs for semantic face
editing"): a linear classifier (a linear SVM, or logistic regression) separates the codes
of two groups; the unit normal of its hyperplane, pointing to the positive group, is the
direction. As in the MS paper this package follows, the codes are those of real volumes
(inverted slice by slice); every slice carries its subject's label. The classifier is
trained on some subjects and its accuracy measured on *held-out subjects* (never on other
slices of the training subjects). Conditional manipulation projects given directions out
of the normal (InterFaceGAN's ``n1 - (n1 . n2) n2``, generalised to several directions).

The classifier sees the codes within their *informative subspace*: the principal
components of the training codes that carry at least 0.1% of their variance. Directions the
codes never vary along (collapsed VAE dimensions, which the decoder ignores) would
otherwise let the classifier separate the groups by tiny, meaningless differences, and a
traversal along such a normal would change nothing in the images.

The second direction returned is the plain difference of the group means of the codes,
normalised: simple, and a useful baseline against the classifier's normal.

Labels are the ``group`` column of the cohort table (two groups), or a numeric column
split at a quantile (above: positive).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from ...errors import DataError, UserInputError
from ...models.base import GenerativeModel
from ...progress import Operation, ProgressEvent, StopFlag
from ...volumes.cohort import Cohort, load_cohort
from ..cohort_codes import CohortCodes, iter_cohort_codes
from ..directions import Directions
from ..inversion import default_space
from . import register_method

CLASSIFIERS = ("svm", "logistic")
MIN_SUBJECTS_PER_GROUP = 2


def subject_labels(cohort: Cohort, column: str | None = None, positive: str | None = None,
                   quantile: float = 0.5) -> tuple[np.ndarray, str, str]:
    """Binary label per subject (1 = positive) and the names of the two groups.

    Raises
    ------
    DataError
        For a missing column, a single group, or too few subjects per group.
    """
    if column is None:
        groups = [s.group for s in cohort.subjects]
        if any(g is None for g in groups):
            raise DataError("the supervised method needs a 'group' for every volume (a cohort.csv with a group "
                            "column), or a numeric --column")
        names = sorted(set(groups))  # type: ignore[arg-type]
        if len(names) != 2:
            raise DataError(f"the supervised method needs exactly two groups, found {len(names)}: "
                            f"{', '.join(names)}")
        if positive is None:
            positive = "disease" if "disease" in names else names[1]
        if positive not in names:
            raise DataError(f"positive group {positive!r} is not one of the groups {', '.join(names)}")
        negative = next(n for n in names if n != positive)
        labels = np.array([g == positive for g in groups], dtype=int)
    else:
        if not 0.0 < quantile < 1.0:
            raise UserInputError(f"quantile {quantile} must be between 0 and 1")
        values = np.asarray(cohort.column(column), dtype=np.float64)
        if np.isnan(values).any():
            raise DataError(f"column {column!r} has empty values")
        threshold = float(np.quantile(values, quantile))
        labels = (values > threshold).astype(int)
        positive, negative = f"{column} > {threshold:.4g}", f"{column} <= {threshold:.4g}"
    counts = np.bincount(labels, minlength=2)
    if counts.min() < MIN_SUBJECTS_PER_GROUP:
        raise DataError(f"too few subjects: {counts[1]} {positive} and {counts[0]} {negative}; the supervised "
                        f"method needs at least {MIN_SUBJECTS_PER_GROUP} per group (one to train, one to validate)")
    return labels, positive, negative


def split_subjects_stratified(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Held-out subjects per group (at least one of each), the rest for training."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for value in (0, 1):
        members = rng.permutation(np.flatnonzero(labels == value))
        n_val = min(max(1, round(len(members) * val_fraction)), len(members) - 1)
        val.extend(members[:n_val])
        train.extend(members[n_val:])
    return np.sort(np.array(train)), np.sort(np.array(val))


def project_out(vector: np.ndarray, conditions: list[np.ndarray]) -> np.ndarray:
    """Remove the components of ``vector`` along the span of ``conditions``; unit length."""
    if not conditions:
        return vector / np.linalg.norm(vector)
    basis, _ = np.linalg.qr(np.stack(conditions, axis=1))
    result = vector - basis @ (basis.T @ vector)
    norm = np.linalg.norm(result)
    if norm < 1e-8:
        raise UserInputError("the direction lies in the span of the conditioning directions; nothing is left")
    return result / norm


MIN_VARIANCE_RATIO = 1e-3


def informative_subspace(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and orthonormal basis ``(d, r)`` of the principal components carrying >= 0.1% of the variance."""
    mean = codes.mean(0)
    _, singular, vt = np.linalg.svd(codes - mean, full_matrices=False)
    variance = singular**2
    keep = variance / variance.sum() >= MIN_VARIANCE_RATIO if variance.sum() > 0 else np.ones(len(variance), bool)
    keep[0] = True
    return mean, vt[keep].T


def _classifier(kind: str, strength: float, seed: int) -> Any:
    if kind == "svm":
        return LinearSVC(C=strength, dual="auto", max_iter=20_000, random_state=seed)
    if kind == "logistic":
        return LogisticRegression(C=strength, max_iter=5_000)
    raise UserInputError(f"unknown classifier {kind!r}; use one of {', '.join(CLASSIFIERS)}")


def _accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean((scores > 0).astype(int) == labels))


def _held_out_scores(codes: np.ndarray, labels: np.ndarray, direction: np.ndarray, offset: float,
                     subjects: np.ndarray, per_code_subject: np.ndarray) -> dict[str, float]:
    """Slice- and subject-level accuracy of thresholding projections on held-out subjects."""
    mask = np.isin(per_code_subject, subjects)
    scores = codes[mask] @ direction + offset
    slice_accuracy = _accuracy(scores, labels[mask])
    subject_scores = np.array([scores[per_code_subject[mask] == s].mean() for s in subjects])
    subject_labels_ = np.array([labels[mask][per_code_subject[mask] == s][0] for s in subjects])
    positive, negative = scores[labels[mask] == 1], scores[labels[mask] == 0]
    spread = np.sqrt(0.5 * (positive.var() + negative.var())) or 1.0
    return {"accuracy": slice_accuracy, "subject_accuracy": _accuracy(subject_scores, subject_labels_),
            "separation": float((positive.mean() - negative.mean()) / spread)}


@register_method("supervised", "InterFaceGAN: the normal of a linear classifier between two labelled groups",
                 needs_data=True)
def iter_supervised(model: GenerativeModel, *, space: str | None = None,
                    data: str | os.PathLike[str] | Cohort | CohortCodes | None = None,
                    labels: str | os.PathLike[str] | None = None, column: str | None = None,
                    positive: str | None = None, quantile: float = 0.5, classifier: str = "svm",
                    strength: float = 1.0, val_fraction: float = 0.25, condition: Directions | None = None,
                    inversion: str = "auto", steps: int = 100, seed: int = 0, count: int = 2,
                    stop: StopFlag | None = None) -> Operation[Directions]:
    """Supervised directions between two groups of volumes (see the module docstring).

    Parameters
    ----------
    model : GenerativeModel
    space : str, optional
        Latent space (``w`` for StyleGAN by default).
    data : path-like, Cohort or CohortCodes
        Labelled volumes (a folder with ``cohort.csv``), or their codes already computed.
    labels : path-like, optional
        A cohort table to use instead of the folder's ``cohort.csv``.
    column : str, optional
        A numeric column to split at ``quantile`` instead of the ``group`` column.
    positive : str, optional
        The group the direction points to (default ``disease`` if present).
    quantile : float
        Split point of a numeric column.
    classifier : {"svm", "logistic"}
        Linear SVM (InterFaceGAN) or logistic regression.
    strength : float
        Inverse regularisation ``C`` of the classifier.
    val_fraction : float
        Fraction of subjects per group held out to measure accuracy.
    condition : Directions, optional
        Directions to project out of the result (conditional manipulation).
    inversion, steps : str, int
        How volumes are inverted (encoder where the model has one).
    seed : int
        Seed of the subject split.
    count : int
        1 (the classifier's normal) or 2 (plus the difference of group means).

    Returns
    -------
    Directions
        Scores ``accuracy`` (held-out slices), ``subject_accuracy``, ``train_accuracy`` and
        ``separation`` (d' of held-out projections); ``info`` names the groups and subjects.
    """
    if count not in (1, 2):
        raise UserInputError("the supervised method gives 1 or 2 directions (the normal, and the mean difference)")
    if data is None:
        raise UserInputError("the supervised method needs labelled data (a folder of volumes with cohort.csv)")
    space = model.check_space(space or default_space(model))
    if isinstance(data, CohortCodes):
        cohort_codes = data
        if cohort_codes.space != space:
            raise UserInputError(f"the given codes are in space {cohort_codes.space!r}, not {space!r}")
    else:
        cohort = data if isinstance(data, Cohort) else load_cohort(data, labels)
        subject_labels(cohort, column, positive, quantile)  # fail before the (slow) inversion
        cohort_codes = yield from iter_cohort_codes(model, cohort, space, inversion, steps, stop=stop)
    cohort = cohort_codes.cohort
    per_subject, positive_name, negative_name = subject_labels(cohort, column, positive, quantile)
    train_subjects, val_subjects = split_subjects_stratified(per_subject, val_fraction, seed)
    codes = cohort_codes.codes.double().numpy()
    code_labels = per_subject[cohort_codes.subject]
    train_mask = np.isin(cohort_codes.subject, train_subjects)
    mean, basis = informative_subspace(codes[train_mask])
    projected = (codes - mean) @ basis
    model_ = _classifier(classifier, strength, seed)
    model_.fit(projected[train_mask], code_labels[train_mask])
    weights = basis @ np.asarray(model_.coef_, dtype=np.float64).ravel()
    norm = np.linalg.norm(weights)
    if norm < 1e-12:
        raise DataError("the classifier found no separating direction (all weights are zero)")
    conditions = [condition.vectors[i].double().numpy() for i in range(len(condition))] if condition else []
    if condition is not None and condition.space != space:
        raise UserInputError(f"conditioning directions are in space {condition.space!r}, not {space!r}")
    normal = project_out(weights / norm, conditions)
    offset = (float(model_.intercept_[0]) - float(weights @ mean)) / norm
    means = codes[train_mask & (code_labels == 1)].mean(0) - codes[train_mask & (code_labels == 0)].mean(0)
    mean_direction = project_out(means, conditions)
    midpoint = 0.5 * (codes[train_mask & (code_labels == 1)].mean(0) + codes[train_mask & (code_labels == 0)].mean(0))
    vectors = [normal, mean_direction][:count]
    offsets = [offset if not conditions else -float(midpoint @ normal), -float(midpoint @ mean_direction)][:count]
    scores: dict[str, list[float]] = {"accuracy": [], "subject_accuracy": [], "separation": [], "train_accuracy": []}
    for vector, bias in zip(vectors, offsets):
        held_out = _held_out_scores(codes, code_labels, vector, bias, val_subjects, cohort_codes.subject)
        for key, value in held_out.items():
            scores[key].append(value)
        scores["train_accuracy"].append(_accuracy(codes[train_mask] @ vector + bias, code_labels[train_mask]))
    yield ProgressEvent(1, 1, f"separated {positive_name} from {negative_name}", {"accuracy": scores["accuracy"][0]},
                        stage="discover")
    code_std = [float((codes @ v).std()) for v in vectors]
    names = [f"{negative_name} → {positive_name} ({classifier})",
             f"{negative_name} → {positive_name} (mean difference)"]
    subjects = [s.name for s in cohort.subjects]
    info = {"positive": positive_name, "negative": negative_name, "column": column,
            "train_subjects": [subjects[i] for i in train_subjects],
            "validation_subjects": [subjects[i] for i in val_subjects],
            "conditioned_on": condition.names if condition is not None else [],
            "group_mean_distance": float(np.linalg.norm(means)), "subspace_dimensions": int(basis.shape[1])}
    settings = {"classifier": classifier, "strength": strength, "val_fraction": val_fraction, "seed": seed,
                "column": column, "quantile": quantile, "positive": positive_name, "inversion": inversion}
    return Directions(torch.from_numpy(np.stack(vectors)).float(), space, model.name, model.fingerprint, "supervised",
                      settings, names[:count], scores, code_std, info)
