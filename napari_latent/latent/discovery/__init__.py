"""Discovery of interpretable latent directions: one short module per method, each describing itself.

Every method is a generator function ``iter_<name>(model, *, space, count, stop, ...)``
yielding progress events and returning :class:`~napari_latent.latent.directions.Directions`,
registered with :func:`register_method` together with its description: a summary, its
settings (:class:`~napari_latent.settings.Setting`: kind, default, help, choices) and the data
it takes (:class:`DataNeed`). The command line generates its ``discover`` options and the
napari Discover widget its fields from these descriptions, and :func:`iter_discover` checks
and converts every value against them. :func:`discover` drives any method to the end.

The registry (:data:`METHODS`) is filled from the ``napari_latent.discovery`` entry points,
the built-ins' included (see :mod:`napari_latent.registry`). A plugin's method, declared the
same way, works everywhere the built-ins do::

    from napari_latent.latent.discovery import DataNeed, register_method
    from napari_latent.settings import Setting

    @register_method("random", "random unit directions (a baseline)",
                     settings=(Setting("count", "int", 10, "number of directions", minimum=1),
                               Setting("seed", "int", 0, "random seed", minimum=0)))
    def iter_random(model, *, space=None, count=10, seed=0, stop=None):
        ...
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ...errors import UserInputError
from ...models.base import GenerativeModel
from ...progress import Operation, ProgressArg, StopFlag, run_operation
from ...registry import Registry
from ...settings import Setting, convert_settings
from ..directions import Directions

#: Keyword arguments every method takes besides its declared settings (and ``model``).
COMMON_PARAMETERS = ("space", "stop")
#: The ``space`` every method takes (None: the model's analysis space).
SPACE_SETTING = Setting("space", "str", None, "latent space")

#: Modules (in this package) that define and register the built-in methods; declared as
#: ``napari_latent.discovery`` entry points in ``setup.cfg`` (imported directly only when the
#: package's metadata is not installed).
BUILTIN_METHOD_MODULES = ("pca", "sefa", "axes", "jacobian", "voynov", "supervised")


@dataclass(frozen=True)
class DataNeed:
    """The data a discovery method takes as its ``data=`` argument.

    Attributes
    ----------
    kind : {"none", "codes", "cohort"}
        ``"none"``: no ``data`` argument. ``"codes"``: a cohort (a folder of volumes with
        ``cohort.csv``, a :class:`~napari_latent.volumes.cohort.Cohort`) or its codes already
        computed (:class:`~napari_latent.latent.cohort_codes.CohortCodes`; the command line
        computes them once, for the method and the evaluation). ``"cohort"``: a cohort, whose
        images the method reads itself.
    required : bool
        The method cannot run without it.
    help : str
        What the data must be, for messages and tooltips.
    labels : bool
        The method also takes ``labels=``: a cohort table used instead of the folder's
        ``cohort.csv``.
    check : callable, optional
        ``check(cohort, settings)`` raises :class:`~napari_latent.errors.UserInputError` for a
        cohort the method cannot use, before its (slow) codes are computed.
    inversion : tuple of str, optional
        A ``codes`` need: the names of the method's settings that give the inversion method
        and its steps, with which codes computed for the method are computed.
    """

    kind: Literal["none", "codes", "cohort"] = "none"
    required: bool = False
    help: str = ""
    labels: bool = False
    check: Callable[[Any, Mapping[str, Any]], None] | None = field(default=None, compare=False)
    inversion: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("none", "codes", "cohort"):
            raise TypeError(f"unknown data kind {self.kind!r}; use none, codes or cohort")
        if self.kind == "none" and (self.required or self.labels):
            raise TypeError("a method without data can neither require it nor take labels")
        if self.inversion is not None and self.kind != "codes":
            raise TypeError("only a 'codes' need names inversion settings")

    @property
    def parameters(self) -> tuple[str, ...]:
        """The keyword arguments this need adds (``data``, ``labels``)."""
        return (("data",) if self.kind != "none" else ()) + (("labels",) if self.labels else ())


@dataclass(frozen=True)
class DiscoveryMethod:
    """A registered discovery method and its description.

    Attributes
    ----------
    name : str
    function : callable
        The generator function ``iter_<name>``.
    summary : str
        One line.
    settings : tuple of Setting
        Its own settings (``space`` and the data arguments are not among them).
    data : DataNeed
    """

    name: str
    function: Callable[..., Operation[Directions]]
    summary: str
    settings: tuple[Setting, ...] = ()
    data: DataNeed = DataNeed()

    @property
    def owner(self) -> str:
        """How messages name it (``"method 'sefa'"``)."""
        return f"method {self.name!r}"

    def setting(self, name: str) -> Setting | None:
        """The declared setting ``name`` (None when the method has none of that name)."""
        return next((s for s in self.settings if s.name == name), None)

    def declared(self) -> dict[str, Setting]:
        """Every setting a caller may give by name: the declared ones and ``space``."""
        return {**{s.name: s for s in self.settings}, "space": SPACE_SETTING}

    def defaults(self) -> dict[str, Any]:
        """The declared defaults by setting name."""
        return {s.name: s.default for s in self.settings}

    def inversion_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """``method`` and ``steps`` for computing the codes of a ``codes`` need, from the given settings."""
        if self.data.inversion is None:
            return {}
        defaults = self.defaults()
        return {key: settings.get(name, defaults.get(name)) for key, name in zip(("method", "steps"),
                                                                              self.data.inversion)}

    def convert(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Check and convert given settings (text or Python values; None means the default).

        Raises
        ------
        UserInputError
            For a setting the method does not have, or a bad value (one line each).
        """
        return convert_settings(self.declared(), values, self.owner, passthrough=self.data.parameters)


