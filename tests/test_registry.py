"""The Registry every extension point uses: names, errors, entry points, the built-ins' fallback."""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import napari_latent.registry as registry_module
from napari_latent.errors import UserInputError
from napari_latent.registry import PluginWarning, Registry

GROUP = "napari_latent.test_registry"


@dataclass
class Distribution:
    name: str


@dataclass
class FakePoint:
    """An entry point as ``importlib.metadata`` gives it (name, value, group, dist, load)."""

    name: str
    value: str
    dist: Distribution | None = None
    group: str = GROUP

    @property
    def module(self) -> str:
        return self.value.partition(":")[0]

    @property
    def attr(self) -> str | None:
        return self.value.partition(":")[2] or None

    def load(self) -> Any:
        module = importlib.import_module(self.module)
        return getattr(module, self.attr) if self.attr else module


class Points(list):
    """The entry points of :data:`GROUP`, and a record of the look-ups."""

    calls: list[str]


@pytest.fixture
def points(monkeypatch) -> Points:
    """The entry points of :data:`GROUP` (fill the list); every other group keeps the real ones."""
    ours = Points()
    ours.calls = []
    real = importlib.metadata.entry_points

    def entry_points(**selection: Any) -> Any:
        if selection.get("group") == GROUP:
            ours.calls.append(GROUP)
            return list(ours)
        return real(**selection)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    return ours


