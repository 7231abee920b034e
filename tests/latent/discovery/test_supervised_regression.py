"""The ridge direction of the supervised method: a classifier on the labels, or a regression onto a target column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_latent.analysis.trust import direction_warnings
from napari_latent.errors import DataError, UserInputError
from napari_latent.latent.cohort_codes import CohortCodes
from napari_latent.latent.discovery import discover
from napari_latent.latent.discovery.supervised_fit import fit_regression
from napari_latent.models.base import build_model, model_fingerprint
from napari_latent.volumes.cohort import Cohort, Subject

DIM = 6
STEP = np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0])      # all-or-nothing: present in every disease subject
GRADED = np.array([0.0, 1.0, 1.0, 0.0, 0.0, 0.0]) / np.sqrt(2.0)  # grows with the severity


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    built = build_model("vae", image_size=32, latent_dim=DIM, base_channels=8, max_channels=32)
    built.fingerprint = model_fingerprint(built)
    return built


def two_feature_codes(seed: int = 0, n_subjects: int = 40) -> CohortCodes:
    """Disease subjects carry a large all-or-nothing step and a severity that moves the codes along another axis.

    The step separates the groups best, so a classifier's normal follows it; the severity
    varies widely within the disease group, and only the graded axis tracks it.
    """
    rng = np.random.default_rng(seed)
    groups = ["healthy", "disease"] * (n_subjects // 2)
    severity = np.array([rng.normal(1.0, 0.05) if g == "healthy" else rng.uniform(1.2, 3.0) for g in groups])
    subject = np.repeat(np.arange(n_subjects), 10)
    disease = np.array([g == "disease" for g in groups], dtype=float)
    codes = (rng.normal(0.0, 0.5, (10 * n_subjects, DIM)) + 4.0 * disease[subject][:, None] * STEP
             + 1.5 * (severity[subject] - 1.0)[:, None] * GRADED)
    subjects = [Subject(Path(f"sub-{i:03d}.nii.gz"), g, {"severity": float(severity[i]),
                                                         "shrinkage": float(-severity[i]), "constant": 1.0})
                for i, g in enumerate(groups)]
    return CohortCodes(torch.from_numpy(codes).float(), subject, np.tile(np.linspace(0, 1, 10), n_subjects),
                       Cohort(Path("."), subjects), "z")


def test_fit_regression_recovers_the_axis_the_values_grow_along() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(size=200)
    codes = rng.normal(0.0, 0.3, (200, DIM)) + values[:, None] * GRADED
    weights, mean = fit_regression(codes, values)
    assert abs(weights @ GRADED) / np.linalg.norm(weights) > 0.98
    assert mean == pytest.approx(codes.mean(0))


def test_ridge_on_the_labels_separates_the_groups(model: torch.nn.Module) -> None:
    found = discover(model, "supervised", data=two_feature_codes(), classifier="ridge", slices="all", permutations=5)
    assert found.scores["accuracy"][0] > 0.95
    assert found.names[0] == "healthy → disease (ridge)"
    assert found.settings["classifier"] == "ridge" and found.settings["target"] is None


def test_ridge_on_a_target_reads_it_out_better_than_the_group_normal(model: torch.nn.Module) -> None:
    codes = two_feature_codes()
    normal = discover(model, "supervised", data=codes, slices="all", aggregate=True, permutations=5, count=1)
    ridge = discover(model, "supervised", data=codes, classifier="ridge", target="severity", slices="all",
                     aggregate=True, permutations=5, count=1)
    along_normal = normal.info["factor_readout"]["severity"]["r2"][0]
    along_ridge = ridge.info["factor_readout"]["severity"]["r2"][0]
    assert along_ridge > 0.8
    assert along_ridge > along_normal + 0.15
    vector = ridge.vectors[0].double().numpy()
    assert vector @ GRADED > 0.9  # the graded axis, not the step
    assert abs(normal.vectors[0].double().numpy() @ STEP) > abs(normal.vectors[0].double().numpy() @ GRADED)
    assert ridge.scores["accuracy"][0] > 0.8  # its midpoint threshold still tells the groups apart
    assert 0.3 < ridge.scores["chance_accuracy"][0] < 0.7
    assert ridge.names[0] == "healthy → disease (ridge on severity)"
    assert ridge.info["target"] == "severity" and ridge.settings["target"] == "severity"
    assert "readout" not in [w.kind for w in direction_warnings(ridge)]


def test_a_target_that_falls_with_the_disease_still_points_to_the_disease(model: torch.nn.Module) -> None:
    found = discover(model, "supervised", data=two_feature_codes(seed=1), classifier="ridge", target="shrinkage",
                     slices="all", aggregate=True, permutations=5, count=1)
    vector = found.vectors[0].double().numpy()
    assert vector @ GRADED > 0.8 and abs(vector @ STEP) < 0.2
    assert found.scores["accuracy"][0] > 0.8
    assert found.info["factor_readout"]["shrinkage"]["r2"][0] > 0.8


def test_target_needs_the_ridge_classifier_and_a_usable_column(model: torch.nn.Module) -> None:
    codes = two_feature_codes()
    with pytest.raises(UserInputError, match="classifier ridge"):
        discover(model, "supervised", data=codes, target="severity", permutations=5)
    with pytest.raises(DataError, match="no numeric column 'volume'"):
        discover(model, "supervised", data=codes, classifier="ridge", target="volume", permutations=5)
    with pytest.raises(DataError, match="same value for every volume"):
        discover(model, "supervised", data=codes, classifier="ridge", target="constant", permutations=5)