def check_signature(method: DiscoveryMethod) -> None:
    """Raise ``TypeError`` unless the function's keyword arguments and defaults are the declared ones."""
    parameters = inspect.signature(method.function).parameters
    keywords = {n: p for n, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    expected = {*COMMON_PARAMETERS, *method.data.parameters, *(s.name for s in method.settings)}
    if set(keywords) != expected:
        missing, extra = sorted(expected - set(keywords)), sorted(set(keywords) - expected)
        raise TypeError(f"discovery method {method.name!r}: the keyword arguments of {method.function.__name__} "
                        f"do not match its description (undeclared: {', '.join(extra) or 'none'}; declared but "
                        f"missing: {', '.join(missing) or 'none'})")
    for setting in method.settings:
        default = keywords[setting.name].default
        if default != setting.default:
            raise TypeError(f"discovery method {method.name!r}: {setting.name} defaults to {default!r} in "
                            f"{method.function.__name__} but is declared with {setting.default!r}")
    names = [s.name for s in method.settings]
    if len(set(names)) != len(names):
        raise TypeError(f"discovery method {method.name!r}: a setting is declared twice")
    if method.data.inversion is not None and not set(method.data.inversion) <= set(names):
        raise TypeError(f"discovery method {method.name!r}: its inversion settings are not declared")


#: The discovery methods by registry name.
METHODS: Registry[DiscoveryMethod] = Registry(
    "discovery method", "napari_latent.discovery", tuple(f"{__name__}.{m}" for m in BUILTIN_METHOD_MODULES))


def register_method(name: str, summary: str, settings: tuple[Setting, ...] = (), data: DataNeed | None = None
                    ) -> Callable[[Callable[..., Operation[Directions]]], Callable[..., Operation[Directions]]]:
    """Decorator: register ``iter_<name>`` as a discovery method, with its description.

    Parameters
    ----------
    name : str
        The name users type (``--method NAME``) and directions files store.
    summary : str
        One line.
    settings : tuple of Setting
        Every keyword argument of the function besides ``space``, ``stop`` and the data
        arguments, with the same defaults.
    data : DataNeed, optional
        The data it takes (default: none).

    Raises
    ------
    TypeError
        When the function's keyword arguments or defaults differ from the description.
    """

    def wrap(function: Callable[..., Operation[Directions]]) -> Callable[..., Operation[Directions]]:
        method = DiscoveryMethod(name, function, summary, tuple(settings), data or DataNeed())
        check_signature(method)
        METHODS.add(name, method, function.__module__)
        return function

    return wrap


def method_names() -> list[str]:
    """Names of the available methods."""
    return METHODS.names()


def discovery_method(name: str) -> DiscoveryMethod:
    """The method registered under ``name`` (an unknown name is a :class:`UserInputError`)."""
    return METHODS.get(name)


def method_settings(name: str) -> list[str]:
    """The settings a method accepts (keyword parameters besides ``model`` and ``stop``)."""
    parameters = inspect.signature(discovery_method(name).function).parameters
    return [p for p in parameters if p not in ("model", "stop")]


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
    """Run a discovery method (a generator; see :func:`discover`).

    The settings are checked and converted against the method's description first (text is
    accepted: ``count="5"``), so a bad one fails before any work.
    """
    entry = discovery_method(method)
    return entry.function(model, stop=stop, **entry.convert(settings))


def discover(model: GenerativeModel, method: str, progress: ProgressArg = None, stop: StopFlag | None = None,
             **settings: Any) -> Directions:
    """Discover latent directions of a model.

    Parameters
    ----------
    model : GenerativeModel
    method : str
        ``"pca"``, ``"sefa"``, ``"voynov"``, ``"axes"``, ``"supervised"``, ``"jacobian"``, or a
        plugin's (see :func:`method_names`).
    progress : callable, bool or None
        ``True`` for a terminal progress bar, a callable for every event.
    stop : StopFlag, optional
        Ends iterative methods early (they return what they found so far).
    **settings
        The method's settings (``space``, ``count``, and its own; see
        :func:`discovery_method` for their description).

    Returns
    -------
    Directions
    """
    return run_operation(iter_discover(model, method, stop=stop, **settings), progress)
