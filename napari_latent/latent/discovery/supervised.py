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

Which slices
------------
A volume's slices do not all show the disease: the slices above and below the brain, or
through parts of it without the affected anatomy, look the same in both groups, and one
hyperplane through the codes of *all* slices mostly fits slice position and the subjects'
nuisance (head size, pose, contrast) instead. The classifier is therefore trained, and its
accuracy measured, on a band of slice positions (``slices``; positions run 0..1 over each
volume's kept slices):

``"auto"`` (default)
    Of every slice and the bands of width 0.1 (starting every 0.05, each holding at least 3
    slices of every subject: volumes of fewer than about 25 kept slices always use every
    slice), the candidate with the best cross-validated accuracy *among the
    training subjects*: leave-subjects-out cross-validation (one fold per subject of the
    smaller group, each fold holding out subjects of both groups) with the same
    classifier; on a tie, every slice. The held-out subjects play no part in the choice,
    so their accuracy stays an honest estimate. With fewer than two training subjects in a
    group there is nothing to cross-validate, and every slice is used.
``"all"``
    Every slice (the behaviour before the band existed).
``(low, high)``
    A fixed band of positions.

Measured with the bundled demo VAE on phantom cohorts (16 disease, 16 healthy subjects, 64
cubed, seeds 0, 1, 2, 3, 5; mean over 10 subject splits): held-out slice accuracy 0.75-0.87
with ``"auto"`` against 0.50-0.64 with ``"all"`` (labels shuffled across subjects:
0.46-0.55). The automatic band lands at the level of the lateral ventricles (positions
about 0.55-0.7), where the phantoms' disease (enlarged ventricles, periventricular
lesions) is visible. See ``docs/directions.md`` for the table.

The result is still one linear direction in the model's code space (InterFaceGAN's
hyperplane normal); the band only decides which codes train and test it. A traversal moves
every slice of a volume along it.

The second direction returned is the plain difference of the group means of the codes
(within the band), normalised: simple, and a useful baseline against the classifier's normal.

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


#: Width of the automatic slice band, and the spacing of its candidate starts (relative positions).
SLICE_BAND = 0.1
SLICE_BAND_STEP = 0.05
#: Slices of every subject a candidate band must hold (fewer: too little to train on, too noisy to score).
MIN_BAND_SLICES = 3


def _fit_normal(codes: np.ndarray, labels: np.ndarray, kind: str, strength: float,
                seed: int) -> tuple[np.ndarray, float, np.ndarray]:
    """The classifier's (unnormalised) weights in code space, its offset, and the informative subspace's mean."""
    mean, basis = informative_subspace(codes)
    model_ = _classifier(kind, strength, seed)
    model_.fit((codes - mean) @ basis, labels)
    return basis @ np.asarray(model_.coef_, dtype=np.float64).ravel(), float(model_.intercept_[0]), mean


def subject_folds(subjects: np.ndarray, labels: np.ndarray, seed: int) -> list[np.ndarray]:
    """Folds of subjects for cross-validation: one per subject of the smaller group, each with both groups."""
    rng = np.random.default_rng(seed)
    groups = [rng.permutation(subjects[labels == value]) for value in (0, 1)]
    count = min(len(g) for g in groups)
    return [np.concatenate(parts) for parts in zip(*(np.array_split(g, count) for g in groups))]


def choose_slice_band(codes: np.ndarray, labels: np.ndarray, subject: np.ndarray, position: np.ndarray,
                      kind: str = "svm", strength: float = 1.0, seed: int = 0, width: float = SLICE_BAND,
                      step: float = SLICE_BAND_STEP) -> tuple[float, float, float | None]:
    """The band of slice positions ``(low, high)`` the classifier separates best, and its cross-validated accuracy.

    The candidates are every slice ``(0, 1)`` and the bands of ``width`` starting every
    ``step``; a band counts only when every subject has at least :data:`MIN_BAND_SLICES`
    slices in it. Only the given
    (training) codes are used, in the leave-subjects-out folds of :func:`subject_folds`; on a
    tie the wider candidate wins. Returns ``(0, 1, None)`` when a group has fewer than two
    subjects.
    """
    subjects = np.unique(subject)
    per_subject = np.array([labels[subject == s][0] for s in subjects])
    if np.bincount(per_subject, minlength=2).min() < 2:
        return 0.0, 1.0, None
    folds = [np.isin(subject, fold) for fold in subject_folds(subjects, per_subject, seed)]
    starts = np.arange(0.0, 1.0 - width + 1e-9, step)
    best: tuple[float, float, float] | None = None
    for low, high in [(0.0, 1.0)] + [(round(float(a), 6), round(float(a + width), 6)) for a in starts]:
        band = (position >= low) & (position <= high)
        if min(int((band & (subject == s)).sum()) for s in subjects) < MIN_BAND_SLICES:
            continue
        correct = 0
        for held_out in folds:
            test, train = band & held_out, band & ~held_out
            weights, intercept, mean = _fit_normal(codes[train], labels[train], kind, strength, seed)
            correct += int((((codes[test] - mean) @ weights + intercept > 0).astype(int) == labels[test]).sum())
        accuracy = correct / int(band.sum())
        if best is None or accuracy > best[0] + 1e-9:
            best = (accuracy, low, high)
    assert best is not None  # (0, 1) always qualifies
    return best[1], best[2], best[0]


