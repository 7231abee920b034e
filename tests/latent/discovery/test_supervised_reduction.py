"""Supervised discovery on long codes: reduced to principal components of the training subjects' codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_latent.latent.cohort_codes import CohortCodes
from napari_latent.latent.discovery import discover
from napari_latent.models.base import build_model, model_fingerprint
from napari_latent.volumes.cohort import Cohort, Subject


def test_long_codes_are_reduced_on_training_subjects_and_directions_map_back(monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_latent.latent.discovery.supervised_fit import MAX_CODE_DIMENSIONS, CodeReduction

    rng = np.random.default_rng(3)
    dim = 400
    truth = rng.normal(size=dim)
    truth /= np.linalg.norm(truth)
    groups = ["healthy", "disease"] * 16
    subject = np.repeat(np.arange(32), 12)  # 24 training subjects: 288 codes, more than the 256 components
    labels = np.array([g == "disease" for g in groups], dtype=float)[subject]
    codes = rng.normal(0.0, 1.0, (384, dim)) + 4.0 * labels[:, None] * truth
    cohort = Cohort(Path("."), [Subject(Path(f"sub-{i:03d}.nii.gz"), g, {}) for i, g in enumerate(groups)])
    data = CohortCodes(torch.from_numpy(codes).float(), subject, np.tile(np.linspace(0, 1, 12), 32), cohort, "z")
    torch.manual_seed(0)
    model = build_model("vae", image_size=32, latent_dim=dim, base_channels=8, max_channels=32)
    model.fingerprint = model_fingerprint(model)
    condition = discover(model, "supervised", data=data, slices="all", permutations=5, count=1)
    reduced = condition.info["reduced_to"]
    assert reduced["dimensions"] == MAX_CODE_DIMENSIONS and 0.0 < reduced["explained_variance"] <= 1.0
    vector = condition.vectors[0].double().numpy()
    assert vector.shape == (dim,) and np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    # the same discovery without the reduction finds about the same direction, as accurate
    import napari_latent.latent.discovery.supervised as supervised

    monkeypatch.setattr(supervised, "MAX_CODE_DIMENSIONS", 10 * dim)
    unreduced = discover(model, "supervised", data=data, slices="all", permutations=5, count=1)
    assert unreduced.info["reduced_to"] is None
    assert abs(vector @ unreduced.vectors[0].double().numpy()) > 0.9
    assert abs(vector @ truth) >= abs(unreduced.vectors[0].double().numpy() @ truth) - 0.05
    assert condition.scores["accuracy"][0] >= unreduced.scores["accuracy"][0] - 0.05
    monkeypatch.undo()
    # conditioning on a code-space direction stays exact through the reduction
    other = rng.normal(size=dim)
    other /= np.linalg.norm(other)
    conditioned = discover(model, "supervised", data=data, slices="all", permutations=5, count=1,
                           condition=type(condition)(torch.from_numpy(other[None]).float(), "z", model.name,
                                                     model.fingerprint, "test", {}, ["other"]))
    assert abs(conditioned.vectors[0].double().numpy() @ other) < 1e-5
    # projections agree between the reduced space and code space
    reduction = CodeReduction.fit(codes[:200], 16)
    v_r = rng.normal(size=16)
    full, offset = reduction.expand(v_r, 0.3)
    np.testing.assert_allclose(reduction.reduce(codes) @ v_r + 0.3, codes @ full + offset, atol=1e-8)


def test_a_stylegan_direction_in_w_plus_is_found_through_the_reduction(tiny_cohort: Path) -> None:
    torch.manual_seed(0)
    gan = build_model("stylegan", image_size=32, base_channels=16, max_channels=32, latent_dim=16, w_dim=64,
                      mapping_layers=2)
    gan.fingerprint = model_fingerprint(gan)
    length = gan.latent_dim("w+")
    assert length > 256  # long codes: the reduction's path
    found = discover(gan, "supervised", space="w+", data=tiny_cohort, steps=3, slices="all", permutations=3)
    assert found.space == "w+" and found.vectors.shape == (2, length)
    assert found.info["reduced_to"]["dimensions"] <= 256
    assert torch.allclose(found.vectors.norm(dim=1), torch.ones(2), atol=1e-4)
    start = gan.mean_latent("w+")
    moved = gan.decode(start + 2.0 * found.code_std[0] * found.vectors[:1], "w+")
    assert moved.shape == (1, 1, 32, 32) and not torch.allclose(moved, gan.decode(start, "w+"))
