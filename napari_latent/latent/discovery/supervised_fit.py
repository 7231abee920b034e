"""The linear classifier of the supervised method, and how it is scored.

The classifier (a linear SVM, logistic regression, LDA with shrinkage, or ridge) sees the
codes within their informative subspace (:func:`informative_subspace`); with a numeric
target, :func:`fit_regression` regresses the codes onto it instead; :func:`choose_slice_band` picks the band
of slice positions it separates best by leave-subjects-out cross-validation among the
training subjects; :func:`held_out_scores` measures a direction on held-out subjects. See
:mod:`napari_latent.latent.discovery.supervised` for the method.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import UserInputError

CLASSIFIERS = ("svm", "logistic", "lda", "ridge")

#: Ridge penalties the ridge classifier and regression choose from by leave-one-out
#: (generalised) cross-validation on their training points.
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 4, 15))


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

#: Codes longer than this are first reduced to their leading principal components (of the
#: training subjects' codes) before any classifier is fitted.
MAX_CODE_DIMENSIONS = 256


@dataclass(frozen=True)
class CodeReduction:
    """Long codes (a VQ-VAE's map, a StyleGAN's w+) reduced to their leading principal components.

    The band search fits a classifier a few hundred times and the chance level a hundred
    times more; in a 16 384-dimensional code space each fit costs seconds. The components
    come from the training subjects' codes only (the held-out subjects play no part), so
    the held-out accuracy stays honest. A direction ``v_r`` found in the reduced space is the
    code-space direction ``basis @ v_r`` (the same length, as the basis is orthonormal), and
    projections agree: ``(codes - mean) @ basis @ v_r = codes @ v - mean @ v``.

    Attributes
    ----------
    mean : numpy.ndarray
        ``(d,)`` mean of the codes the components were fitted on.
    basis : numpy.ndarray
        ``(d, k)`` orthonormal principal axes.
    explained : float
        Fraction of those codes' variance the ``k`` components hold.
    """

    mean: np.ndarray
    basis: np.ndarray
    explained: float

    @classmethod
    def fit(cls, codes: np.ndarray, dimensions: int = MAX_CODE_DIMENSIONS, seed: int = 0) -> CodeReduction:
        """The leading ``dimensions`` principal components of ``codes`` (randomised SVD)."""
        from sklearn.utils.extmath import randomized_svd

        mean = codes.mean(0)
        centred = codes - mean
        k = int(min(dimensions, len(codes) - 1, codes.shape[1]))
        _, singular, vt = randomized_svd(centred, k, n_iter=4, random_state=seed)
        total = float((centred**2).sum())
        explained = float((singular**2).sum() / total) if total > 0 else 1.0
        return cls(mean, vt.T, explained)

    @property
    def dimensions(self) -> int:
        """The number of components kept."""
        return int(self.basis.shape[1])

    def reduce(self, codes: np.ndarray) -> np.ndarray:
        """``(n, d)`` codes to ``(n, k)`` component scores."""
        return (codes - self.mean) @ self.basis

    def reduce_direction(self, vector: np.ndarray) -> np.ndarray:
        """A code-space direction's components in the reduced space (for conditioning)."""
        return self.basis.T @ vector

    def expand(self, vector: np.ndarray, offset: float) -> tuple[np.ndarray, float]:
        """A reduced direction and its offset, in code space: ``codes @ v + offset`` scores the same."""
        full = self.basis @ vector
        return full, float(offset - self.mean @ full)


