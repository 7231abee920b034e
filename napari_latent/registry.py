"""One small registry kind for every extension point: model families, training objectives,
discovery methods and volume readers.

Entries are registered by name. A registry is filled lazily, on first use, from the Python
entry points of its group (``napari_latent.models``, ``napari_latent.objectives``,
``napari_latent.discovery``, ``napari_latent.readers``): each entry point names a module,
and importing it runs the module's registration calls (``@register_model``, ...). Our own
built-ins are declared in ``setup.cfg`` exactly the same way as a plugin's, so a plugin's
entries work everywhere ours do: the CLI, napari, and a checkpoint loaded in a fresh
process. A plugin that fails to import is reported by a warning naming it; it does not stop
the other entries from loading, and asking for one of its entries names the failure.

Example (a plugin's ``setup.cfg``)::

    [options.entry_points]
    napari_latent.models =
        tinyvae = napari_latent_tinyvae.model
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Generic, TypeVar

from .errors import UserInputError

T = TypeVar("T")

#: The distribution whose entry points declare the built-ins.
OWN_DISTRIBUTION = "napari-latent"


class PluginWarning(UserWarning):
    """An installed plugin's entry point could not be loaded."""


class Registry(Generic[T]):
    """Named entries of one kind, filled from the entry points of one group.

    Parameters
    ----------
    kind : str
        What the entries are, for messages (``"model"``, ``"discovery method"``).
    group : str
        The entry-point group plugins (and the built-ins) register through.
    builtins : tuple of str
        Modules that register the built-ins. They are imported only when this package's own
        entry points are not installed (a source tree on ``sys.path`` without ``pip install``),
        so that the built-ins are there either way.
    """

    def __init__(self, kind: str, group: str, builtins: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.group = group
        self.builtins = builtins
        self._entries: dict[str, T] = {}
        self._origins: dict[str, str] = {}
        self._failures: dict[str, str] = {}
        self._loaded = False
        self._loading = False

    # -- registering -------------------------------------------------------------------------
    def add(self, name: str, entry: T, origin: str = "") -> T:
        """Register ``entry`` under ``name`` (a later registration of the same name replaces it).

        Parameters
        ----------
        name : str
            The name users type (``--model NAME``, ``--method NAME``) and files store.
        entry : object
            What the name stands for (a model class, a method description, ...).
        origin : str, optional
            Where it comes from, for messages (default: the entry's module).
        """
        if not isinstance(name, str) or not name or name != name.strip():
            raise TypeError(f"a {self.kind} needs a non-empty name without surrounding spaces, got {name!r}")
        self._entries[name] = entry
        self._origins[name] = origin or str(getattr(entry, "__module__", "") or "")
        return entry

    def decorator(self, name_of: Callable[[T], str]) -> Callable[[T], T]:
        """A decorator that registers its argument under ``name_of(argument)``."""

        def register(entry: T) -> T:
            return self.add(name_of(entry), entry)

        return register

    def remove(self, name: str) -> None:
        """Forget the entry ``name`` (a plugin unloaded; tests). Unknown names are ignored."""
        self._entries.pop(name, None)
        self._origins.pop(name, None)

    # -- reading -----------------------------------------------------------------------------
    def names(self) -> list[str]:
        """The registered names, sorted."""
        self.load()
        return sorted(self._entries)

    def get(self, name: str) -> T:
        """The entry registered under ``name``.

        Raises
        ------
        UserInputError
            For an unknown name: the message lists the known ones, and names a plugin that
            failed to load.
        """
        self.load()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            pass
        known = ", ".join(sorted(self._entries)) or "none"
        failed = "".join(f"; plugin entry {entry!r} failed to load ({why})" for entry, why in self._failures.items())
        raise UserInputError(f"unknown {self.kind} {name!r}; choose one of {known}{failed}") from None

    def origin(self, name: str) -> str:
        """The module that registered ``name``."""
        self.get(name)
        return self._origins[name]

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` pairs, sorted by name."""
        return [(name, self._entries[name]) for name in self.names()]

    @property
    def failures(self) -> dict[str, str]:
        """Entry points that failed to load: their name and why."""
        self.load()
        return dict(self._failures)

    # -- loading -----------------------------------------------------------------------------
    def load(self) -> None:
        """Import every module of the group's entry points (once)."""
        if self._loaded or self._loading:
            return
        self._loading = True
        try:
            points = list(metadata.entry_points(group=self.group))
            # Built-ins our installed metadata does not declare (a checkout that is not
            # installed, or an editable install older than the checkout) load directly.
            declared = {p.module for p in points if _distribution_name(p) == OWN_DISTRIBUTION}
            for module in self.builtins:
                if module not in declared:
                    importlib.import_module(module)
            for point in points:
                self._load_point(point)
            self._loaded = True
        finally:
            self._loading = False

    def _load_point(self, point: metadata.EntryPoint) -> None:
        try:
            loaded = point.load()
        except Exception as exc:  # a broken plugin must not break the others
            why = f"{type(exc).__name__}: {exc}"
            self._failures[point.name] = why
            warnings.warn(f"napari-latent: the {self.kind} plugin entry point {point.name!r} ({point.value}) "
                          f"of the group {self.group!r} failed to load: {why}", PluginWarning, stacklevel=3)
            return
        if point.attr and point.name not in self._entries and loaded not in self._entries.values():
            self.add(point.name, loaded, point.module)

    def reset(self) -> None:
        """Forget what was loaded from entry points (tests; the next use loads again)."""
        self._loaded = False
        self._failures.clear()


def _distribution_name(point: metadata.EntryPoint) -> str:
    dist = getattr(point, "dist", None)
    return str(getattr(dist, "name", "") or "").replace("_", "-").lower()
