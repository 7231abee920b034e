"""A discovery method registered by a plugin module, as its entry point would register it (a fixture)."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from napari_latent.latent.directions import Directions
from napari_latent.latent.discovery import METHODS, register_method
from napari_latent.progress import ProgressEvent
from napari_latent.settings import Setting


@pytest.fixture(name="plugin_method")
def plugin_method_fixture(monkeypatch):
    """A method registered by a plugin module, as its entry point would (removed afterwards)."""
    module = types.ModuleType("napari_latent_test_plugin")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    METHODS.load()
    assert "random" not in METHODS

    def iter_random(model, *, space=None, count=4, seed=0, normalise=True, stop=None):
        space = model.check_space(space)
        generator = torch.Generator().manual_seed(seed)
        vectors = torch.randn(count, model.latent_dim(space), generator=generator)
        if normalise:
            vectors = vectors / vectors.norm(dim=1, keepdim=True)
        yield ProgressEvent(1, 1, "drawn", {}, stage="discover")
        return Directions(vectors, space, model.name, model.fingerprint, "random",
                          settings={"count": count, "seed": seed, "normalise": normalise})

    iter_random.__module__ = module.__name__
    register_method("random", "random unit directions (a baseline)", settings=(
        Setting("count", "int", 4, "number of directions", minimum=1),
        Setting("seed", "int", 0, "random seed"),
        Setting("normalise", "bool", True, "unit length")))(iter_random)
    yield "random"
    METHODS.remove("random")
