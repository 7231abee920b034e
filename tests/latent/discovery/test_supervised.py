"""Supervised directions: held-out separation on phantoms, quantile splits, conditioning, mean differences, errors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_latent.errors import DataError, UserInputError
from napari_latent.latent.cohort_codes import CohortCodes
from napari_latent.latent.directions import Directions
from napari_latent.latent.discovery import discover
from napari_latent.latent.discovery.supervised import subject_labels
from napari_latent.models.base import build_model, model_fingerprint
from napari_latent.volumes.cohort import Cohort, Subject

DIM = 6


def synthetic_cohort(groups: list[str], values: list[float] | None = None) -> Cohort:
    values = values if values is not None else list(range(len(groups)))
    return Cohort(Path("."), [Subject(Path(f"sub-{i:03d}.nii.gz"), g, {"age": float(v)})
                              for i, (g, v) in enumerate(zip(groups, values))])


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    vae = build_model("vae", image_size=32, latent_dim=DIM, base_channels=8, max_channels=32)
    vae.fingerprint = model_fingerprint(vae)
    return vae


@pytest.fixture(scope="module")
def known_codes() -> tuple[CohortCodes, np.ndarray]:
    """20 subjects x 10 slices; the groups differ along a known unit direction (plus noise in every dimension)."""
    rng = np.random.default_rng(0)
    truth = np.array([1.0, 2.0, 0.0, 0.0, -1.0, 0.0])
    truth /= np.linalg.norm(truth)
    groups = ["healthy", "disease"] * 10
    subject = np.repeat(np.arange(20), 10)
    labels = np.array([g == "disease" for g in groups], dtype=float)[subject]
    codes = rng.normal(0.0, 1.0, (200, DIM)) + 3.0 * labels[:, None] * truth
    cohort = synthetic_cohort(groups, values=rng.normal(50, 10, 20).tolist())
    position = np.tile(np.linspace(0, 1, 10), 20)
    return CohortCodes(torch.from_numpy(codes).float(), subject, position, cohort, "z"), truth


def test_known_direction_is_found_and_held_out_subjects_are_separated(model, known_codes) -> None:
    codes, truth = known_codes
    found = discover(model, "supervised", data=codes)
    assert len(found) == 2 and found.method == "supervised" and found.space == "z"
    assert found.names == ["healthy → disease (svm)", "healthy → disease (mean difference)"]
    assert float(found.vectors[0].double() @ torch.from_numpy(truth)) > 0.95  # points to the positive group
    assert float(found.vectors[1].double() @ torch.from_numpy(truth)) > 0.95
    assert found.scores["accuracy"][0] > 0.85 and found.scores["subject_accuracy"][0] == 1.0
    assert found.scores["separation"][0] > 2.0
    train, validation = set(found.info["train_subjects"]), set(found.info["validation_subjects"])
    assert not train & validation and len(train | validation) == 20 and len(validation) == 4  # 2 per group
    logistic = discover(model, "supervised", data=codes, classifier="logistic", count=1)
    assert len(logistic) == 1 and float(logistic.vectors[0].double() @ torch.from_numpy(truth)) > 0.95


def test_mean_difference_is_the_normalised_difference_of_the_training_group_means(model, known_codes) -> None:
    codes, _ = known_codes
    found = discover(model, "supervised", data=codes, seed=3)
    names = [s.name for s in codes.cohort.subjects]
    train = np.isin(codes.subject, [names.index(n) for n in found.info["train_subjects"]])
    disease = np.array([codes.cohort.subjects[i].group == "disease" for i in codes.subject])
    x = codes.codes.double().numpy()
    expected = x[train & disease].mean(0) - x[train & ~disease].mean(0)
    np.testing.assert_allclose(found.vectors[1].double().numpy(), expected / np.linalg.norm(expected), atol=1e-6)
    assert found.info["group_mean_distance"] == pytest.approx(np.linalg.norm(expected), rel=1e-5)


def test_conditioning_projects_the_given_directions_out(model, known_codes) -> None:
    codes, _ = known_codes
    plain = discover(model, "supervised", data=codes)
    condition = Directions(torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]]), "z",
                           model.name, model.fingerprint, "axes")
    conditioned = discover(model, "supervised", data=codes, condition=condition)
    for k in range(2):
        assert torch.allclose(condition.vectors @ conditioned.vectors[k], torch.zeros(2), atol=1e-6)
        assert float(conditioned.vectors[k].norm()) == pytest.approx(1.0)
        # what is left is the normalised rest of the unconditioned direction
        rest = plain.vectors[k].double().numpy()
        basis, _ = np.linalg.qr(condition.vectors.double().numpy().T)
        rest = rest - basis @ (basis.T @ rest)
        assert float(conditioned.vectors[k].double() @ torch.from_numpy(rest / np.linalg.norm(rest))) > 0.98
    assert conditioned.info["conditioned_on"] == ["axes 1", "axes 2"]
    with pytest.raises(UserInputError, match="span of the conditioning"):
        discover(model, "supervised", data=codes, count=1,
                 condition=Directions(torch.eye(DIM), "z", model.name, model.fingerprint, "axes"))


def test_a_numeric_column_is_split_at_a_quantile() -> None:
    cohort = synthetic_cohort(["healthy"] * 8, values=[5, 1, 7, 3, 8, 2, 6, 4])
    labels, positive, negative = subject_labels(cohort, column="age")
    assert labels.tolist() == [1, 0, 1, 0, 1, 0, 1, 0]  # above the median 4.5
    assert positive == "age > 4.5" and negative == "age <= 4.5"
    labels, positive, _ = subject_labels(cohort, column="age", quantile=0.25)
    assert labels.sum() == 6 and positive == "age > 2.75"
    with pytest.raises(UserInputError, match="between 0 and 1"):
        subject_labels(cohort, column="age", quantile=1.0)


def test_numeric_column_direction_points_to_larger_values(model) -> None:
    rng = np.random.default_rng(1)
    age = rng.uniform(20, 80, 16)
    subject = np.repeat(np.arange(16), 8)
    codes = rng.normal(0.0, 0.3, (128, DIM))
    codes[:, 2] += (age[subject] - 50) / 10  # dimension 2 grows with age
    cohort = synthetic_cohort(["healthy"] * 16, values=age.tolist())
    data = CohortCodes(torch.from_numpy(codes).float(), subject, np.tile(np.linspace(0, 1, 8), 16), cohort, "z")
    found = discover(model, "supervised", data=data, column="age")
    assert int(found.vectors[0].abs().argmax()) == 2 and float(found.vectors[0, 2]) > 0.75  # the SVM normal
    assert float(found.vectors[1, 2]) > 0.9  # the mean difference
    assert found.info["positive"].startswith("age > ")
    assert found.scores["accuracy"][0] > 0.8


def test_bad_labels_are_clear_errors(model, tiny_cohort: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="exactly two groups, found 1"):
        subject_labels(synthetic_cohort(["healthy"] * 6))
    with pytest.raises(DataError, match="too few subjects: 1 disease and 5 healthy"):
        subject_labels(synthetic_cohort(["healthy"] * 5 + ["disease"]))
    with pytest.raises(DataError, match="exactly two groups, found 3"):
        subject_labels(synthetic_cohort(["a", "b", "c", "a", "b", "c"]))
    with pytest.raises(DataError, match="positive group 'sick'"):
        subject_labels(synthetic_cohort(["healthy", "disease"] * 3), positive="sick")
    with pytest.raises(UserInputError, match="needs labelled data"):
        discover(model, "supervised")
    with pytest.raises(UserInputError, match="1 or 2 directions"):
        discover(model, "supervised", data=tiny_cohort, count=3)
    # a labels file without the asked column: the error comes before any inversion
    rows = list(csv.DictReader((tiny_cohort / "cohort.csv").open()))
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "weight"])
        writer.writerows([[str(tiny_cohort / r["path"]), i] for i, r in enumerate(rows)])
    with pytest.raises(UserInputError, match="no numeric column 'age'"):
        discover(model, "supervised", data=tiny_cohort, labels=labels, column="age")
    with pytest.raises(DataError, match="needs a 'group' for every volume"):
        discover(model, "supervised", data=tiny_cohort, labels=labels)


@pytest.mark.slow
def test_phantom_groups_are_separated_on_held_out_subjects(demo_cohort_codes) -> None:
    """The demo VAE, 32 phantom subjects (64 cubed, seed 0): held-out accuracy well above chance over 10 splits.

    The phantoms' groups overlap (as in a real cohort) and only 8 subjects are held out per
    split, so one split says little; the mean over splits is compared with the same
    procedure on labels shuffled across subjects (chance). The default slice band
    (``slices="auto"``, chosen on the training subjects) is what makes this hold across cohort
    seeds: measured 2026-12-01 on seeds 0-7 of this cohort, slice accuracy 0.68-0.89 (0.87 on
    seed 0) against 0.50-0.64 with every slice (see docs/directions.md).
    """
    model, codes = demo_cohort_codes
    accuracy, subject_accuracy, shuffled = [], [], []
    rng = np.random.default_rng(0)
    groups = [s.group for s in codes.cohort.subjects]
    assert sorted(groups).count("disease") == 16
    for seed in range(10):
        found = discover(model, "supervised", data=codes, seed=seed, count=1)
        accuracy.append(found.scores["accuracy"][0])
        subject_accuracy.append(found.scores["subject_accuracy"][0])
        permuted = [Subject(s.path, g, s.factors) for s, g in zip(codes.cohort.subjects, rng.permutation(groups))]
        control = CohortCodes(codes.codes, codes.subject, codes.position, Cohort(codes.cohort.root, permuted), "z")
        shuffled.append(discover(model, "supervised", data=control, seed=seed, count=1).scores["accuracy"][0])
    assert np.mean(accuracy) > 0.7, accuracy
    assert np.mean(subject_accuracy) > 0.75, subject_accuracy
    assert np.mean(shuffled) < 0.6, shuffled
    assert np.mean(accuracy) - np.mean(shuffled) > 0.15
