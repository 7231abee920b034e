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

Baselines
---------
With ``baselines=True`` (default) the same split and band also give the shuffled-label
chance level of each direction and a pixel-space logistic regression
(:mod:`~napari_latent.latent.discovery.supervised_baselines`); the warnings of
:mod:`napari_latent.analysis.trust` say when a direction does not beat them. Measured on
three 32-subject phantom cohorts (10 splits each), ``classifier="lda"`` (shrinkage) and
logistic regression score as the SVM does (mean held-out slice accuracy 0.82 for all
three), and ``aggregate=True`` (training on subject mean codes) raises the subject accuracy
(0.90 against 0.85) but lowers the slice accuracy (0.74 against 0.82); the SVM on slices stays
the default. See ``docs/directions.md``.

A graded target
---------------
With ``classifier="ridge"`` and ``target`` a numeric cohort column (a disease factor, a
measured volume, a score), the first direction is the ridge regression of the codes onto the
column (:func:`~napari_latent.latent.discovery.supervised_fit.fit_regression`) instead of a
classifier's normal: the direction along which the column is read out best, turned to point
to the positive group, with its threshold halfway between the group means. A classifier's
normal follows whatever separates the groups most, which may be all-or-nothing or a mixture
of changes; the regression follows how much of the column a subject has. With
``slices="auto"`` the band is the one where the column is read out best (the readout of
:mod:`~napari_latent.latent.discovery.supervised_readout`, cross-validated over the training
subjects with the same folds), and the chance level shuffles each subject's label and value
together.

Long codes
----------
Codes of more than :data:`~napari_latent.latent.discovery.supervised_fit.MAX_CODE_DIMENSIONS`
(256) numbers (a VQ-VAE's quantised map: 16 384 at 128 pixels; a StyleGAN's w+) are first
reduced to the 256 leading principal components of the *training subjects'* codes
(:class:`~napari_latent.latent.discovery.supervised_fit.CodeReduction`); everything above
runs in that space and the directions are mapped back to code space. Conditioning stays
exact (orthogonal in the reduced space is orthogonal in code space). ``info["reduced_to"]``
gives the dimensions kept and the share of the variance they hold. Without it the band search
and the chance level take minutes per discovery on such codes.

Labels are the ``group`` column of the cohort table (two groups), or a numeric column
split at a quantile (above: positive).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ...errors import DataError, UserInputError
from ...models.base import GenerativeModel
from ...progress import Operation, ProgressEvent, StopFlag
from ...settings import Setting
from ...volumes.cohort import Cohort, load_cohort
from ..cohort_codes import CohortCodes, iter_cohort_codes
from ..directions import Directions
from ..inversion import METHODS as INVERSION_METHODS
from ..inversion import default_space
from . import DataNeed, register_method
from .supervised_baselines import (
    PERMUTATIONS,
    PIXEL_C_GRID,
    PIXEL_SIZE,
    DirectionFit,
    pixel_baseline,
    pixel_features,
    pixel_regression_baseline,
    shuffled_baseline,
)
from .supervised_fit import (
    CLASSIFIERS,
    MAX_CODE_DIMENSIONS,
    MIN_BAND_SLICES,
    MIN_VARIANCE_RATIO,
    SLICE_BAND,
    SLICE_BAND_STEP,
    CodeReduction,
    accuracy,
    choose_slice_band,
    fit_normal,
    fit_regression,
    held_out_scores,
    informative_subspace,
    project_out,
    subject_folds,
)
from .supervised_readout import choose_readout_band, factor_readouts, subject_means

__all__ = ["CLASSIFIERS", "MIN_BAND_SLICES", "MIN_SUBJECTS_PER_GROUP", "MIN_VARIANCE_RATIO", "SLICE_BAND",
           "SLICE_BAND_STEP", "choose_slice_band", "informative_subspace", "iter_supervised", "parse_slices",
           "project_out", "split_subjects_stratified", "subject_folds", "subject_labels", "target_values"]

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


