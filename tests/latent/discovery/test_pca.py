"""GANSpace PCA: exactness against an SVD of the same samples, w+ tiling, real codes, bounded memory."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from napari_latent.errors import MismatchError, UserInputError
from napari_latent.latent.cohort_codes import iter_cohort_codes
from napari_latent.latent.discovery import discover, pca
from napari_latent.models.base import build_model, model_fingerprint
from napari_latent.progress import run_operation

SMALL = {"image_size": 32, "base_channels": 8, "max_channels": 32}


def tiny_stylegan():
    torch.manual_seed(0)
    model = build_model("stylegan", latent_dim=16, w_dim=16, mapping_layers=2, **SMALL)
    model.fingerprint = model_fingerprint(model)
    return model


def same_up_to_sign(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|cos| between matching rows."""
    return np.abs(np.sum(a * b, axis=1)) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_components_match_an_svd_and_sklearn_of_the_same_samples() -> None:
    model = tiny_stylegan()
    found = discover(model, "pca", count=6, samples=5000, batch_size=700, seed=3)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():  # the same draws, in the same chunks, mapped independently
        z = torch.cat([torch.randn(min(700, 5000 - s), 16, generator=generator) for s in range(0, 5000, 700)])
        w = model.generator.mapping(z).double().numpy()
    centred = w - w.mean(0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    variance = singular ** 2 / (len(w) - 1)
    vectors = found.vectors.double().numpy()
    assert found.space == "w" and found.model_fingerprint == model.fingerprint
    np.testing.assert_allclose(vectors @ vectors.T, np.eye(6), atol=1e-5)
    assert np.all(np.diff(found.scores["explained_variance"]) <= 0)
    assert np.all(same_up_to_sign(vectors, vt[:6]) > 0.9999)
    np.testing.assert_allclose(found.scores["explained_variance"], variance[:6], rtol=1e-6)
    np.testing.assert_allclose(found.scores["explained_variance_ratio"], variance[:6] / variance.sum(), rtol=1e-6)
    np.testing.assert_allclose(found.code_std, np.sqrt(variance[:6]), rtol=1e-6)
    reference = PCA(n_components=6, svd_solver="full").fit(w)
    assert np.all(same_up_to_sign(vectors, reference.components_) > 0.9999)
    np.testing.assert_allclose(found.scores["explained_variance_ratio"], reference.explained_variance_ratio_,
                               rtol=1e-6)


def test_recovers_the_axes_of_a_latent_distribution_we_control() -> None:
    model = build_model("vae", latent_dim=6, **SMALL)
    sigmas = torch.tensor([3.0, 2.0, 1.5, 1.0, 0.5, 0.25])
    rotation = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(1))).Q

    def sample_latent(n, generator=None, space=None):
        return (torch.randn(n, 6, generator=generator) * sigmas) @ rotation.T

    model.sample_latent = sample_latent
    found = discover(model, "pca", count=4, samples=20000)
    assert np.all(same_up_to_sign(found.vectors.numpy(), rotation.T[:4].numpy()) > 0.99)
    np.testing.assert_allclose(found.code_std, sigmas[:4].numpy(), rtol=0.03)


def test_w_plus_components_are_the_w_components_tiled() -> None:
    model = tiny_stylegan()
    in_w = discover(model, "pca", space="w", count=4, samples=3000)
    in_w_plus = discover(model, "pca", space="w+", count=4, samples=3000)
    layers = model.num_ws
    rows = in_w_plus.vectors.view(4, layers, 16)
    torch.testing.assert_close(rows, in_w.vectors[:, None].expand(-1, layers, -1) / math.sqrt(layers))
    np.testing.assert_allclose(in_w_plus.scores["explained_variance"],
                               np.array(in_w.scores["explained_variance"]) * layers, rtol=1e-6)
    assert in_w_plus.scores["explained_variance_ratio"] == in_w.scores["explained_variance_ratio"]
    # the same as PCA of the tiled w+ samples themselves
    tiled = torch.cat(list(pca.sample_codes(model, "w+", 3000))).double().numpy()
    _, _, vt = np.linalg.svd(tiled - tiled.mean(0), full_matrices=False)
    assert np.all(same_up_to_sign(in_w_plus.vectors.numpy(), vt[:4]) > 0.9999)
    with pytest.raises(UserInputError, match="span only"):
        discover(model, "pca", space="w+", count=17)


def test_data_uses_the_codes_of_the_cohort(tiny_vae, tiny_cohort: Path) -> None:
    events = []
    found = run_operation(pca.iter_pca(tiny_vae, count=3, data=tiny_cohort), events.append)
    codes = run_operation(iter_cohort_codes(tiny_vae, tiny_cohort)).codes.double().numpy()
    assert found.info["source"] == "data" and found.info["samples"] == len(codes)
    assert found.info["inversion"] == "encoder" and found.settings["data"] == str(tiny_cohort)
    assert {e.stage for e in events} == {"discover"}
    _, _, vt = np.linalg.svd(codes - codes.mean(0), full_matrices=False)
    assert np.all(same_up_to_sign(found.vectors.numpy(), vt[:3]) > 0.999)


def test_100k_samples_stream_in_batches(monkeypatch) -> None:
    model = tiny_stylegan()
    sizes = []
    add = pca._Moments.add
    monkeypatch.setattr(pca._Moments, "add", lambda self, batch: (sizes.append(len(batch)), add(self, batch)))
    start = time.perf_counter()
    found = discover(model, "pca", count=5, samples=100_000)
    elapsed = time.perf_counter() - start
    print(f"pca on 100k samples of a 16-d w: {elapsed:.2f} s")
    assert sum(sizes) == 100_000 and max(sizes) <= 2048  # never more than one batch of codes in memory
    assert found.info["samples"] == 100_000


@pytest.mark.parametrize("method", ["pca", "sefa", "axes", "jacobian"])
def test_every_method_keeps_the_contract(method: str) -> None:
    model = build_model("vae", latent_dim=4, **SMALL)
    model.fingerprint = model_fingerprint(model)
    fast = {"pca": {"samples": 200}, "axes": {"samples": 64}, "jacobian": {"iterations": 3}, "sefa": {}}[method]
    found = discover(model, method, count=3, **fast)
    assert len(found) == 3 and found.method == method and found.model_fingerprint == model.fingerprint
    found.check_model(model)
    assert len(found.code_std) == 3 and all(len(v) == 3 for v in found.scores.values())
    with pytest.raises(UserInputError, match="only 4 dimensions"):
        discover(model, method, count=5, **fast)
    with pytest.raises(MismatchError, match="no latent space"):
        discover(model, method, space="w", count=2, **fast)
    with pytest.raises(UserInputError, match="no setting"):
        discover(model, method, count=2, bogus=1)