def parse_slices(text: str) -> str | tuple[float, float]:
    """The ``slices`` setting from text: ``auto``, ``all`` or ``LOW:HIGH`` relative slice positions (0..1).

    Raises
    ------
    UserInputError
        For anything else, or a band that is not ``0 <= LOW < HIGH <= 1``.
    """
    text = str(text).strip()
    if text in ("auto", "all"):
        return text
    try:
        low, high = (float(v) for v in text.split(":"))
    except ValueError:
        raise UserInputError(f"slices {text!r}: use auto, all or LOW:HIGH (e.g. 0.5:0.7)") from None
    if not 0.0 <= low < high <= 1.0:
        raise UserInputError(f"slices {text!r}: a band LOW:HIGH needs 0 <= LOW < HIGH <= 1")
    return low, high


def _band(slices: str | tuple[float, float]) -> tuple[float, float] | str:
    if isinstance(slices, str):
        if slices not in ("auto", "all"):
            raise UserInputError(f"slices must be 'auto', 'all' or a (low, high) band of positions, got {slices!r}")
        return slices
    try:
        low, high = (float(v) for v in slices)
    except (TypeError, ValueError):
        raise UserInputError(f"slices must be 'auto', 'all' or a (low, high) band of positions, got {slices!r}") \
            from None
    if not 0.0 <= low < high <= 1.0:
        raise UserInputError(f"the slice band ({low}, {high}) must satisfy 0 <= low < high <= 1")
    return low, high


def _accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean((scores > 0).astype(int) == labels))


def _held_out_scores(codes: np.ndarray, labels: np.ndarray, direction: np.ndarray, offset: float,
                     subjects: np.ndarray, per_code_subject: np.ndarray) -> dict[str, float]:
    """Slice- and subject-level accuracy of thresholding projections on held-out subjects."""
    mask = np.isin(per_code_subject, subjects)
    scores = codes[mask] @ direction + offset
    slice_accuracy = _accuracy(scores, labels[mask])
    present = [s for s in subjects if (per_code_subject[mask] == s).any()]
    subject_scores = np.array([scores[per_code_subject[mask] == s].mean() for s in present])
    subject_labels_ = np.array([labels[mask][per_code_subject[mask] == s][0] for s in present])
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
                    strength: float = 1.0, val_fraction: float = 0.25, slices: str | tuple[float, float] = "auto",
                    condition: Directions | None = None,
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
    slices : "auto", "all" or (float, float)
        The band of relative slice positions whose codes train and test the classifier (see
        the module docstring): chosen by cross-validation on the training subjects, every
        slice, or a fixed band.
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
        Scores ``accuracy`` (held-out slices in the band), ``subject_accuracy``,
        ``train_accuracy`` and ``separation`` (d' of held-out projections); ``info`` names the
        groups and subjects and gives the band (``slices``) and, for ``"auto"``, its
        cross-validated training accuracy (``band_cv_accuracy``).
    """
    if count not in (1, 2):
        raise UserInputError("the supervised method gives 1 or 2 directions (the normal, and the mean difference)")
    band = _band(slices)
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
    band_cv = None
    if band == "auto":
        low, high, band_cv = choose_slice_band(codes[train_mask], code_labels[train_mask],
                                               cohort_codes.subject[train_mask], cohort_codes.position[train_mask],
                                               classifier, strength, seed)
    else:
        low, high = (0.0, 1.0) if band == "all" else band
    in_band = (cohort_codes.position >= low) & (cohort_codes.position <= high)
    if not (in_band & ~train_mask).any() or len(np.unique(code_labels[in_band & train_mask])) < 2:
        raise DataError(f"the slice band {low:g}..{high:g} leaves no slices of one group or of the held-out subjects")
    train_mask &= in_band
    weights, intercept, mean = _fit_normal(codes[train_mask], code_labels[train_mask], classifier, strength, seed)
    norm = np.linalg.norm(weights)
    if norm < 1e-12:
        raise DataError("the classifier found no separating direction (all weights are zero)")
    conditions = [condition.vectors[i].double().numpy() for i in range(len(condition))] if condition else []
    if condition is not None and condition.space != space:
        raise UserInputError(f"conditioning directions are in space {condition.space!r}, not {space!r}")
    normal = project_out(weights / norm, conditions)
    offset = (intercept - float(weights @ mean)) / norm
    means = codes[train_mask & (code_labels == 1)].mean(0) - codes[train_mask & (code_labels == 0)].mean(0)
    mean_direction = project_out(means, conditions)
    midpoint = 0.5 * (codes[train_mask & (code_labels == 1)].mean(0) + codes[train_mask & (code_labels == 0)].mean(0))
    vectors = [normal, mean_direction][:count]
    offsets = [offset if not conditions else -float(midpoint @ normal), -float(midpoint @ mean_direction)][:count]
    scores: dict[str, list[float]] = {"accuracy": [], "subject_accuracy": [], "separation": [], "train_accuracy": []}
    for vector, bias in zip(vectors, offsets):
        held_out = _held_out_scores(codes[in_band], code_labels[in_band], vector, bias, val_subjects,
                                    cohort_codes.subject[in_band])
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
            "group_mean_distance": float(np.linalg.norm(means)),
            "subspace_dimensions": int(informative_subspace(codes[train_mask])[1].shape[1]),
            "slices": [low, high], "band_cv_accuracy": band_cv}
    settings = {"classifier": classifier, "strength": strength, "val_fraction": val_fraction, "seed": seed,
                "slices": slices if isinstance(slices, str) else [float(v) for v in slices],
                "column": column, "quantile": quantile, "positive": positive_name, "inversion": inversion}
    return Directions(torch.from_numpy(np.stack(vectors)).float(), space, model.name, model.fingerprint, "supervised",
                      settings, names[:count], scores, code_std, info)