def informative_subspace(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and orthonormal basis ``(d, r)`` of the principal components carrying >= 0.1% of the variance."""
    mean = codes.mean(0)
    _, singular, vt = np.linalg.svd(codes - mean, full_matrices=False)
    variance = singular**2
    keep = variance / variance.sum() >= MIN_VARIANCE_RATIO if variance.sum() > 0 else np.ones(len(variance), bool)
    keep[0] = True
    return mean, vt[keep].T


def make_classifier(kind: str, strength: float, seed: int) -> Any:
    """An unfitted scikit-learn classifier.

    ``svm`` (InterFaceGAN's linear SVM, inverse regularisation ``strength``), ``logistic``
    (logistic regression, ``C = strength``) or ``lda`` (linear discriminant analysis with
    Ledoit-Wolf shrinkage of the within-class covariance, ``solver="lsqr", shrinkage="auto"``;
    ``strength`` is not used: the shrinkage is estimated from the data) or ``ridge``
    (least squares on the labels as -1/+1 with an L2 penalty chosen from
    :data:`RIDGE_ALPHAS` by efficient leave-one-out cross-validation; ``strength`` is not used).
    """
    # Imported here: scikit-learn takes a second to import, and every CLI command loads this
    # module to describe the supervised method's options.
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.linear_model import LogisticRegression, RidgeClassifierCV
    from sklearn.svm import LinearSVC

    if kind == "ridge":
        return RidgeClassifierCV(alphas=RIDGE_ALPHAS)
    if kind == "lda":
        return LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
    if kind == "svm":
        return LinearSVC(C=strength, dual="auto", max_iter=20_000, random_state=seed)
    if kind == "logistic":
        return LogisticRegression(C=strength, max_iter=5_000)
    raise UserInputError(f"unknown classifier {kind!r}; use one of {', '.join(CLASSIFIERS)}")


#: Width of the automatic slice band, and the spacing of its candidate starts (relative positions).
SLICE_BAND = 0.1
SLICE_BAND_STEP = 0.05
#: Slices of every subject a candidate band must hold (fewer: too little to train on, too noisy to score).
MIN_BAND_SLICES = 3


def fit_normal(codes: np.ndarray, labels: np.ndarray, kind: str, strength: float,
               seed: int) -> tuple[np.ndarray, float, np.ndarray]:
    """The classifier's (unnormalised) weights in code space, its offset, and the informative subspace's mean."""
    mean, basis = informative_subspace(codes)
    model_ = make_classifier(kind, strength, seed)
    model_.fit((codes - mean) @ basis, labels)
    return basis @ np.asarray(model_.coef_, dtype=np.float64).ravel(), float(model_.intercept_[0]), mean


def fit_regression(codes: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression of ``values`` on the codes: its (unnormalised) weights in code space, and the subspace's mean.

    The regression sees the codes within their informative subspace, as the classifiers do;
    its penalty is chosen from :data:`RIDGE_ALPHAS` by efficient leave-one-out
    cross-validation (``sklearn.linear_model.RidgeCV``). Its weights point to where the
    values grow: the direction along which they are read out best by a straight line.
    """
    from sklearn.linear_model import RidgeCV

    mean, basis = informative_subspace(codes)
    model_ = RidgeCV(alphas=RIDGE_ALPHAS).fit((codes - mean) @ basis, values)
    return basis @ np.asarray(model_.coef_, dtype=np.float64).ravel(), mean


def subject_folds(subjects: np.ndarray, labels: np.ndarray, seed: int) -> list[np.ndarray]:
    """Folds of subjects for cross-validation: one per subject of the smaller group, each with both groups."""
    rng = np.random.default_rng(seed)
    groups = [rng.permutation(subjects[labels == value]) for value in (0, 1)]
    count = min(len(g) for g in groups)
    return [np.concatenate(parts) for parts in zip(*(np.array_split(g, count) for g in groups))]


def candidate_bands(subject: np.ndarray, position: np.ndarray, width: float = SLICE_BAND,
                    step: float = SLICE_BAND_STEP) -> list[tuple[float, float, np.ndarray]]:
    """The bands a slice band is chosen from: every slice, then the bands of ``width`` every ``step``.

    A band counts only when every subject has at least :data:`MIN_BAND_SLICES` slices in it;
    every slice always counts. Returns ``(low, high, mask of the codes in it)``.
    """
    subjects = np.unique(subject)
    starts = np.arange(0.0, 1.0 - width + 1e-9, step)
    out = []
    for low, high in [(0.0, 1.0)] + [(round(float(a), 6), round(float(a + width), 6)) for a in starts]:
        band = (position >= low) & (position <= high)
        if (low, high) == (0.0, 1.0) or min(int((band & (subject == s)).sum()) for s in subjects) >= MIN_BAND_SLICES:
            out.append((low, high, band))
    return out


def best_band(subject: np.ndarray, labels: np.ndarray, position: np.ndarray,
              score: Callable[[np.ndarray, list[np.ndarray]], float], seed: int = 0, width: float = SLICE_BAND,
              step: float = SLICE_BAND_STEP) -> tuple[float, float, float | None]:
    """The candidate band (:func:`candidate_bands`) with the best cross-validated ``score``, and that score.

    ``score(band, folds)`` gets the mask of the codes in a band and the leave-subjects-out
    folds of :func:`subject_folds` (masks over every code); a NaN score does not count, and on
    a tie the wider candidate wins. Returns ``(0, 1, None)`` when a group has fewer than two
    subjects, or no band could be scored.
    """
    subjects = np.unique(subject)
    per_subject = np.array([labels[subject == s][0] for s in subjects])
    if np.bincount(per_subject, minlength=2).min() < 2:
        return 0.0, 1.0, None
    folds = [np.isin(subject, fold) for fold in subject_folds(subjects, per_subject, seed)]
    best: tuple[float, float, float] | None = None
    for low, high, band in candidate_bands(subject, position, width, step):
        value = score(band, folds)
        if np.isfinite(value) and (best is None or value > best[0] + 1e-9):
            best = (value, low, high)
    return (0.0, 1.0, None) if best is None else (best[1], best[2], best[0])


def choose_slice_band(codes: np.ndarray, labels: np.ndarray, subject: np.ndarray, position: np.ndarray,
                      kind: str = "svm", strength: float = 1.0, seed: int = 0, width: float = SLICE_BAND,
                      step: float = SLICE_BAND_STEP) -> tuple[float, float, float | None]:
    """The band of slice positions ``(low, high)`` the classifier separates best, and its cross-validated accuracy.

    The candidates are every slice ``(0, 1)`` and the bands of ``width`` starting every
    ``step``; a band counts only when every subject has at least :data:`MIN_BAND_SLICES`
    slices in it. Only the given
    (training) codes are used, in the leave-subjects-out folds of :func:`subject_folds`; on a
    tie the wider candidate wins (:func:`best_band`). Returns ``(0, 1, None)`` when a group has
    fewer than two subjects.
    """
    def cross_validated_accuracy(band: np.ndarray, folds: list[np.ndarray]) -> float:
        correct = 0
        for held_out in folds:
            test, train = band & held_out, band & ~held_out
            weights, intercept, mean = fit_normal(codes[train], labels[train], kind, strength, seed)
            correct += int((((codes[test] - mean) @ weights + intercept > 0).astype(int) == labels[test]).sum())
        return correct / int(band.sum())

    return best_band(subject, labels, position, cross_validated_accuracy, seed, width, step)


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of scores whose sign (positive: label 1) matches the labels."""
    return float(np.mean((scores > 0).astype(int) == labels))


def held_out_scores(codes: np.ndarray, labels: np.ndarray, direction: np.ndarray, offset: float,
                    subjects: np.ndarray, per_code_subject: np.ndarray) -> dict[str, float]:
    """Slice- and subject-level accuracy of thresholding projections on held-out subjects."""
    mask = np.isin(per_code_subject, subjects)
    scores = codes[mask] @ direction + offset
    slice_accuracy = accuracy(scores, labels[mask])
    present = [s for s in subjects if (per_code_subject[mask] == s).any()]
    subject_scores = np.array([scores[per_code_subject[mask] == s].mean() for s in present])
    subject_labels_ = np.array([labels[mask][per_code_subject[mask] == s][0] for s in present])
    positive, negative = scores[labels[mask] == 1], scores[labels[mask] == 0]
    spread = np.sqrt(0.5 * (positive.var() + negative.var())) or 1.0
    return {"accuracy": slice_accuracy, "subject_accuracy": accuracy(subject_scores, subject_labels_),
            "separation": float((positive.mean() - negative.mean()) / spread)}

