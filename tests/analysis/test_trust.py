"""Trust warnings: a bad model, a direction at chance or below the pixel baseline, a subject far from the data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_latent.analysis.trust import (
    MAX_INVERSION_RATIO,
    MIN_PSNR_DB,
    MIN_READOUT_R2,
    MIN_SSIM,
    baseline_summary,
    direction_warnings,
    format_warnings,
    inversion_warnings,
    reconstruction_warnings,
    trust_warnings,
)
from napari_latent.latent.directions import Directions
from napari_latent.latent.inversion import invert
from napari_latent.metrics import image_metrics
from napari_latent.models.base import build_model, model_fingerprint
from napari_latent.models.checkpoint import load_model
from napari_latent.volumes.io import Volume, open_volume
from napari_latent.volumes.phantoms import make_phantom_cohort
from napari_latent.volumes.slicing import SliceSpec, slice_volume

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def demo():
    return load_model("demo", device="cpu")


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Volume:
    """One phantom of the demo model's kind (64 cubed)."""
    folder = tmp_path_factory.mktemp("one_phantom")
    make_phantom_cohort(folder, n_subjects=2, size=64, seed=3)
    return open_volume(sorted(folder.glob("*.nii.gz"))[0])


def supervised(accuracy: float, chance: float, chance_95: float, p_value: float, pixel: float | None) -> Directions:
    info = {"baselines": {"pixel": {"accuracy": pixel, "subject_accuracy": pixel, "C": 0.01, "pixels": 1024,
                                    "skipped": None} if pixel is not None else {"skipped": "no volumes"}}}
    return Directions(torch.eye(2, 4), "z", "vae", "", "supervised", {}, ["healthy → disease (svm)", "mean"],
                      {"accuracy": [accuracy, accuracy], "subject_accuracy": [accuracy, accuracy],
                       "chance_accuracy": [chance, chance], "chance_accuracy_95": [chance_95, chance_95],
                       "p_value": [p_value, p_value]}, [1.0, 1.0], info)


def test_the_demo_model_and_one_of_its_phantoms_raise_no_warning(demo, phantom: Volume) -> None:
    codes = invert(demo, phantom)
    ratio = codes.errors.mean() / demo.training_info["final_metrics"]["val_mse"]
    assert ratio < 1.2  # measured 0.82-0.89 on phantoms of this kind
    assert trust_warnings(demo, codes=codes) == []
    assert demo.training_info["final_metrics"]["val_psnr"] > MIN_PSNR_DB


def test_a_subject_far_from_the_training_data_triggers_the_inversion_warning(demo, phantom: Volume) -> None:
    inverted = Volume(phantom.data.max() - phantom.data, phantom.affine, name="inverted contrast")
    (warning,) = inversion_warnings(demo, invert(demo, inverted))
    assert warning.kind == "inversion" and warning.threshold == MAX_INVERSION_RATIO
    assert warning.value > 10 * MAX_INVERSION_RATIO  # measured 64 times the validation MSE
    assert "times the validation MSE" in warning.message
    assert format_warnings([warning]) == [f"warning: {warning.message}"]


def test_an_untrained_model_triggers_the_reconstruction_warning(tiny_cohort: Path) -> None:
    torch.manual_seed(0)
    untrained = build_model("vae", image_size=32, latent_dim=8, base_channels=8, max_channels=32)
    untrained.fingerprint = model_fingerprint(untrained)
    (unknown,) = reconstruction_warnings(untrained)  # no training facts: unknown, said so
    assert unknown.kind == "reconstruction_unknown" and "napari-latent evaluate" in unknown.message
    images, _ = slice_volume(open_volume(sorted(tiny_cohort.glob("*.nii.gz"))[0]), SliceSpec(size=32))
    with torch.no_grad():  # what 'napari-latent evaluate' measures, on one volume's slices
        metrics = image_metrics(untrained.decode(untrained.encode(images)).float(), images)
    found = reconstruction_warnings(untrained, metrics)
    assert [w.kind for w in found] == ["reconstruction", "reconstruction"]
    assert found[0].value == pytest.approx(metrics["psnr"]) and found[0].value < MIN_PSNR_DB
    assert found[1].value == pytest.approx(metrics["ssim"]) and found[1].value < MIN_SSIM
    assert all(w.kind != "reconstruction" for w in trust_warnings(untrained, metrics={"psnr": 30.0, "ssim": 0.9}))


