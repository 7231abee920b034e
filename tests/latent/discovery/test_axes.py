"""Latent axes of a VAE: active units first, by KL; a unit switched off ranks last."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_latent.errors import UserInputError
from napari_latent.latent.discovery import discover
from napari_latent.models.base import build_model, model_fingerprint
from napari_latent.models.vae import kl_to_standard_normal


def test_active_units_come_first_and_kl_descends(tiny_vae) -> None:
    found = discover(tiny_vae, "axes", count=8, samples=512)
    print(found.table())
    active, kl = np.array(found.scores["active"]), np.array(found.scores["kl"])
    activity = np.array(found.scores["activity"])
    assert np.all(np.diff(active) <= 0)  # active (1) before inactive (0)
    assert np.all((activity > 0.01) == (active == 1))
    assert np.all(np.diff(kl) <= 0)
    assert sorted(found.info["dimension"]) == list(range(8))
    np.testing.assert_allclose(np.array(found.code_std) ** 2, activity, rtol=1e-6)
    dims = found.info["dimension"]
    torch.testing.assert_close(found.vectors, torch.eye(8)[dims])
    assert found.model_fingerprint == tiny_vae.fingerprint and found.names[0] == f"z{dims[0]}"


def test_statistics_are_those_of_re_encoded_prior_samples(tiny_vae) -> None:
    found = discover(tiny_vae, "axes", count=8, samples=300, batch_size=128, seed=5)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        z = torch.cat([torch.randn(n, 8, generator=generator) for n in (128, 128, 44)])
        mean, logvar = tiny_vae.posterior(tiny_vae.decode(z))
    dims = found.info["dimension"]
    np.testing.assert_allclose(found.scores["kl"], kl_to_standard_normal(mean, logvar).mean(0)[dims].numpy(),
                               rtol=1e-4)
    np.testing.assert_allclose(found.scores["activity"], mean.var(0)[dims].numpy(), rtol=1e-3)


def test_a_unit_switched_off_ranks_last(tiny_vae) -> None:
    model = copy.deepcopy(tiny_vae)
    with torch.no_grad():
        model.from_latent.weight[:, 2] = 0.0  # the decoder ignores z2 ...
        for row in (2, 8 + 2):  # ... and its posterior is the prior: mean 0, log variance 0
            model.to_moments.weight[row] = 0.0
            model.to_moments.bias[row] = 0.0
    model.fingerprint = model_fingerprint(model)
    found = discover(model, "axes", count=8, samples=256)
    assert found.info["dimension"][-1] == 2
    assert found.scores["active"][-1] == 0.0 and found.scores["kl"][-1] == pytest.approx(0.0, abs=1e-9)


def test_data_encodes_the_cohort_slices(tiny_vae, tiny_cohort: Path) -> None:
    found = discover(tiny_vae, "axes", count=4, data=tiny_cohort)
    assert found.info["source"] == "data" and found.info["images"] > 8
    assert found.settings["data"] == str(tiny_cohort)


def test_models_without_a_posterior_are_refused() -> None:
    model = build_model("dcgan", image_size=32, latent_dim=8, base_channels=8, max_channels=32)
    with pytest.raises(UserInputError, match="posterior"):
        discover(model, "axes", count=2)
