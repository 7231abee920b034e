"""The discovery registry: every method's description matches its function, values are checked against it,
and a plugin's method works like the built-ins."""

from __future__ import annotations

import inspect

import pytest
import torch

from napari_latent.errors import UserInputError
from napari_latent.latent.discovery import (
    METHODS,
    DataNeed,
    discover,
    discovery_method,
    method_names,
    method_settings,
    register_method,
)
from napari_latent.models.base import build_model, model_fingerprint
from napari_latent.settings import KINDS, Setting
from tests._plugin_method import plugin_method_fixture  # noqa: F401 (the plugin_method fixture)

BUILTINS = ("axes", "jacobian", "pca", "sefa", "supervised", "voynov")


def tiny_vae():
    torch.manual_seed(0)
    model = build_model("vae", image_size=32, latent_dim=8, base_channels=8, max_channels=32).eval()
    model.fingerprint = model_fingerprint(model)
    return model


def test_the_builtins_are_registered_from_their_entry_points() -> None:
    assert set(BUILTINS) <= set(method_names())
    assert METHODS.failures == {}
    assert discovery_method("sefa").function.__module__ == "napari_latent.latent.discovery.sefa"


@pytest.mark.parametrize("name", sorted(set(BUILTINS) | set(method_names())))
def test_declared_settings_match_the_keyword_parameters_and_defaults(name: str) -> None:
    method = discovery_method(name)
    parameters = inspect.signature(method.function).parameters
    own = {n: p.default for n, p in parameters.items()
           if p.kind is inspect.Parameter.KEYWORD_ONLY and n not in ("space", "stop", "data", "labels")}
    assert {s.name: s.default for s in method.settings} == own
    assert next(iter(parameters)) == "model" and "space" in parameters and "stop" in parameters
    assert ("data" in parameters) == (method.data.kind != "none")
    assert ("labels" in parameters) == method.data.labels
    for setting in method.settings:
        assert setting.kind in KINDS and setting.help, (name, setting.name)
        if setting.kind == "choice":
            assert setting.default in setting.choices


def test_the_builtin_descriptions() -> None:
    assert {n: (discovery_method(n).data.kind, discovery_method(n).data.required) for n in BUILTINS} == {
        "axes": ("cohort", False), "jacobian": ("none", False), "pca": ("codes", False), "sefa": ("none", False),
        "supervised": ("codes", True), "voynov": ("none", False)}
    voynov = discovery_method("voynov")
    assert voynov.defaults()["steps"] == 2000 and discovery_method("supervised").defaults()["steps"] == 100
    assert voynov.setting("deformator").choices == ("linear", "orthonormal", "proj")
    assert discovery_method("supervised").setting("classifier").choices == ("svm", "logistic", "lda", "ridge")
    assert discovery_method("sefa").setting("layers").kind == "ints"
    assert discovery_method("supervised").setting("condition").kind == "object"
    assert discovery_method("supervised").data.required and not discovery_method("pca").data.required


def test_text_values_are_converted_and_bad_ones_named() -> None:
    model = tiny_vae()
    found = discover(model, "sefa", count="3")
    assert len(found) == 3 and found.settings["count"] == 3
    with pytest.raises(UserInputError, match=r"^method 'sefa': count must be a whole number, got 'abc'$"):
        discover(model, "sefa", count="abc")
    with pytest.raises(UserInputError, match=r"^method 'voynov': batch_size must be at least 2, got 1$"):
        discover(model, "voynov", batch_size="1")
    with pytest.raises(UserInputError, match=r"^method 'voynov': lr must be a number, got 'fast'$"):
        discover(model, "voynov", lr="fast")
    with pytest.raises(UserInputError, match="unknown discovery method 'nope'; choose one of axes, jacobian"):
        discover(model, "nope")


def test_a_description_that_drifts_from_its_function_is_refused() -> None:
    def iter_drift(model, *, space=None, count=10, seed=0, stop=None):
        yield from ()

    with pytest.raises(TypeError, match="undeclared: seed"):
        register_method("drift", "x", settings=(Setting("count", "int", 10, "n"),))(iter_drift)
    with pytest.raises(TypeError, match="count defaults to 10 in iter_drift but is declared with 5"):
        register_method("drift", "x", settings=(Setting("count", "int", 5, "n"), Setting("seed", "int", 0, "s")))(
            iter_drift)
    with pytest.raises(TypeError, match="declared but missing: data"):
        register_method("drift", "x", settings=(Setting("count", "int", 10, "n"), Setting("seed", "int", 0, "s")),
                        data=DataNeed("codes"))(iter_drift)
    assert "drift" not in method_names()


def test_a_plugin_method_works_like_the_builtins(plugin_method: str) -> None:
    model = tiny_vae()
    assert plugin_method in method_names() and METHODS.origin(plugin_method) == "napari_latent_test_plugin"
    assert method_settings(plugin_method) == ["space", "count", "seed", "normalise"]
    found = discover(model, plugin_method, count="2", seed="5", normalise="false")
    assert len(found) == 2 and found.settings == {"count": 2, "seed": 5, "normalise": False}
    expected = torch.randn(2, 8, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(found.vectors, expected / expected.norm(dim=1, keepdim=True))  # Directions are unit
    with pytest.raises(UserInputError, match="method 'random': normalise must be true or false, got 'maybe'"):
        discover(model, plugin_method, normalise="maybe")
