"""Discovery of interpretable latent directions: one short module per method.

Every method is a generator function ``iter_<name>(model, *, space, count, stop, ...)``
yielding progress events and returning :class:`~napari_latent.latent.directions.Directions`,
registered here by name. :func:`discover` drives any of them to the end.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...errors import UserInputError
from ...models.base import GenerativeModel
from ...progress import Operation, ProgressArg, StopFlag, run_operation
from ..directions import Directions


@dataclass(frozen=True)
class DiscoveryMethod:
    """A registered discovery method."""

    name: str
    function: Callable[..., Operation[Directions]]
    summary: str
    needs_data: bool = False


METHODS: dict[str, DiscoveryMethod] = {}

#: Modules in this package that register the built-in methods.
BUILTIN_METHOD_MODULES = ("pca", "sefa", "axes", "jacobian", "voynov", "supervised")


def register_method(name: str, summary: str, needs_data: bool = False) -> Callable[[Callable[..., Any]], Any]:
    """Decorator: register ``iter_<name>`` as a discovery method."""

    def wrap(function: Callable[..., Operation[Directions]]) -> Callable[..., Operation[Directions]]:
        METHODS[name] = DiscoveryMethod(name, function, summary, needs_data)
        return function

    return wrap


def method_names() -> list[str]:
    """Names of the available methods."""
    for module in BUILTIN_METHOD_MODULES:
        try:
            importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as exc:  # a method module not written yet
            if exc.name != f"{__name__}.{module}":
                raise
    return sorted(METHODS)


def method_settings(name: str) -> list[str]:
    """The settings a method accepts (keyword parameters besides ``model`` and ``stop``)."""
    method = _method(name)
    parameters = inspect.signature(method.function).parameters
    return [p for p in parameters if p not in ("model", "stop")]


def _method(name: str) -> DiscoveryMethod:
    names = method_names()
    if name not in METHODS:
        raise UserInputError(f"unknown discovery method {name!r}; use one of {', '.join(names)}")
    return METHODS[name]


def check_count(model: GenerativeModel, space: str, count: int) -> None:
    """Raise :class:`UserInputError` unless 1 <= count <= the latent dimension of ``space``."""
    dim = model.latent_dim(space)
    if count < 1:
        raise UserInputError(f"the number of directions must be at least 1, got {count}")
    if count > dim:
        raise UserInputError(f"{count} directions asked for, but space {space!r} of model {model.name!r} has only "
                             f"{dim} dimensions")


def iter_discover(model: GenerativeModel, method: str, stop: StopFlag | None = None,
                  **settings: Any) -> Operation[Directions]:
    """Run a discovery method (a generator; see :func:`discover`)."""
    entry = _method(method)
    accepted = method_settings(method)
    unknown = sorted(k for k, v in settings.items() if k not in accepted and v is not None)
    if unknown:
        raise UserInputError(f"method {method!r} has no setting(s) {', '.join(unknown)}; it accepts "
                             f"{', '.join(accepted)}")
    given = {k: v for k, v in settings.items() if v is not None}
    return entry.function(model, stop=stop, **given)


def discover(model: GenerativeModel, method: str, progress: ProgressArg = None, stop: StopFlag | None = None,
             **settings: Any) -> Directions:
    """Discover latent directions of a model.

    Parameters
    ----------
    model : GenerativeModel
    method : str
        ``"pca"``, ``"sefa"``, ``"voynov"``, ``"axes"``, ``"supervised"`` or ``"jacobian"``.
    progress : callable, bool or None
        ``True`` for a terminal progress bar, a callable for every event.
    stop : StopFlag, optional
        Ends iterative methods early (they return what they found so far).
    **settings
        The method's settings (``space``, ``count``, and its own; see
        :func:`method_settings`).

    Returns
    -------
    Directions
    """
    return run_operation(iter_discover(model, method, stop=stop, **settings), progress)
