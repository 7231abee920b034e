"""Baselines of the supervised direction: shuffled-label chance, pixel logistic regression, lda, subject means."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_latent.latent.cohort_codes import CohortCodes, iter_cohort_codes
from napari_latent.latent.discovery import discover
from napari_latent.latent.discovery.supervised_baselines import (
    PIXEL_C_GRID,
    PIXEL_RIDGE_ALPHAS,
    pixel_baseline,
    pixel_features,
    pixel_regression_baseline,
    shuffled_baseline,
)
from napari_latent.models.base import build_model, model_fingerprint
from napari_latent.progress import run_operation
from napari_latent.volumes.cohort import Cohort, Subject
from napari_latent.volumes.io import open_volume
from napari_latent.volumes.slicing import SliceSpec, slice_volume

DIM = 6


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    vae = build_model("vae", image_size=32, latent_dim=DIM, base_channels=8, max_channels=32)
    vae.fingerprint = model_fingerprint(vae)
    return vae


def known_codes(shift: float = 3.0, shuffle: bool = False) -> tuple[CohortCodes, np.ndarray]:
    """24 subjects x 10 slices; the groups differ by ``shift`` along a known unit direction (noise elsewhere)."""
    rng = np.random.default_rng(0)
    truth = np.array([1.0, 2.0, 0.0, 0.0, -1.0, 0.0])
    truth /= np.linalg.norm(truth)
    groups = ["healthy", "disease"] * 12
    subject = np.repeat(np.arange(24), 10)
    labels = np.array([g == "disease" for g in groups], dtype=float)[subject]
    codes = rng.normal(0.0, 1.0, (240, DIM)) + shift * labels[:, None] * truth
    if shuffle:
        groups = list(rng.permutation(groups))
    cohort = Cohort(Path("."), [Subject(Path(f"sub-{i:03d}.nii.gz"), g, {}) for i, g in enumerate(groups)])
    return CohortCodes(torch.from_numpy(codes).float(), subject, np.tile(np.linspace(0, 1, 10), 24), cohort,
                       "z"), truth


def test_a_real_difference_is_above_chance_and_random_labels_are_not(model) -> None:
    codes, _ = known_codes()
    found = discover(model, "supervised", data=codes, slices="all", permutations=50)
    scores = found.scores
    assert scores["accuracy"][0] > 0.85
    # shuffles that happen to agree with the truth for most training subjects find the true direction
    # again, so the chance distribution is wide; the true labels still beat every shuffle
    assert 0.35 < scores["chance_accuracy"][0] < 0.65 and scores["chance_accuracy_95"][0] < scores["accuracy"][0]
    assert scores["p_value"][0] < 0.05
    shuffled = found.info["baselines"]["shuffled"][0]
    assert shuffled["chance_accuracy"] == scores["chance_accuracy"][0]
    assert 0.2 <= shuffled["chance_subject_accuracy"] <= 0.8
    # the synthetic cohort has no volumes: the pixel baseline says why it was skipped
    assert "no slice geometry" in found.info["baselines"]["pixel"]["skipped"]
    assert found.settings["permutations"] == 50 and found.settings["baselines"] is True

    noise, _ = known_codes(shift=0.0, shuffle=True)  # labels unrelated to the codes
    found = discover(model, "supervised", data=noise, slices="all", permutations=50)
    assert found.scores["accuracy"][0] <= found.scores["chance_accuracy_95"][0]
    assert found.scores["p_value"][0] > 0.05


def test_the_chance_level_is_reproducible_and_can_be_switched_off(model) -> None:
    codes, _ = known_codes(shift=0.5)
    first = discover(model, "supervised", data=codes, slices="all", permutations=20, seed=3)
    again = discover(model, "supervised", data=codes, slices="all", permutations=20, seed=3)
    assert first.scores == again.scores
    off = discover(model, "supervised", data=codes, slices="all", baselines=False, seed=3)
    assert "chance_accuracy" not in off.scores and "baselines" not in off.info
    assert off.scores["accuracy"] == first.scores["accuracy"]  # the baselines do not change the direction


def test_shuffled_baseline_counts_the_shuffles_that_reach_the_observed_accuracy() -> None:
    rng = np.random.default_rng(1)
    subject = np.repeat(np.arange(12), 5)
    labels = (subject % 2).astype(int)
    codes = rng.normal(size=(60, 3))
    train = subject < 8

    def fit(x: np.ndarray, y: np.ndarray, values: np.ndarray | None):
        return [np.array([1.0, 0.0, 0.0])], [0.0]  # ignores the labels: every shuffle scores the same

    fixed = codes[~train] @ np.array([1.0, 0.0, 0.0])
    observed = float(np.mean((fixed > 0).astype(int) == labels[~train]))
    (result,) = shuffled_baseline(codes, labels, subject, train, fit, [observed], permutations=9)
    assert result["chance_accuracy"] == pytest.approx(observed)
    assert result["p_value"] == pytest.approx(1.0)  # (1 + 9) / (1 + 9)


def test_pixel_baseline_separates_separable_images_and_picks_c_by_subject_cv() -> None:
    rng = np.random.default_rng(0)
    subject = np.repeat(np.arange(12), 6)
    labels = (subject % 2).astype(int)
    features = rng.normal(size=(72, 50))
    features[:, 0] += 4.0 * labels
    train = subject < 8
    result = pixel_baseline(features, labels, subject, train)
    assert result["accuracy"] > 0.85 and result["subject_accuracy"] == 1.0
    assert result["C"] in PIXEL_C_GRID and result["cv_accuracy"] > 0.7 and result["pixels"] == 50


def test_pixel_regression_follows_a_pixel_that_tracks_the_target() -> None:
    rng = np.random.default_rng(0)
    subject = np.repeat(np.arange(16), 6)
    labels = (subject % 2).astype(int)
    per_subject = np.where(np.arange(16) % 2 == 1, rng.uniform(1.4, 2.0, 16), rng.normal(1.0, 0.05, 16))
    values = per_subject[subject]
    features = rng.normal(size=(96, 40))
    features[:, 3] += 8.0 * values
    train = subject < 12
    result = pixel_regression_baseline(features, values, labels, subject, train)
    assert result["accuracy"] > 0.9 and result["subject_accuracy"] == 1.0 and result["readout_r2"] > 0.8
    assert result["alpha"] in PIXEL_RIDGE_ALPHAS and result["cv_mse"] is not None  # chosen by subject folds
    falling = pixel_regression_baseline(features, -values, labels, subject, train)  # a target that falls
    assert falling["accuracy"] == result["accuracy"]
    noise = pixel_regression_baseline(rng.normal(size=(96, 40)), values, labels, subject, train)
    assert noise["readout_r2"] < 0.5


@pytest.mark.slow
def test_pixel_features_are_the_slices_the_codes_come_from(model, tiny_cohort: Path) -> None:
    codes = run_operation(iter_cohort_codes(model, tiny_cohort, "z"))
    mask = codes.subject >= 6
    features, reason = pixel_features(codes, mask, size=16)
    assert reason == "" and features is not None and features.shape == (int(mask.sum()), 16 * 16)
    images, _ = slice_volume(open_volume(codes.cohort.subjects[6].path), model.slice_spec or SliceSpec(size=32))
    pooled = torch.nn.functional.avg_pool2d(images, 2).flatten(1).numpy()  # 32 px to 16: area averaging
    np.testing.assert_allclose(features[:len(images)], pooled, atol=1e-6)
    found = discover(model, "supervised", data=codes, slices="all", permutations=10)
    pixel = found.info["baselines"]["pixel"]
    assert pixel["skipped"] is None and pixel["pixels"] == 32 * 32 and 0.0 <= pixel["accuracy"] <= 1.0
    assert "pixel_regression" not in found.info["baselines"]  # no target: no regression to compare with
    fitted = discover(model, "supervised", data=codes, slices="all", permutations=5, classifier="ridge",
                      target="ventricle_enlargement")
    regression = fitted.info["baselines"]["pixel_regression"]
    assert regression["skipped"] is None and 0.0 <= regression["accuracy"] <= 1.0 and regression["alpha"] > 0


@pytest.mark.parametrize("settings", [{"classifier": "lda"}, {"aggregate": True},
                                      {"classifier": "lda", "aggregate": True}])
def test_lda_and_subject_means_find_the_known_direction(model, settings) -> None:
    codes, truth = known_codes()
    found = discover(model, "supervised", data=codes, slices="all", baselines=False, **settings)
    assert float(found.vectors[0].double() @ torch.from_numpy(truth)) > 0.9
    assert found.scores["accuracy"][0] > 0.85 and found.info["aggregate"] == settings.get("aggregate", False)


def test_shuffled_baseline_moves_each_subjects_target_value_with_its_label() -> None:
    subject = np.repeat(np.arange(12), 4)
    labels = (subject % 2).astype(int)
    values = (10.0 * subject + labels).astype(float)  # a value names its subject and its label
    codes = np.random.default_rng(0).normal(size=(48, 2))
    train = subject < 8
    pairs = {(int(labels[i]), float(values[i])) for i in np.flatnonzero(train)}
    seen: list[np.ndarray] = []

    def fit(x: np.ndarray, y: np.ndarray, v: np.ndarray | None):
        assert v is not None
        assert {(int(a), float(b)) for a, b in zip(y, v)} == pairs  # the same (label, value) pairs, moved together
        slice_subject = subject[train]
        assert all(len(set(v[slice_subject == s])) == 1 for s in range(8))  # whole subjects move
        seen.append(v.copy())
        return [np.array([1.0, 0.0])], [0.0]

    shuffled_baseline(codes, labels, subject, train, fit, [0.5], permutations=6, seed=2, values=values)
    assert len(seen) == 6 and any(not np.array_equal(v, values[train]) for v in seen)