@pytest.fixture
def plugin_modules(tmp_path: Path, monkeypatch) -> Iterator[Path]:
    """A folder on ``sys.path`` for modules written by the tests (forgotten afterwards)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("reg_test_"):
            del sys.modules[name]


def write_module(folder: Path, name: str, body: str) -> None:
    (folder / f"{name}.py").write_text(body)
    importlib.invalidate_caches()


def test_add_get_names(points) -> None:
    things: Registry[int] = Registry("thing", GROUP)
    assert things.add("b", 2, origin="here") == 2
    things.add("a", 1)
    assert things.names() == ["a", "b"] and list(things) == ["a", "b"]
    assert things.get("a") == 1 and things.get("b") == 2
    assert "a" in things and "c" not in things
    assert things.items() == [("a", 1), ("b", 2)]
    assert things.origin("b") == "here"
    assert things.failures == {}
    things.remove("a")
    things.remove("never registered")
    assert things.names() == ["b"] and "a" not in things


def test_the_decorator_registers_under_the_name_it_reads(points) -> None:
    kinds: Registry[type] = Registry("kind", GROUP)
    register = kinds.decorator(lambda cls: cls.key)

    @register
    class Spam:
        key = "spam"

    assert kinds.get("spam") is Spam
    assert kinds.origin("spam") == __name__


@pytest.mark.parametrize("name", ["", " padded", "tab\t", None, 3])
def test_names_must_be_plain_non_empty_strings(name, points) -> None:
    with pytest.raises(TypeError, match="a thing needs a non-empty name"):
        Registry("thing", GROUP).add(name, 1)  # type: ignore[arg-type]


def test_an_unknown_name_lists_the_known_ones(points) -> None:
    things: Registry[int] = Registry("discovery method", GROUP)
    with pytest.raises(UserInputError, match=r"^unknown discovery method 'x'; choose one of none$"):
        things.get("x")
    things.add("zeta", 1)
    things.add("alpha", 2)
    with pytest.raises(UserInputError) as info:
        things.get("beta")
    assert str(info.value) == "unknown discovery method 'beta'; choose one of alpha, zeta"
    with pytest.raises(UserInputError, match="unknown discovery method"):
        things.origin("beta")
    with pytest.raises(UserInputError, match="unknown discovery method"):
        things.get(["not", "hashable"])  # type: ignore[arg-type]


def test_a_later_registration_replaces_the_earlier(points) -> None:
    things: Registry[str] = Registry("thing", GROUP)
    things.add("same", "first", origin="one")
    things.add("same", "second", origin="two")
    assert things.get("same") == "second"
    assert things.origin("same") == "two"
    assert things.names() == ["same"]


def test_entries_load_lazily_and_once(points, plugin_modules) -> None:
    write_module(plugin_modules, "reg_test_lazy", "import napari_latent.registry as r\n"
                                                  "class Lazy:\n    pass\n"
                                                  "r._REGISTRY_UNDER_TEST.add('lazy', Lazy)\n")
    things: Registry[type] = Registry("thing", GROUP)
    registry_module._REGISTRY_UNDER_TEST = things  # type: ignore[attr-defined]
    try:
        points.append(FakePoint("lazy", "reg_test_lazy", Distribution("napari-latent-lazy")))
        assert points.calls == [] and "reg_test_lazy" not in sys.modules  # nothing happens before first use
        assert things.get("lazy") is sys.modules["reg_test_lazy"].Lazy
        assert things.origin("lazy") == "reg_test_lazy"  # registered by the module's own call
        things.names()
        assert points.calls == [GROUP]
        things.reset()
        things.names()
        assert points.calls == [GROUP, GROUP]
    finally:
        del registry_module._REGISTRY_UNDER_TEST  # type: ignore[attr-defined]


def test_an_entry_point_naming_an_object_registers_it_under_the_entry_points_name(points, plugin_modules) -> None:
    write_module(plugin_modules, "reg_test_object", "class Thing:\n    pass\n\nOTHER = object()\n")
    points.append(FakePoint("alias", "reg_test_object:Thing", Distribution("napari-latent-objects")))
    things: Registry[Any] = Registry("thing", GROUP)
    thing = things.get("alias")
    assert thing is sys.modules["reg_test_object"].Thing
    assert things.origin("alias") == "reg_test_object"
    assert things.names() == ["alias"]


def test_an_entry_point_does_not_replace_an_entry_its_module_registered(points, plugin_modules) -> None:
    write_module(plugin_modules, "reg_test_both", "import napari_latent.registry as r\n"
                                                  "class Model:\n    pass\n"
                                                  "r._REGISTRY_UNDER_TEST.add('real-name', Model)\n")
    things: Registry[Any] = Registry("thing", GROUP)
    registry_module._REGISTRY_UNDER_TEST = things  # type: ignore[attr-defined]
    try:
        points.append(FakePoint("entry-name", "reg_test_both:Model", Distribution("napari-latent-both")))
        assert things.names() == ["real-name"]  # registered once, under the name the module chose
    finally:
        del registry_module._REGISTRY_UNDER_TEST  # type: ignore[attr-defined]


def test_the_builtins_are_imported_when_our_distribution_declares_no_entry_points(points, plugin_modules) -> None:
    write_module(plugin_modules, "reg_test_builtin", "import napari_latent.registry as r\n"
                                                     "r._REGISTRY_UNDER_TEST.add('builtin', 'ours')\n")
    things: Registry[str] = Registry("thing", GROUP, builtins=("reg_test_builtin",))
    registry_module._REGISTRY_UNDER_TEST = things  # type: ignore[attr-defined]
    try:
        assert points == []  # a source tree without installed metadata: no entry points at all
        assert things.names() == ["builtin"]
    finally:
        del registry_module._REGISTRY_UNDER_TEST  # type: ignore[attr-defined]


def test_the_builtins_are_imported_beside_a_plugin_when_ours_are_missing(points, plugin_modules) -> None:
    write_module(plugin_modules, "reg_test_builtin2", "import napari_latent.registry as r\n"
                                                      "r._REGISTRY_UNDER_TEST.add('builtin', 'ours')\n")
    write_module(plugin_modules, "reg_test_plugin2", "VALUE = 'theirs'\n")
    things: Registry[str] = Registry("thing", GROUP, builtins=("reg_test_builtin2",))
    registry_module._REGISTRY_UNDER_TEST = things  # type: ignore[attr-defined]
    try:
        points.append(FakePoint("plugin", "reg_test_plugin2:VALUE", Distribution("napari_latent_other")))
        assert things.items() == [("builtin", "ours"), ("plugin", "theirs")]
    finally:
        del registry_module._REGISTRY_UNDER_TEST  # type: ignore[attr-defined]


def test_our_own_entry_points_replace_the_builtins_fallback(points, plugin_modules) -> None:
    write_module(plugin_modules, "reg_test_declared",
                 "from tests.test_registry import IMPORTS\nIMPORTS.append('declared')\nVALUE = 'declared'\n")
    things: Registry[str] = Registry("thing", GROUP, builtins=("reg_test_declared",))
    # our distribution, spelt as some installers write it
    points.append(FakePoint("declared", "reg_test_declared:VALUE", Distribution("napari_latent")))
    IMPORTS.clear()
    assert things.names() == ["declared"]
    assert IMPORTS == ["declared"]  # through the entry point, not a second time as a fallback


def test_builtins_missing_from_stale_metadata_still_load(points, plugin_modules) -> None:
    # An editable install older than the checkout declares fewer built-ins than the code has.
    write_module(plugin_modules, "reg_test_old", "from napari_latent.registry import Registry\n")
    write_module(plugin_modules, "reg_test_new", "from tests.test_registry import STALE\nSTALE.add('new', 'new')\n")
    global STALE
    STALE = Registry("thing", GROUP, builtins=("reg_test_old", "reg_test_new"))
    points.append(FakePoint("old", "reg_test_old", Distribution("napari-latent")))
    assert STALE.names() == ["new"]
    assert "reg_test_old" in sys.modules and "reg_test_new" in sys.modules


#: Imports of test modules, in order (the module-level code of the fake built-ins appends).
IMPORTS: list[str] = []
STALE: Registry[str] = Registry("thing", GROUP)


def test_a_broken_entry_point_warns_names_itself_and_leaves_the_others(points, plugin_modules) -> None:
    write_module(plugin_modules, "reg_test_broken", "raise ImportError('needs a missing library')\n")
    write_module(plugin_modules, "reg_test_fine", "VALUE = 1\n")
    points.extend([FakePoint("broken", "reg_test_broken", Distribution("napari-latent-broken")),
                   FakePoint("fine", "reg_test_fine:VALUE", Distribution("napari-latent-fine"))])
    things: Registry[int] = Registry("model", GROUP)
    with pytest.warns(PluginWarning) as caught:
        assert things.names() == ["fine"]
    assert [str(w.message) for w in caught] == [
        f"napari-latent: the model plugin entry point 'broken' (reg_test_broken) of the group '{GROUP}' failed to "
        "load: ImportError: needs a missing library"]
    assert things.failures == {"broken": "ImportError: needs a missing library"}
    with pytest.raises(UserInputError) as info:
        things.get("broken")
    assert str(info.value) == ("unknown model 'broken'; choose one of fine; plugin entry 'broken' failed to load "
                               "(ImportError: needs a missing library)")
    assert things.get("fine") == 1


def test_the_real_registries_hold_the_built_ins_from_our_entry_points() -> None:
    from napari_latent.models.base import MODELS
    from napari_latent.training.objectives.base import OBJECTIVES

    assert {"vae", "introvae", "vqvae", "dcgan", "stylegan"} <= set(MODELS.names())
    assert MODELS.origin("dcgan") == "napari_latent.models.dcgan"
    assert {"vae", "introvae", "vqvae", "gan"} <= set(OBJECTIVES.names())
    for _, model in MODELS.items():  # every family we train trains with a registered objective
        assert model.objective in OBJECTIVES if model.trainable() else model.objective == ""
    assert {"stylegan2-ada", "monai-autoencoderkl", "monai-vqvae"} <= set(MODELS.names())  # imported families
