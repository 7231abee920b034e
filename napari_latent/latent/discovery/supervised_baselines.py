"""Baselines for a supervised direction, measured on the same subject-wise split.

A held-out accuracy means little on its own: a cohort of 32 subjects holds out 8, and with
so few subjects an accuracy of 0.7 can happen by chance; and the groups may differ in ways
any classifier of the raw images picks up, with no help from the generative model. Two
baselines answer "is this direction better than nothing, and better than no model?":

Shuffled labels (chance)
    The training subjects' labels are permuted (whole subjects: every slice keeps its
    subject's new label), the same direction is fitted on them, and its accuracy is
    measured on the held-out subjects with their true labels. Over :data:`PERMUTATIONS`
    permutations (a fixed seed) this is the chance distribution of the held-out accuracy
    for this split: its mean, its 95th percentile (an accuracy within it is not above
    chance at the 5% level) and the permutation p-value ``(1 + #{null >= observed}) /
    (1 + permutations)`` (Phipson & Smyth 2010).
Pixels (no model)
    A logistic regression (L2, standardised features) on the preprocessed slice images the
    codes come from (the same window, crop and resize as the inversion,
    :meth:`~napari_latent.volumes.slicing.SliceGeometry.images`), downsampled by area
    averaging to at most :data:`PIXEL_SIZE` x :data:`PIXEL_SIZE` pixels, trained on the same
    training subjects' slices in the same band and scored on the same held-out subjects.
    Its ``C`` is chosen from :data:`PIXEL_C_GRID` by leave-subjects-out cross-validation on
    the training subjects (the folds of
    :func:`~napari_latent.latent.discovery.supervised_fit.subject_folds`). A direction that
    does not beat it adds nothing a plain image classifier does not already see.
Pixels, regressed onto the target (a direction fitted to a graded column)
    A direction fitted to a numeric column (``classifier="ridge"``, ``target=``) has seen the
    column's values, which the logistic regression on the groups has not. Its fair
    comparison is a ridge regression of the same column on the same pixels (centred, not
    standardised; penalty chosen from :data:`PIXEL_RIDGE_ALPHAS` by leave-subjects-out cross-validation on
    the training subjects), trained on the same training slices, thresholded halfway between the
    training groups' mean predictions and read out as the direction is (each subject's mean
    prediction, a line fitted on the training subjects, R² on the held-out subjects):
    :func:`pixel_regression_baseline`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ...volumes.io import open_volume
from ..cohort_codes import CohortCodes
from .supervised_fit import accuracy, subject_folds
from .supervised_readout import held_out_r2, subject_means

#: Shuffled-label fits per direction (p-values resolve to 1 / (PERMUTATIONS + 1)).
PERMUTATIONS = 100
#: Largest side of the pixel baseline's images (area-averaged down from the model's size).
PIXEL_SIZE = 32
#: Inverse regularisation strengths the pixel baseline's inner cross-validation chooses from.
PIXEL_C_GRID = (0.001, 0.01, 0.1, 1.0)

#: Ridge penalties of the pixel regression baseline (centred pixels, in image units).
PIXEL_RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 5, 17))

#: Fits a set of directions on training codes, labels and (for a regression target, else None)
#: target values: returns (vectors, offsets).
DirectionFit = Callable[[np.ndarray, np.ndarray, np.ndarray | None], tuple[Sequence[np.ndarray], Sequence[float]]]


def pixel_features(cohort_codes: CohortCodes, mask: np.ndarray,
                   size: int = PIXEL_SIZE) -> tuple[np.ndarray | None, str]:
    """The preprocessed slice images of the codes in ``mask``, area-averaged to ``size`` pixels a side, flattened.

    Every subject's volume is opened again and sliced with its codes' geometry (so the images
    are exactly those the codes were inverted from). Returns ``(None, reason)`` when the
    volumes are not available (codes without their volumes, a file that cannot be read).
    """
    if len(cohort_codes.per_subject) != len(np.unique(cohort_codes.subject)):
        return None, "the codes carry no slice geometry to read the images again"
    starts = np.searchsorted(cohort_codes.subject, np.arange(len(cohort_codes.per_subject)))
    rows: list[np.ndarray] = []
    for index in np.unique(cohort_codes.subject[mask]):
        chosen = np.flatnonzero(mask & (cohort_codes.subject == index))
        geometry = cohort_codes.per_subject[index].geometry
        path = cohort_codes.cohort.subjects[index].path
        try:
            volume = open_volume(path)
            images = geometry.images(volume, geometry.indices[chosen - starts[index]])
        except (OSError, ValueError) as exc:  # UserInputError is a ValueError
            return None, f"cannot read {path} again for the pixel baseline: {exc}"
        side = min(int(size), images.shape[-1])
        pooled = torch.nn.functional.adaptive_avg_pool2d(images.float(), (side, side))
        rows.append(pooled.flatten(1).numpy().astype(np.float64))
    return np.concatenate(rows), ""


def _subject_accuracy(scores: np.ndarray, labels: np.ndarray, subject: np.ndarray) -> float:
    present = np.unique(subject)
    means = np.array([scores[subject == s].mean() for s in present])
    truth = np.array([labels[subject == s][0] for s in present])
    return accuracy(means, truth)


def pixel_baseline(features: np.ndarray, labels: np.ndarray, subject: np.ndarray, train: np.ndarray,
                   seed: int = 0, grid: Sequence[float] = PIXEL_C_GRID) -> dict[str, Any]:
    """Held-out accuracy of a standardised L2 logistic regression on pixels (see the module docstring).

    Parameters
    ----------
    features : numpy.ndarray
        ``(n, p)`` flattened images.
    labels, subject : numpy.ndarray
        ``(n,)`` label (1 = positive) and subject of each image.
    train : numpy.ndarray
        ``(n,)`` True for the training subjects' images; the rest are held out.
    seed : int
        Seed of the inner cross-validation folds.
    grid : sequence of float
        Candidate ``C`` values.

    Returns
    -------
    dict
        ``accuracy`` (held-out slices), ``subject_accuracy`` (mean decision value per
        held-out subject), ``C`` (chosen), ``cv_accuracy`` (its inner cross-validated
        accuracy, None with fewer than two training subjects per group) and ``pixels``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def make(c: float) -> Any:
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2_000))

    x, y, s = features[train], labels[train], subject[train]
    subjects = np.unique(s)
    per_subject = np.array([y[s == k][0] for k in subjects])
    best_c, best_cv = float(grid[len(grid) // 2]), None
    if np.bincount(per_subject, minlength=2).min() >= 2:
        folds = [np.isin(s, fold) for fold in subject_folds(subjects, per_subject, seed)]
        for c in grid:
            correct = 0
            for held in folds:
                if len(np.unique(y[~held])) < 2:
                    continue
                correct += int((make(c).fit(x[~held], y[~held]).predict(x[held]) == y[held]).sum())
            score = correct / len(y)
            if best_cv is None or score > best_cv + 1e-9:
                best_c, best_cv = float(c), score
    fitted = make(best_c).fit(x, y)
    scores = fitted.decision_function(features[~train])
    return {"accuracy": accuracy(scores, labels[~train]),
            "subject_accuracy": _subject_accuracy(scores, labels[~train], subject[~train]),
            "C": best_c, "cv_accuracy": best_cv, "pixels": int(features.shape[1])}


def _ridge_predictions(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                       alphas: Sequence[float]) -> np.ndarray:
    """Predictions ``(len(alphas), n_test)`` of ridge regressions with an intercept, from one SVD."""
    centre, offset = x_train.mean(0), y_train.mean()
    u, singular, vt = np.linalg.svd(x_train - centre, full_matrices=False)
    projected = (x_test - centre) @ vt.T
    rotated = u.T @ (y_train - offset)
    return np.stack([projected @ (singular / (singular**2 + a) * rotated) + offset for a in alphas])


def pixel_regression_baseline(features: np.ndarray, values: np.ndarray, labels: np.ndarray, subject: np.ndarray,
                              train: np.ndarray, seed: int = 0,
                              alphas: Sequence[float] = PIXEL_RIDGE_ALPHAS) -> dict[str, Any]:
    """Held-out accuracy and readout of a ridge regression of the target on the (centred) pixels.

    The pixels are not standardised: they share one intensity scale, and a pixel that barely
    varies among the training slices (background at the edge of the field of view) would
    otherwise be scaled up until a held-out subject's slight difference there dominates the
    prediction. The penalty is chosen from ``alphas`` by leave-subjects-out cross-validation on the
    training subjects (the folds of
    :func:`~napari_latent.latent.discovery.supervised_fit.subject_folds`; squared error of
    the held-out slices' predictions), as the logistic baseline chooses its ``C``: a slice's
    neighbours in the same subject are nearly the same image, so a leave-one-slice-out choice
    would pick almost no penalty and overfit the training subjects.

    Parameters
    ----------
    features : numpy.ndarray
        ``(n, p)`` flattened images.
    values, labels, subject : numpy.ndarray
        ``(n,)`` target value (the subject's), label (1 = positive) and subject of each image.
    train : numpy.ndarray
        ``(n,)`` True for the training subjects' images; the rest are held out.
    seed : int
        Seed of the cross-validation folds.
    alphas : sequence of float
        Candidate penalties.

    Returns
    -------
    dict
        ``accuracy`` (held-out slices, thresholded halfway between the training groups' mean
        predictions), ``subject_accuracy``, ``readout_r2`` (held-out subjects, as the
        direction's factor readout; None when too few), ``alpha`` (chosen) and ``cv_mse``
        (its cross-validated squared error; None with fewer than two training subjects per group).
    """
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y, s = features[train], values[train], subject[train]
    subjects = np.unique(s)
    per_subject = np.array([labels[train][s == k][0] for k in subjects])
    best_alpha, best_error = float(alphas[len(alphas) // 2]), None
    if np.bincount(per_subject, minlength=2).min() >= 2:
        errors = np.zeros(len(alphas))
        for fold in subject_folds(subjects, per_subject, seed):
            held = np.isin(s, fold)
            scaler = StandardScaler(with_std=False).fit(x[~held])
            predicted = _ridge_predictions(scaler.transform(x[~held]), y[~held], scaler.transform(x[held]), alphas)
            errors += ((predicted - y[held]) ** 2).sum(1)
        errors /= len(y)
        best = int(np.argmin(errors))
        best_alpha, best_error = float(alphas[best]), float(errors[best])
    fitted = make_pipeline(StandardScaler(with_std=False), Ridge(alpha=best_alpha)).fit(x, y)
    predicted = fitted.predict(features)
    positive, negative = predicted[train & (labels == 1)].mean(), predicted[train & (labels == 0)].mean()
    decision = (predicted - 0.5 * (positive + negative)) * (1.0 if positive >= negative else -1.0)
    present, means = subject_means(np.column_stack([predicted, values]), subject)
    readout = held_out_r2(means[:, 0], means[:, 1], np.isin(present, subject[train]),
                          np.isin(present, subject[~train]))["r2"]
    return {"accuracy": accuracy(decision[~train], labels[~train]),
            "subject_accuracy": _subject_accuracy(decision[~train], labels[~train], subject[~train]),
            "readout_r2": float(readout) if np.isfinite(readout) else None,
            "alpha": best_alpha, "cv_mse": best_error}


def shuffled_baseline(codes: np.ndarray, labels: np.ndarray, subject: np.ndarray, train: np.ndarray,
                      fit: DirectionFit, observed: Sequence[float], permutations: int = PERMUTATIONS,
                      seed: int = 0, values: np.ndarray | None = None) -> list[dict[str, float]]:
    """The chance distribution of each direction's held-out accuracy, from shuffled training labels.

    Parameters
    ----------
    codes : numpy.ndarray
        ``(n, d)`` codes (those in the band).
    labels, subject : numpy.ndarray
        ``(n,)`` true label and subject of each code.
    train : numpy.ndarray
        ``(n,)`` True for the training subjects' codes; the rest are held out and scored with
        their true labels.
    fit : callable
        ``fit(train_codes, train_labels, train_values) -> (vectors, offsets)``: the direction
        procedure itself.
    observed : sequence of float
        The directions' held-out slice accuracies with the true labels (for the p-values).
    permutations : int
        Shuffles (whole training subjects' labels are permuted).
    seed : int
        Seed of the shuffles.
    values : numpy.ndarray, optional
        ``(n,)`` the regression target of each code (its subject's value), shuffled with the
        labels (a subject's label and value move together).

    Returns
    -------
    list of dict
        Per direction: ``chance_accuracy`` (mean), ``chance_accuracy_95`` (95th percentile),
        ``chance_subject_accuracy`` and ``chance_subject_accuracy_95``, and ``p_value``.
    """
    rng = np.random.default_rng(seed)
    train_subjects = np.unique(subject[train])
    first = np.array([np.flatnonzero(subject == s)[0] for s in train_subjects])
    truth = labels[first]
    known_values = None if values is None else values[first]
    position = np.searchsorted(train_subjects, subject[train])
    held_codes, held_labels, held_subject = codes[~train], labels[~train], subject[~train]
    slices: list[list[float]] = [[] for _ in observed]
    subjects: list[list[float]] = [[] for _ in observed]
    for _ in range(int(permutations)):
        order = rng.permutation(len(truth))  # the same draws as rng.permutation(truth)
        shuffled = truth[order][position]
        shuffled_values = None if known_values is None else known_values[order][position]
        vectors, offsets = fit(codes[train], shuffled, shuffled_values)
        for k, (vector, offset) in enumerate(zip(vectors, offsets)):
            scores = held_codes @ vector + offset
            slices[k].append(accuracy(scores, held_labels))
            subjects[k].append(_subject_accuracy(scores, held_labels, held_subject))
    out = []
    for k, value in enumerate(observed):
        null, null_subjects = np.asarray(slices[k]), np.asarray(subjects[k])
        out.append({"chance_accuracy": float(null.mean()), "chance_accuracy_95": float(np.percentile(null, 95)),
                    "chance_subject_accuracy": float(null_subjects.mean()),
                    "chance_subject_accuracy_95": float(np.percentile(null_subjects, 95)),
                    "p_value": float((1 + np.sum(null >= value - 1e-12)) / (1 + len(null)))})
    return out
