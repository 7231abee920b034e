"""evaluate_directions on a known generator and codes whose factors are known exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from napari_latent.analysis.direction_evaluation import IMAGE_MEASURES, evaluate_directions, image_measures
from napari_latent.errors import DataError, UserInputError
from napari_latent.latent.cohort_codes import CohortCodes
from napari_latent.latent.directions import Directions
from napari_latent.models.base import GenerativeModel, ModelConfig, model_fingerprint
from napari_latent.volumes.cohort import Cohort, Subject

DIM, SUBJECTS, SLICES = 6, 24, 8


class Linear(GenerativeModel):
    """A known decoder without an encoder: ``tanh`` of a fixed random linear map to 32 x 32 images."""

    name = "linear-test"

    def __init__(self) -> None:
        super().__init__(ModelConfig(image_size=32, latent_dim=DIM, base_channels=1, max_channels=1))
        self.weight = nn.Parameter(torch.randn(DIM, 32, 32, generator=torch.Generator().manual_seed(0)))
        self.fingerprint = model_fingerprint(self)

    def decode(self, codes: torch.Tensor, space: str | None = None) -> torch.Tensor:
        codes = self.check_codes(codes, space)
        return torch.tanh(0.2 * torch.einsum("nd,dhw->nhw", codes, self.weight))[:, None]


@pytest.fixture(scope="module")
def model() -> Linear:
    return Linear()


@pytest.fixture(scope="module")
def cohort_codes() -> CohortCodes:
    """Factor ``a`` is code dimension 0 and ``b`` dimension 1 of every slice; ``constant`` never varies."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.0, 2.0, SUBJECTS), rng.normal(0.0, 0.5, SUBJECTS)
    subjects = [Subject(Path(f"sub-{i:03d}.nii.gz"), "healthy", {"a": a[i], "b": b[i], "constant": 1.0})
                for i in range(SUBJECTS)]
    subject = np.repeat(np.arange(SUBJECTS), SLICES)
    codes = rng.normal(0.0, 1.0, (len(subject), DIM))
    codes[:, 0], codes[:, 1] = a[subject], b[subject]
    position = np.tile(np.linspace(0.0, 1.0, SLICES), SUBJECTS)
    return CohortCodes(torch.from_numpy(codes).float(), subject, position, Cohort(Path("."), subjects), "z")


def directions_for(model: Linear, vectors: list[list[float]]) -> Directions:
    return Directions(torch.tensor(vectors), "z", model.name, model.fingerprint, "test", code_std=[1.0] * len(vectors))


def axis(i: int) -> list[float]:
    return [1.0 if j == i else 0.0 for j in range(DIM)]


def test_effect_matrix_best_direction_and_gap(model: Linear, cohort_codes: CohortCodes) -> None:
    diagonal = [x / np.sqrt(2) for x in np.add(axis(0), axis(1))]
    found = directions_for(model, [axis(0), axis(1), diagonal, axis(4)])
    evaluation = evaluate_directions(model, found, cohort_codes, base_count=64)
    assert evaluation.factors == ["a", "b", *IMAGE_MEASURES]  # "constant" does not vary: left out
    assert evaluation.effects.shape == (4, 2 + len(IMAGE_MEASURES))
    assert evaluation.regressor_r2["a"] > 0.95 and evaluation.regressor_r2["b"] > 0.95
    effects = evaluation.effects[:, :2]
    # one unit of code along e0 moves a by one unit, i.e. 1 / sd(a) subject standard deviations
    sd = [np.std(cohort_codes.cohort.column(f)) for f in ("a", "b")]
    np.testing.assert_allclose(effects[0], [1 / sd[0], 0.0], atol=0.1 / sd[0])
    np.testing.assert_allclose(effects[1], [0.0, 1 / sd[1]], atol=0.1 / sd[1])
    np.testing.assert_allclose(effects[2], [np.sqrt(0.5) / sd[0], np.sqrt(0.5) / sd[1]], rtol=0.1)
    np.testing.assert_allclose(effects[3], [0.0, 0.0], atol=0.05 / sd[1])
    assert evaluation.best["a"] == 0 and evaluation.best["b"] == 1
    assert evaluation.gap["a"] == pytest.approx(1 - np.sqrt(0.5), abs=0.08)
    assert evaluation.gap["b"] == pytest.approx(1 - np.sqrt(0.5), abs=0.08)
    assert evaluation.representation is None  # no encoder
    report = evaluation.to_json()
    assert report["best_direction"] == evaluation.best and np.array(report["effects"]).shape == (4, 4)
    # without the diagonal each factor has one clear direction: gaps near 1
    clean = evaluate_directions(model, directions_for(model, [axis(0), axis(1), axis(4)]), cohort_codes,
                                base_count=64)
    assert clean.gap["a"] > 0.85 and clean.gap["b"] > 0.85 and clean.mean_gap > 0.85


def test_signs_follow_the_direction(model: Linear, cohort_codes: CohortCodes) -> None:
    flipped = evaluate_directions(model, directions_for(model, [[-x for x in axis(0)], axis(1)]), cohort_codes,
                                  base_count=32)
    assert flipped.effects[0, 0] < -0.3 and flipped.effects[1, 1] > 1.0


def test_image_measures_see_a_rotation() -> None:
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    images = []
    for degrees in (0.0, 30.0):
        t = np.radians(degrees)
        u, v = xx * np.cos(t) + yy * np.sin(t), -xx * np.sin(t) + yy * np.cos(t)
        images.append(torch.where((u / 0.8) ** 2 + (v / 0.4) ** 2 < 1, 1.0, -1.0))
    measured = image_measures(torch.stack(images)[:, None])
    assert abs(measured[1, 0] - measured[0, 0]) == pytest.approx(30.0, abs=3.0)
    assert measured[0, 1] > 0.5  # an elongated ellipse: a well-defined axis


def test_errors(model: Linear, cohort_codes: CohortCodes) -> None:
    other = Directions(torch.tensor([axis(0)]), "z", "vae", "", "test")
    with pytest.raises(UserInputError, match="belong to a 'vae' model"):
        evaluate_directions(model, other, cohort_codes)
    flat = CohortCodes(cohort_codes.codes, cohort_codes.subject, cohort_codes.position,
                       Cohort(Path("."), [Subject(s.path, s.group, {"constant": 1.0})
                                          for s in cohort_codes.cohort.subjects]), "z")
    with pytest.raises(DataError, match="no numeric factor columns that vary"):
        evaluate_directions(model, directions_for(model, [axis(0)]), flat)