def split_subjects_stratified(labels: np.ndarray, val_fraction: float, seed: int,
                              groups: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Held-out subjects per group (at least one of each), the rest for training.

    ``groups`` (the participant of each entry, :meth:`Cohort.participant_groups`) keeps the
    sessions of one participant on one side; a participant counts with its first entry's label.
    """
    if groups is not None:
        groups_array = np.asarray(groups)
        keys = np.unique(groups_array)
        first = np.array([np.flatnonzero(groups_array == k)[0] for k in keys])
        train_keys, val_keys = split_subjects_stratified(np.asarray(labels)[first], val_fraction, seed)
        train = np.flatnonzero(np.isin(groups_array, keys[train_keys]))
        return train, np.flatnonzero(np.isin(groups_array, keys[val_keys]))
    rng = np.random.default_rng(seed)
    train, val = [], []
    for value in (0, 1):
        members = rng.permutation(np.flatnonzero(labels == value))
        n_val = min(max(1, round(len(members) * val_fraction)), len(members) - 1)
        val.extend(members[:n_val])
        train.extend(members[n_val:])
    return np.sort(np.array(train)), np.sort(np.array(val))


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



def target_values(cohort: Cohort, target: str) -> np.ndarray:
    """The regression target of every subject: a numeric cohort column without empty values that varies.

    Raises
    ------
    DataError
        For a missing or non-numeric column, an empty value, or a column with one value.
    """
    values = np.asarray(cohort.column(target), dtype=np.float64)
    if np.isnan(values).any():
        raise DataError(f"target column {target!r} has empty values; the ridge direction needs one for every volume")
    if np.ptp(values) == 0:
        raise DataError(f"target column {target!r} has the same value for every volume; there is nothing to regress on")
    return values


def _check_cohort(cohort: Cohort, settings: Mapping[str, Any]) -> None:
    """Fail on unusable labels (and target) before the (slow) codes of the cohort are computed."""
    subject_labels(cohort, settings.get("column"), settings.get("positive"), settings.get("quantile", 0.5))
    if settings.get("target") is not None:
        target_values(cohort, settings["target"])


def _iter_codes(model: GenerativeModel, data: str | os.PathLike[str] | Cohort | CohortCodes,
                labels: str | os.PathLike[str] | None, space: str, settings: Mapping[str, Any], inversion: str,
                steps: int, stop: StopFlag | None) -> Operation[CohortCodes]:
    """The codes of ``data`` in ``space`` (computed unless given), its labels checked first."""
    if isinstance(data, CohortCodes):
        if data.space != space:
            raise UserInputError(f"the given codes are in space {data.space!r}, not {space!r}")
        return data
    cohort = data if isinstance(data, Cohort) else load_cohort(data, labels)
    _check_cohort(cohort, settings)  # fail before the (slow) inversion
    return (yield from iter_cohort_codes(model, cohort, space, inversion, steps, stop=stop))


def _slice_band(codes: np.ndarray, code_labels: np.ndarray, cohort_codes: CohortCodes, train_mask: np.ndarray,
                band: str | tuple[float, float], classifier: str, strength: float, seed: int,
                code_values: np.ndarray | None = None,
                aggregate: bool = False) -> tuple[float, float, float | None, np.ndarray]:
    """The band ``(low, high)``, its cross-validated score (``"auto"`` only) and which codes lie in it.

    The score is the classifier's accuracy, or with a target the readout's R².
    """
    band_cv = None
    if band == "auto" and code_values is not None:
        low, high, band_cv = choose_readout_band(codes[train_mask], code_values[train_mask], code_labels[train_mask],
                                                 cohort_codes.subject[train_mask], cohort_codes.position[train_mask],
                                                 aggregate, seed)
    elif band == "auto":
        low, high, band_cv = choose_slice_band(codes[train_mask], code_labels[train_mask],
                                               cohort_codes.subject[train_mask], cohort_codes.position[train_mask],
                                               classifier, strength, seed)
    else:
        low, high = (0.0, 1.0) if band == "all" else band
    in_band = (cohort_codes.position >= low) & (cohort_codes.position <= high)
    if not (in_band & ~train_mask).any() or len(np.unique(code_labels[in_band & train_mask])) < 2:
        raise DataError(f"the slice band {low:g}..{high:g} leaves no slices of one group or of the held-out subjects")
    return low, high, band_cv, in_band


def _training_set(codes: np.ndarray, labels: np.ndarray, subject: np.ndarray, aggregate: bool,
                  values: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The classifier's training points, labels and values: every code, or (``aggregate``) each subject's mean."""
    if not aggregate:
        return codes, labels, values
    present, means = subject_means(codes, subject)
    first = np.array([np.flatnonzero(subject == s)[0] for s in present])
    return means, labels[first], None if values is None else values[first]


def _conditions(condition: Directions | None, space: str, reduction: CodeReduction | None) -> list[np.ndarray]:
    """The conditioning directions as vectors (in the reduced space when the codes are reduced)."""
    if condition is None:
        return []
    if condition.space != space:
        raise UserInputError(f"conditioning directions are in space {condition.space!r}, not {space!r}")
    vectors = [condition.vectors[i].double().numpy() for i in range(len(condition))]
    # orthogonal to basis.T @ c in the reduced space is orthogonal to c in code space, exactly
    return [reduction.reduce_direction(v) for v in vectors] if reduction is not None else vectors


def _directions(train_codes: np.ndarray, train_labels: np.ndarray, classifier: str, strength: float, seed: int,
                conditions: list[np.ndarray],
                values: np.ndarray | None = None) -> tuple[list[np.ndarray], list[float], np.ndarray]:
    """The classifier's unit normal and the mean difference (conditions projected out), their offsets, the means.

    With target ``values`` the first direction is the ridge regression of the values on the
    codes instead, turned to point to the positive group, with its offset at the midpoint of
    the group means.
    """
    if values is None:
        weights, intercept, mean = fit_normal(train_codes, train_labels, classifier, strength, seed)
    else:
        (weights, mean), intercept = fit_regression(train_codes, values), 0.0
    norm = np.linalg.norm(weights)
    if norm < 1e-12:
        raise DataError("the classifier found no separating direction (all weights are zero)")
    normal = project_out(weights / norm, conditions)
    offset = (intercept - float(weights @ mean)) / norm
    positive_mean = train_codes[train_labels == 1].mean(0)
    negative_mean = train_codes[train_labels == 0].mean(0)
    means = positive_mean - negative_mean
    if values is not None and float(means @ normal) < 0:
        normal = -normal  # a target that falls with the positive group (e.g. a volume that shrinks)
    mean_direction = project_out(means, conditions)
    midpoint = 0.5 * (positive_mean + negative_mean)
    at_midpoint = bool(conditions) or values is not None
    offsets = [offset if not at_midpoint else -float(midpoint @ normal), -float(midpoint @ mean_direction)]
    return [normal, mean_direction], offsets, means


def _scores(codes: np.ndarray, code_labels: np.ndarray, subject: np.ndarray, in_band: np.ndarray,
            train_mask: np.ndarray, vectors: list[np.ndarray], offsets: list[float],
            val_subjects: np.ndarray) -> dict[str, list[float]]:
    """Held-out and training scores of each direction, on the codes in the band."""
    scores: dict[str, list[float]] = {"accuracy": [], "subject_accuracy": [], "separation": [], "train_accuracy": []}
    for vector, bias in zip(vectors, offsets):
        held_out = held_out_scores(codes[in_band], code_labels[in_band], vector, bias, val_subjects, subject[in_band])
        for key, value in held_out.items():
            scores[key].append(value)
        scores["train_accuracy"].append(accuracy(codes[train_mask] @ vector + bias, code_labels[train_mask]))
    return scores


def _iter_baselines(cohort_codes: CohortCodes, codes: np.ndarray, code_labels: np.ndarray, in_band: np.ndarray,
                    train_mask: np.ndarray, fit: DirectionFit, observed: list[float], permutations: int,
                    seed: int, code_values: np.ndarray | None = None) -> Operation[dict[str, Any]]:
    """The shuffled-label chance level of each direction and the pixel baseline, on the same split and band."""
    subject = cohort_codes.subject[in_band]
    train = train_mask[in_band]
    yield ProgressEvent(0, 2, f"chance level: {permutations} fits on shuffled labels", stage="baselines")
    shuffled = shuffled_baseline(codes[in_band], code_labels[in_band], subject, train, fit, observed, permutations,
                                 seed, None if code_values is None else code_values[in_band])
    yield ProgressEvent(1, 2, "pixel baseline: logistic regression on the slice images", stage="baselines")
    features, reason = pixel_features(cohort_codes, in_band)
    pixel: dict[str, Any] = {"skipped": reason}
    if features is not None:
        pixel = {**pixel_baseline(features, code_labels[in_band], subject, train, seed), "skipped": None}
    out = {"shuffled": shuffled, "pixel": pixel, "permutations": int(permutations),
           "pixel_size": PIXEL_SIZE, "pixel_c_grid": list(PIXEL_C_GRID)}
    if code_values is not None:
        out["pixel_regression"] = {"skipped": reason} if features is None else {
            **pixel_regression_baseline(features, code_values[in_band], code_labels[in_band], subject, train, seed),
            "skipped": None}
    yield ProgressEvent(2, 2, "baselines measured", stage="baselines")
    return out


@register_method(
    "supervised", "InterFaceGAN: the normal of a linear classifier between two labelled groups",
    settings=(
        Setting("column", "str", None, "a numeric cohort column split at quantile instead of the 'group' column"),
        Setting("positive", "str", None, "the group the direction points to (default: disease if present)",
                label="positive group"),
        Setting("quantile", "float", 0.5, "split point of a numeric column (above: positive)"),
        Setting("classifier", "choice", "svm", "linear SVM (InterFaceGAN), logistic regression, linear "
                "discriminant analysis with shrinkage (lda), or ridge (least squares; with a target, a regression "
                "onto it)", choices=CLASSIFIERS),
        Setting("target", "str", None, "a numeric cohort column the ridge direction regresses on (classifier "
                "ridge): the direction along which it is read out best, e.g. ventricle_enlargement"),
        Setting("strength", "float", 1.0, "inverse regularisation C of the classifier"),
        Setting("val_fraction", "float", 0.25, "fraction of subjects per group held out to measure accuracy"),
        Setting("slices", "str", "auto", "the slices that train and score the classifier: auto (the band of slice "
                "positions chosen by cross-validation on the training subjects), all, or a band of relative "
                "positions such as 0.5:0.7", parse=parse_slices, metavar="auto|all|LOW:HIGH"),
        Setting("aggregate", "bool", False, "train the classifier on each training subject's mean code in the band "
                "(one point per subject) instead of on every slice"),
        Setting("baselines", "bool", True, "also measure the chance level (shuffled labels) and a pixel-space "
                "logistic regression on the same split"),
        Setting("permutations", "int", PERMUTATIONS, "shuffled-label fits for the chance level", minimum=1),
        Setting("condition", "object", None, "directions to project out of the result (conditional manipulation)"),
        Setting("inversion", "choice", "auto", "how volumes are inverted (the encoder where the model has one)",
                choices=INVERSION_METHODS),
        Setting("steps", "int", 100, "inversion steps where volumes are optimised", minimum=1),
        Setting("seed", "int", 0, "seed of the subject split", minimum=0),
        Setting("count", "int", 2, "1 (the classifier's normal) or 2 (plus the difference of group means)",
                minimum=1, label="directions", form=False),
    ),
    data=DataNeed("codes", required=True, labels=True, check=_check_cohort, inversion=("inversion", "steps"),
                  help="labelled data: a folder of volumes with a cohort.csv (a 'group' column with two groups, "
                  "or a numeric column)"))
def iter_supervised(model: GenerativeModel, *, space: str | None = None,
                    data: str | os.PathLike[str] | Cohort | CohortCodes | None = None,
                    labels: str | os.PathLike[str] | None = None, column: str | None = None,
                    positive: str | None = None, quantile: float = 0.5, classifier: str = "svm",
                    target: str | None = None, strength: float = 1.0, val_fraction: float = 0.25,
                    slices: str | tuple[float, float] = "auto",
                    aggregate: bool = False, baselines: bool = True, permutations: int = PERMUTATIONS,
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
    classifier : {"svm", "logistic", "lda", "ridge"}
        Linear SVM (InterFaceGAN), logistic regression, linear discriminant analysis with
        Ledoit-Wolf shrinkage, or ridge (least squares on the labels; with ``target``, the
        regression onto it).
    target : str, optional
        With ``classifier="ridge"``: a numeric cohort column (for example a disease factor,
        or a measured volume). The first direction is then the ridge regression of the codes
        (each subject's mean code with ``aggregate``) onto it, turned to point to the
        positive group, with its threshold halfway between the group means: the direction
        along which the column is read out best, not the one that separates the groups best.
        With ``slices="auto"`` the band is the one where the column is read out best
        (cross-validated over the training subjects, ``info["band_cv_r2"]``).
    strength : float
        Inverse regularisation ``C`` of the classifier (not used by ``lda``).
    val_fraction : float
        Fraction of subjects per group held out to measure accuracy.
    slices : "auto", "all" or (float, float)
        The band of relative slice positions whose codes train and test the classifier (see
        the module docstring): chosen by cross-validation on the training subjects, every
        slice, or a fixed band.
    aggregate : bool
        Train the classifier on each training subject's mean code in the band instead of on
        every slice (the held-out scores are computed the same way either way).
    baselines : bool
        Also measure the shuffled-label chance level and the pixel baseline
        (:mod:`~napari_latent.latent.discovery.supervised_baselines`).
    permutations : int
        Shuffled-label fits for the chance level.
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
        cross-validated training accuracy (``band_cv_accuracy``; with a target, its readout
        R², ``band_cv_r2``). With ``baselines``: scores
        ``chance_accuracy`` (mean held-out accuracy on shuffled labels), ``chance_accuracy_95``
        and ``p_value``, and ``info["baselines"]`` (``shuffled``: those numbers with the subject
        level; ``pixel``: the pixel baseline's ``accuracy``, ``subject_accuracy``, ``C``, or
        ``skipped`` with the reason; with a target, ``pixel_regression``: the pixel ridge
        regression onto it, ``accuracy``, ``subject_accuracy``, ``readout_r2``, ``alpha``).
    """
    if count not in (1, 2):
        raise UserInputError("the supervised method gives 1 or 2 directions (the normal, and the mean difference)")
    band = _band(slices)
    if target is not None and classifier != "ridge":
        raise UserInputError(f"target {target!r} is regressed on by the ridge direction only; use classifier ridge")
    if data is None:
        raise UserInputError("the supervised method needs labelled data (a folder of volumes with cohort.csv)")
    space = model.check_space(space or default_space(model))
    label_settings = {"column": column, "positive": positive, "quantile": quantile, "target": target}
    cohort_codes = yield from _iter_codes(model, data, labels, space, label_settings, inversion, steps, stop)
    cohort = cohort_codes.cohort
    per_subject, positive_name, negative_name = subject_labels(cohort, column, positive, quantile)
    train_subjects, val_subjects = split_subjects_stratified(per_subject, val_fraction, seed,
                                                             cohort.participant_groups())
    codes = cohort_codes.codes.double().numpy()
    code_labels = per_subject[cohort_codes.subject]
    code_values = None if target is None else target_values(cohort, target)[cohort_codes.subject]
    train_mask = np.isin(cohort_codes.subject, train_subjects)
    reduction = None
    if codes.shape[1] > MAX_CODE_DIMENSIONS:
        reduction = CodeReduction.fit(codes[train_mask], seed=seed)
        codes = reduction.reduce(codes)
    conditions = _conditions(condition, space, reduction)
    low, high, band_cv, in_band = _slice_band(codes, code_labels, cohort_codes, train_mask, band, classifier,
                                              strength, seed, code_values, aggregate)
    train_mask &= in_band

    def fit(train_codes: np.ndarray, train_labels: np.ndarray,
            train_values: np.ndarray | None = None) -> tuple[list[np.ndarray], list[float]]:
        points, point_labels, point_values = _training_set(train_codes, train_labels, cohort_codes.subject[train_mask],
                                                           aggregate, train_values)
        found, found_offsets, _ = _directions(points, point_labels, classifier, strength, seed, conditions,
                                              point_values)
        return found[:count], found_offsets[:count]

    train_values = None if code_values is None else code_values[train_mask]
    vectors, offsets = fit(codes[train_mask], code_labels[train_mask], train_values)
    points, point_labels, _ = _training_set(codes[train_mask], code_labels[train_mask],
                                            cohort_codes.subject[train_mask], aggregate)
    means = points[point_labels == 1].mean(0) - points[point_labels == 0].mean(0)
    scores = _scores(codes, code_labels, cohort_codes.subject, in_band, train_mask, vectors, offsets, val_subjects)
    measured: dict[str, Any] | None = None
    if baselines:
        measured = yield from _iter_baselines(cohort_codes, codes, code_labels, in_band, train_mask, fit,
                                              scores["accuracy"], int(permutations), seed, code_values)
        for key in ("chance_accuracy", "chance_accuracy_95", "p_value"):
            scores[key] = [chance[key] for chance in measured["shuffled"]]
    yield ProgressEvent(1, 1, f"separated {positive_name} from {negative_name}", {"accuracy": scores["accuracy"][0]},
                        stage="discover")
    code_std = [float((codes @ v).std()) for v in vectors]
    readouts = factor_readouts(codes, cohort_codes.subject, in_band, vectors, cohort, train_subjects, val_subjects)
    if reduction is not None:
        vectors, offsets = (list(items) for items in zip(*(reduction.expand(v, b) for v, b in zip(vectors, offsets))))
    names = [f"{negative_name} → {positive_name} ({classifier if target is None else f'ridge on {target}'})",
             f"{negative_name} → {positive_name} (mean difference)"]
    subjects = [s.name for s in cohort.subjects]
    info = {"positive": positive_name, "negative": negative_name, "column": column, "target": target,
            "train_subjects": [subjects[i] for i in train_subjects],
            "validation_subjects": [subjects[i] for i in val_subjects],
            "conditioned_on": condition.names if condition is not None else [],
            "group_mean_distance": float(np.linalg.norm(means)),
            "subspace_dimensions": int(informative_subspace(codes[train_mask])[1].shape[1]),
            "slices": [low, high], "band_cv_accuracy": band_cv if target is None else None,
            "band_cv_r2": band_cv if target is not None else None, "aggregate": bool(aggregate),
            "reduced_to": None if reduction is None else {"dimensions": reduction.dimensions,
                                                          "explained_variance": reduction.explained}}
    if measured is not None:
        info["baselines"] = measured
    info["factor_readout"] = readouts
    settings = {"classifier": classifier, "target": target, "strength": strength, "val_fraction": val_fraction,
                "seed": seed,
                "slices": slices if isinstance(slices, str) else [float(v) for v in slices],
                "column": column, "quantile": quantile, "positive": positive_name, "inversion": inversion,
                "aggregate": bool(aggregate), "baselines": bool(baselines), "permutations": int(permutations)}
    return Directions(torch.from_numpy(np.stack(vectors)).float(), space, model.name, model.fingerprint, "supervised",
                      settings, names[:count], scores, code_std, info)
