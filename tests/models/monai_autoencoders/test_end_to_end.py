"""The whole analysis on an imported, MONAI-trained AutoencoderKL: invert, discover, traverse, eigen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import napari_latent as nl
from napari_latent.errors import UserInputError
from napari_latent.latent.discovery import method_names
from napari_latent.models.importers import import_model

from .conftest import SIZE, Trained

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SETTINGS = {"pca": {"samples": 64}, "axes": {"samples": 32}, "jacobian": {"iterations": 3},
            "voynov": {"steps": 2, "batch_size": 4, "eval_samples": 8}}


def test_analysis_of_an_imported_model(trained_kl: Trained, tmp_path: Path) -> None:
    from nibabel.testing import data_path

    model = import_model(trained_kl.weights, config=trained_kl.config, image_size=SIZE)
    volume = nl.open_volume(Path(data_path) / "anatomical.nii")
    codes = nl.invert(model, volume, "encoder")
    assert codes.codes.shape[1] == model.latent_dim() and np.isfinite(codes.errors).all()
    refined = nl.invert(model, volume, "hybrid", steps=3)
    assert (refined.errors <= codes.errors + 1e-7).all()
    found = {}
    for method in method_names():
        if method in ("supervised",):  # needs a labelled cohort: covered by the contract test
            continue
        found[method] = nl.discover(model, method, count=2, **SETTINGS.get(method, {}))
        assert found[method].vectors.shape == (2, model.latent_dim())
        assert torch.isfinite(found[method].vectors).all()
    traversal = nl.traverse(model, codes, found["sefa"], "-2:2:3", index=0, source=volume)
    assert traversal.images.shape == (3, *volume.data.shape) and np.isfinite(traversal.images).all()
    assert np.abs(traversal.images[-1] - traversal.images[0]).max() > 0
    result = nl.eigencomponents(traversal, n_components=2)
    assert result.eigenvalues.shape == (3,) and result.maps.shape == (2, *volume.data.shape)


def test_vqvae_refuses_sefa_in_one_line(trained_vq: Trained) -> None:
    model = import_model(trained_vq.weights, config=trained_vq.config, image_size=SIZE)
    with pytest.raises(UserInputError, match="linear first layer") as info:
        nl.discover(model, "sefa", count=2)
    assert "\n" not in str(info.value) and "monai-vqvae" in str(info.value)
    with pytest.raises(UserInputError, match="posterior"):
        nl.discover(model, "axes", count=2)
