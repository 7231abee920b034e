"""Jacobian directions: subspace iteration against the SVD of the full Jacobian (tests only)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_latent.errors import MismatchError
from napari_latent.latent.discovery import discover, jacobian
from napari_latent.models.base import build_model, model_fingerprint
from napari_latent.progress import StopFlag, run_operation

SMALL = {"image_size": 32, "base_channels": 8, "max_channels": 32}


def tiny(name: str, **settings):
    torch.manual_seed(0)
    model = build_model(name, **SMALL, **settings)
    model.fingerprint = model_fingerprint(model)
    return model


def full_svd(model, code: torch.Tensor, space: str) -> tuple[np.ndarray, np.ndarray]:
    """Singular values and right-singular vectors (rows) of the full Jacobian.

    Row ``p`` of the Jacobian is the gradient of pixel ``p``: one reverse pass over as many
    copies of the code as there are pixels, with the identity as the output gradient.
    """
    pixels = model.image_size ** 2
    copies = code.detach().reshape(1, -1).repeat(pixels, 1).requires_grad_(True)
    images = model.decode(copies, space).flatten(1)
    (matrix,) = torch.autograd.grad(images, copies, torch.eye(pixels))
    _, values, vt = torch.linalg.svd(matrix.double(), full_matrices=False)
    return values.numpy(), vt.numpy()


@pytest.mark.parametrize(("name", "space", "settings"), [
    ("vae", "z", {"latent_dim": 8}),
    ("stylegan", "w", {"latent_dim": 16, "w_dim": 16, "mapping_layers": 2}),
    ("dcgan", "z", {"latent_dim": 12}),
])
def test_matches_the_svd_of_the_full_jacobian(name: str, space: str, settings: dict) -> None:
    model = tiny(name, **settings)
    code = model.sample_latent(1, torch.Generator().manual_seed(7), space)[0]
    found = discover(model, "jacobian", space=space, count=3, code=code)
    values, vectors = full_svd(model, code, space)
    cos = np.abs(np.sum(found.vectors.double().numpy() * vectors[:3], axis=1))
    assert np.all(cos > 0.99), cos
    np.testing.assert_allclose(found.scores["singular_value"], values[:3], rtol=0.01)
    assert max(found.info["residual"]) < 1e-3
    assert found.settings["code"] == pytest.approx(code.tolist())


def test_defaults_to_the_mean_code() -> None:
    model = tiny("stylegan", latent_dim=16, w_dim=16, mapping_layers=2)
    found = discover(model, "jacobian", count=2, iterations=40)
    _, vectors = full_svd(model, model.w_avg.detach().clone(), "w")
    assert found.space == "w" and found.settings["code"] is None
    assert np.all(np.abs(np.sum(found.vectors.double().numpy() * vectors[:2], axis=1)) > 0.99)
    # in z the default is a prior sample (the normalisation of z is singular at 0)
    assert discover(model, "jacobian", space="z", count=2, iterations=5).scores["singular_value"][0] < 1e3


def test_never_forms_the_jacobian_and_stops_when_asked(monkeypatch) -> None:
    model = tiny("vae", latent_dim=8)
    monkeypatch.setattr(torch.autograd.functional, "jacobian", None)
    monkeypatch.setattr(torch.func, "jacrev", None)
    monkeypatch.setattr(torch.func, "jacfwd", None)
    stop = StopFlag()
    events = []

    def record(event):
        events.append(event)
        stop.request()

    found = run_operation(jacobian.iter_jacobian(model, count=2, iterations=50, stop=stop), record)
    assert len(events) == 1 and events[0].stage == "discover" and len(found) == 2


def test_a_code_of_the_wrong_size_is_refused() -> None:
    model = tiny("vae", latent_dim=8)
    with pytest.raises(MismatchError, match="does not fit"):
        discover(model, "jacobian", count=2, code=torch.zeros(9))
