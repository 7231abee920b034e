"""The factor readout of a supervised direction: subject means in the band, a line fitted on training subjects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_latent.analysis.trust import baseline_summary, readout_summary
from napari_latent.latent.cohort_codes import CohortCodes
from napari_latent.latent.discovery import discover
from napari_latent.latent.discovery.supervised_readout import (
    best_readouts,
    choose_readout_band,
    cross_validated_readout,
    factor_readouts,
    held_out_r2,
    subject_positions,
)
from napari_latent.models.base import build_model, model_fingerprint
from napari_latent.volumes.cohort import Cohort, Subject

DIM = 6


def graded_codes(seed: int = 0) -> tuple[CohortCodes, np.ndarray]:
    """32 subjects x 10 slices: a severity factor moves the codes along a known direction, a nuisance does not."""
    rng = np.random.default_rng(seed)
    truth = np.array([1.0, 2.0, 0.0, 0.0, -1.0, 0.0]) / np.sqrt(6.0)
    groups = ["healthy", "disease"] * 16
    severity = np.array([rng.normal(1.0, 0.05) if g == "healthy" else rng.uniform(1.4, 2.0) for g in groups])
    nuisance = rng.uniform(0.9, 1.1, len(groups))
    subject = np.repeat(np.arange(32), 10)
    codes = rng.normal(0.0, 0.7, (320, DIM)) + 3.0 * (severity[subject] - 1.0)[:, None] * truth
    subjects = [Subject(Path(f"sub-{i:03d}.nii.gz"), g, {"severity": float(severity[i]),
                                                         "head_size": float(nuisance[i]), "constant": 1.0})
                for i, g in enumerate(groups)]
    cohort = Cohort(Path("."), subjects)
    return CohortCodes(torch.from_numpy(codes).float(), subject, np.tile(np.linspace(0, 1, 10), 32), cohort,
                       "z"), truth


def test_subject_positions_are_band_means() -> None:
    codes = np.array([[1.0, 0.0], [3.0, 0.0], [10.0, 0.0], [5.0, 0.0]])
    subject = np.array([0, 0, 0, 1])
    in_band = np.array([True, True, False, True])
    positions = subject_positions(codes, subject, in_band, np.array([1.0, 0.0]), 3)
    assert positions[0] == 2.0 and positions[1] == 5.0 and np.isnan(positions[2])


def test_held_out_r2_of_a_line_and_of_noise() -> None:
    rng = np.random.default_rng(1)
    positions = rng.normal(size=40)
    train, held_out = np.arange(40) < 30, np.arange(40) >= 30
    exact = held_out_r2(positions, 2.0 * positions + 1.0, train, held_out)
    assert exact["r2"] == pytest.approx(1.0) and exact["pearson"] == pytest.approx(1.0)
    noise = held_out_r2(positions, rng.normal(size=40), train, held_out)
    assert noise["r2"] < 0.2
    too_few = held_out_r2(positions, positions, train, np.arange(40) >= 38)
    assert np.isnan(too_few["r2"])


def test_the_supervised_direction_reads_out_the_severity_not_the_nuisance() -> None:
    torch.manual_seed(0)
    model = build_model("vae", image_size=32, latent_dim=DIM, base_channels=8, max_channels=32)
    model.fingerprint = model_fingerprint(model)
    codes, _ = graded_codes()
    found = discover(model, "supervised", data=codes, slices="all", permutations=5)
    readout = found.info["factor_readout"]
    assert set(readout) == {"severity", "head_size"}  # the constant column is skipped
    assert readout["severity"]["r2"][0] > 0.5 and readout["severity"]["pearson"][0] > 0.8
    assert readout["head_size"]["r2"][0] < 0.3
    assert len(readout["severity"]["r2"]) == len(found) == 2
    assert best_readouts(readout, 0)[0][0] == "severity"
    assert readout_summary(found, 0).startswith("factor readout along it (held-out subjects, R²): severity 0.")
    assert "factor readout along it" in baseline_summary(found, 0)


def test_factor_readouts_fit_on_training_subjects_and_score_on_held_out_ones() -> None:
    codes, truth = graded_codes(seed=2)
    array = codes.codes.double().numpy()
    everything = np.ones(len(array), bool)
    factor = np.asarray(codes.cohort.column("severity"))
    train, val = np.arange(0, 24), np.arange(24, 32)
    found = factor_readouts(array, codes.subject, everything, [truth], codes.cohort, train, val)["severity"]["r2"][0]
    positions = (array @ truth).reshape(32, 10).mean(1)
    slope, intercept = np.polyfit(positions[train], factor[train], 1)
    residual = ((factor[val] - slope * positions[val] - intercept) ** 2).sum()
    assert found == pytest.approx(1.0 - residual / ((factor[val] - factor[val].mean()) ** 2).sum())


def banded_codes(seed: int = 0) -> tuple[CohortCodes, np.ndarray]:
    """24 subjects x 40 slices: the severity shows only in the slices at positions 0.6-0.7."""
    rng = np.random.default_rng(seed)
    groups = ["healthy", "disease"] * 12
    severity = np.array([rng.normal(1.0, 0.05) if g == "healthy" else rng.uniform(1.2, 2.5) for g in groups])
    subject = np.repeat(np.arange(24), 40)
    position = np.tile(np.linspace(0, 1, 40), 24)
    shown = (position >= 0.6) & (position <= 0.7)
    codes = rng.normal(0.0, 0.5, (960, DIM))
    codes[shown, 1] += 2.0 * (severity[subject[shown]] - 1.0)
    subjects = [Subject(Path(f"sub-{i:03d}.nii.gz"), g, {"severity": float(severity[i])})
                for i, g in enumerate(groups)]
    return CohortCodes(torch.from_numpy(codes).float(), subject, position, Cohort(Path("."), subjects), "z"), severity


@pytest.mark.parametrize("aggregate", [False, True])
def test_the_readout_band_is_where_the_factor_shows(aggregate: bool) -> None:
    codes, severity = banded_codes()
    array, subject, position = codes.codes.double().numpy(), codes.subject, codes.position
    labels = (np.arange(24) % 2)[subject]
    low, high, r2 = choose_readout_band(array, severity[subject], labels, subject, position, aggregate)
    assert low >= 0.5 and high <= 0.8 and r2 > 0.7
    folds = [np.isin(subject, np.arange(k, 24, 4)) for k in range(4)]
    shown = (position >= 0.6) & (position <= 0.7)
    elsewhere = position < 0.4
    inside = cross_validated_readout(array[shown], severity[subject][shown], subject[shown],
                                     [f[shown] for f in folds], aggregate)
    outside = cross_validated_readout(array[elsewhere], severity[subject][elsewhere], subject[elsewhere],
                                      [f[elsewhere] for f in folds], aggregate)
    assert inside > 0.7 and outside < 0.2


def test_a_target_picks_its_band_by_the_readout() -> None:
    torch.manual_seed(0)
    model = build_model("vae", image_size=32, latent_dim=DIM, base_channels=8, max_channels=32)
    model.fingerprint = model_fingerprint(model)
    codes, _ = banded_codes(seed=1)
    found = discover(model, "supervised", data=codes, classifier="ridge", target="severity", aggregate=True,
                     permutations=5, count=1)
    low, high = found.info["slices"]
    assert low >= 0.5 and high <= 0.8
    assert found.info["band_cv_r2"] > 0.7 and found.info["band_cv_accuracy"] is None
    assert found.info["factor_readout"]["severity"]["r2"][0] > 0.7