def test_direction_warnings_follow_the_baselines() -> None:
    good = supervised(0.85, 0.5, 0.7, 0.01, pixel=0.8)
    assert direction_warnings(good) == []
    assert "chance 0.500 (95th percentile 0.700, p = 0.010); pixel logistic regression 0.800" in \
        baseline_summary(good)
    at_chance = supervised(0.68, 0.5, 0.7, 0.2, pixel=0.6)
    assert [w.kind for w in direction_warnings(at_chance)] == ["chance"]
    below_pixels = supervised(0.85, 0.5, 0.7, 0.01, pixel=0.9)
    (warning,) = direction_warnings(below_pixels, index=1)
    assert warning.kind == "pixel_baseline" and warning.value == 0.85 and warning.threshold == 0.9
    no_pixels = supervised(0.6, 0.5, 0.7, 0.3, pixel=None)
    assert [w.kind for w in direction_warnings(no_pixels)] == ["chance"]
    assert "pixel baseline skipped: no volumes" in baseline_summary(no_pixels)
    sefa = Directions(torch.eye(2, 4), "z", "vae", "", "sefa", {}, ["a", "b"], {"eigenvalue": [2.0, 1.0]},
                      [1.0, 1.0], {})
    assert direction_warnings(sefa) == [] and baseline_summary(sefa) is None


def test_a_direction_that_misses_its_target_gets_the_readout_warning() -> None:
    def with_target(r2: float | None, target: str | None = "ventricle_enlargement") -> Directions:
        found = supervised(0.85, 0.5, 0.7, 0.01, pixel=0.8)
        info = {**found.info, "target": target, "factor_readout": {"ventricle_enlargement": {"r2": [r2, 0.9]}}}
        return Directions(found.vectors, "z", "vae", "", "supervised", {}, found.names, found.scores,
                          found.code_std, info)

    (warning,) = direction_warnings(with_target(0.2))
    assert warning.kind == "readout" and warning.value == 0.2 and warning.threshold == MIN_READOUT_R2
    assert "does not read out its target 'ventricle_enlargement' on held-out subjects: R² 0.20, below 0.5" in \
        warning.message
    assert direction_warnings(with_target(0.7)) == []
    assert direction_warnings(with_target(0.2), index=1) == []  # the mean difference was not fitted to it
    assert direction_warnings(with_target(0.2, target=None)) == []  # a classifier's normal: no target to miss
    (unknown,) = direction_warnings(with_target(None))
    assert unknown.kind == "readout" and "could not be checked" in unknown.message


def test_a_target_direction_is_compared_with_the_pixel_regression_onto_its_target() -> None:
    found = supervised(0.85, 0.5, 0.7, 0.01, pixel=0.8)

    def against(accuracy: float, readout: float) -> Directions:
        baselines = {**found.info["baselines"], "pixel_regression": {
            "accuracy": accuracy, "subject_accuracy": accuracy, "readout_r2": readout, "alpha": 10.0,
            "skipped": None}}
        info = {"baselines": baselines, "target": "ventricle_enlargement",
                "factor_readout": {"ventricle_enlargement": {"r2": [0.7, 0.1]}}}
        return Directions(found.vectors, "z", "vae", "", "supervised", {}, found.names, found.scores,
                          found.code_std, info)

    assert direction_warnings(against(0.8, 0.5)) == []
    warnings = direction_warnings(against(0.9, 0.75))
    assert [w.kind for w in warnings] == ["pixel_baseline", "pixel_baseline"]
    assert "does not beat the pixel regression onto 'ventricle_enlargement': held-out accuracy 0.850 against " \
        "0.900" in warnings[0].message
    assert "no better than the pixel regression onto it: held-out R² 0.70 against 0.75" in warnings[1].message
    assert "pixel ridge regression onto ventricle_enlargement 0.800 (subjects 0.800, readout R² 0.50)" in \
        baseline_summary(against(0.8, 0.5))


def test_random_labels_trigger_the_chance_warning_end_to_end() -> None:
    from napari_latent.latent.cohort_codes import CohortCodes
    from napari_latent.latent.discovery import discover
    from napari_latent.volumes.cohort import Cohort, Subject

    torch.manual_seed(0)
    model = build_model("vae", image_size=32, latent_dim=6, base_channels=8, max_channels=32)
    rng = np.random.default_rng(2)
    groups = list(rng.permutation(["healthy", "disease"] * 12))
    cohort = Cohort(Path("."), [Subject(Path(f"s{i}.nii.gz"), g, {}) for i, g in enumerate(groups)])
    codes = CohortCodes(torch.from_numpy(rng.normal(size=(240, 6))).float(), np.repeat(np.arange(24), 10),
                        np.tile(np.linspace(0, 1, 10), 24), cohort, "z")
    found = discover(model, "supervised", data=codes, slices="all", permutations=50)
    kinds = [w.kind for w in trust_warnings(directions=found)]
    assert kinds == ["chance"], (found.scores, kinds)
