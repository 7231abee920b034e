"""Declared settings: what an extension accepts, described once and checked the same way everywhere.

A :class:`Setting` describes one keyword argument of an extension (a discovery method's
setting, a field of a model family's config): its name, kind, default, help text and, where
any, its choices and bounds. The command line generates its options and the napari widgets
their fields from these descriptions, and :meth:`Setting.convert` checks and converts what a
user gives (text from a command line or a form, or a Python value), with one clear error per
bad value::

    count = Setting("count", "int", 10, "number of directions", minimum=1)
    count.convert("12", "method 'sefa'")   # 12
    count.convert("abc", "method 'sefa'")  # UserInputError: method 'sefa': count must be a whole number, got 'abc'

Kinds
-----
``int``, ``float``, ``bool``, ``str`` (``parse`` may turn the text into a value),
``choice`` (one of ``choices``), ``ints`` (whole numbers; as text ``0-3,6``), ``floats``
(numbers; as text ``0.1,-2,3``), ``path`` (a file or folder) and ``object`` (a Python
object, given from Python only: command lines and forms leave it out).
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import PurePath
from typing import Any, Literal

from .errors import UserInputError

Kind = Literal["int", "float", "bool", "str", "choice", "ints", "floats", "path", "object"]
KINDS: tuple[str, ...] = typing.get_args(Kind)
#: Accepted spellings of booleans in text.
TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")


@dataclasses.dataclass(frozen=True)
class Setting:
    """One declared setting.

    Parameters
    ----------
    name : str
        The keyword argument (``batch_size``); the command-line option is ``--batch-size``.
    kind : str
        One of :data:`KINDS` (see the module docstring).
    default : object
        The default (None: the extension's own choice, or off).
    help : str
        One line for ``--help``, tooltips and docs.
    choices : tuple of str
        The allowed values of a ``choice``.
    minimum, maximum : float, optional
        Bounds of an ``int`` or ``float``.
    label : str
        The label of its form field (default: the name with spaces).
    form : bool
        Shown in napari forms (``object`` settings never are).
    parse : callable, optional
        Turns the text of a ``str`` setting into its value (raising :class:`UserInputError`).
    mode : {"r", "w", "d"}
        A ``path``: a file to read, a file to write, or a folder.
    metavar : str
        How its value is written on a command line (default: from the kind).
    """

    name: str
    kind: Kind
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    label: str = ""
    form: bool = True
    parse: Callable[[str], Any] | None = dataclasses.field(default=None, compare=False)
    mode: Literal["r", "w", "d"] = "r"
    metavar: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TypeError(f"setting {self.name!r}: unknown kind {self.kind!r}; use one of {', '.join(KINDS)}")
        if self.kind == "choice" and (not self.choices or (self.default is not None
                                                           and self.default not in self.choices)):
            raise TypeError(f"setting {self.name!r}: a choice needs choices that include its default")

    # -- description -------------------------------------------------------------------------
    @property
    def option(self) -> str:
        """The command-line option (``--batch-size``)."""
        return "--" + self.name.replace("_", "-")

    @property
    def title(self) -> str:
        """The label of its form field."""
        return self.label or self.name.replace("_", " ")

    @property
    def in_forms(self) -> bool:
        """Whether napari forms show it."""
        return self.form and self.kind != "object"

    @property
    def on_command_line(self) -> bool:
        """Whether the command line offers it (every kind but ``object``)."""
        return self.kind != "object"

    @property
    def value_name(self) -> str:
        """How its value is written on a command line."""
        if self.metavar:
            return self.metavar
        if self.kind == "choice":
            return "{" + ",".join(self.choices) + "}"
        return {"int": "N", "float": "X", "bool": "BOOL", "ints": "N,N-M", "floats": "X,X,...",
                "path": "PATH"}.get(self.kind, "TEXT")

    def describe_default(self) -> str:
        """The default as a short text (``"none"`` for None)."""
        return "none" if self.default is None else format_value(self.default)

    # -- checking ----------------------------------------------------------------------------
    def convert(self, value: Any, owner: str) -> Any:
        """Check ``value`` (text, or a Python value) and convert it to this setting's kind.

        Parameters
        ----------
        value : object
            None keeps the default (and is returned as None).
        owner : str
            Whose setting it is, for the message (``"method 'sefa'"``).

        Raises
        ------
        UserInputError
            One line naming the owner, the setting and the bad value.
        """
        if value is None:
            return None
        converted = _CONVERTERS[self.kind](self, value, owner)
        if self.kind in ("int", "float"):
            if self.minimum is not None and converted < self.minimum:
                raise UserInputError(f"{owner}: {self.name} must be at least {format_value(self.minimum)}, "
                                     f"got {format_value(converted)}")
            if self.maximum is not None and converted > self.maximum:
                raise UserInputError(f"{owner}: {self.name} must be at most {format_value(self.maximum)}, "
                                     f"got {format_value(converted)}")
        return converted

    def _bad(self, owner: str, what: str, value: Any) -> UserInputError:
        return UserInputError(f"{owner}: {self.name} must be {what}, got {value!r}")


def format_value(value: Any) -> str:
    """A value as users write it (``0.0001``, ``2000``, ``0-3``)."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(format_value(v) for v in value)
    return str(value)


# -- converters, one per kind -----------------------------------------------------------------
def _to_int(setting: Setting, value: Any, owner: str) -> int:
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise setting._bad(owner, "a whole number", value) from None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer():
        return int(value)
    raise setting._bad(owner, "a whole number", value)


def _to_float(setting: Setting, value: Any, owner: str) -> float:
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise setting._bad(owner, "a number", value) from None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    raise setting._bad(owner, "a number", value)


def _to_bool(setting: Setting, value: Any, owner: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral) and int(value) in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS + FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise setting._bad(owner, "true or false", value)


def _to_str(setting: Setting, value: Any, owner: str) -> Any:
    if isinstance(value, str):
        return setting.parse(value) if setting.parse is not None else value
    if setting.parse is not None:  # a value already parsed (a band given as a tuple from Python)
        return value
    raise setting._bad(owner, "text", value)


def _to_choice(setting: Setting, value: Any, owner: str) -> str:
    text = value.strip() if isinstance(value, str) else value
    if text not in setting.choices:
        raise UserInputError(f"{owner}: unknown {setting.name} {value!r}; use one of {', '.join(setting.choices)}")
    return text


def _to_ints(setting: Setting, value: Any, owner: str) -> list[int]:
    if isinstance(value, str):
        try:
            return parse_ints(value)
        except ValueError:
            raise setting._bad(owner, "whole numbers such as 0-3,6", value) from None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return [int(value)]
    if isinstance(value, Iterable) and all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                           for v in value):
        return [int(v) for v in value]
    raise setting._bad(owner, "whole numbers such as 0-3,6", value)


def _to_floats(setting: Setting, value: Any, owner: str) -> Any:
    if isinstance(value, str):
        try:
            return [float(v) for v in re.split(r"[,\s]+", value.strip()) if v]
        except ValueError:
            raise setting._bad(owner, "numbers separated by commas", value) from None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return [float(value)]
    if hasattr(value, "__len__") or isinstance(value, Iterable):  # a sequence, array or tensor: kept as it is
        return value
    raise setting._bad(owner, "numbers separated by commas", value)


def _to_path(setting: Setting, value: Any, owner: str) -> Any:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (os.PathLike, PurePath)):
        return value
    raise setting._bad(owner, "a path", value)


def _to_object(setting: Setting, value: Any, owner: str) -> Any:
    if isinstance(value, str):
        raise UserInputError(f"{owner}: {setting.name} can only be given from Python, not as text ({value!r})")
    return value


_CONVERTERS: dict[str, Callable[[Setting, Any, str], Any]] = {
    "int": _to_int, "float": _to_float, "bool": _to_bool, "str": _to_str, "choice": _to_choice,
    "ints": _to_ints, "floats": _to_floats, "path": _to_path, "object": _to_object}


def parse_ints(text: str) -> list[int]:
    """Whole numbers from ``"0-3,6"`` (ranges include both ends; commas or spaces between).

    Raises
    ------
    ValueError
        For anything else.
    """
    numbers_: list[int] = []
    for part in filter(None, re.split(r"[,\s]+", text.strip())):
        low, dash, high = part.partition("-")
        if dash and low and high:
            numbers_ += range(int(low), int(high) + 1)
        else:
            numbers_.append(int(part))
    if not numbers_:
        raise ValueError(f"no numbers in {text!r}")
    return numbers_


def convert_settings(declared: Mapping[str, Setting], values: Mapping[str, Any], owner: str,
                     passthrough: Iterable[str] = ()) -> dict[str, Any]:
    """Check and convert every given value against its declaration (None values are left out).

    Parameters
    ----------
    declared : mapping of str to Setting
    values : mapping
        The given settings, as text or Python values.
    owner : str
        For messages (``"method 'sefa'"``, ``"model 'vae'"``).
    passthrough : iterable of str
        Other accepted names, passed on unchecked.

    Raises
    ------
    UserInputError
        For an unknown name (the message lists the accepted ones) or a bad value.
    """
    passthrough = tuple(passthrough)
    given = {k: v for k, v in values.items() if v is not None}
    unknown = sorted(k for k in given if k not in declared and k not in passthrough)
    if unknown:
        accepted = ", ".join(sorted({*declared, *passthrough}))
        raise UserInputError(f"{owner} has no setting(s) {', '.join(unknown)}; it accepts {accepted}")
    return {k: v if k not in declared else declared[k].convert(v, owner) for k, v in given.items()}


def settings_of_dataclass(cls: type, skip: Iterable[str] = ()) -> dict[str, Setting]:
    """Settings describing the fields of a dataclass (a model family's config), by name.

    Field types map to kinds: ``int``, ``float``, ``bool``, ``str``, ``Literal[...]``
    (a choice), sequences of ``int`` (``ints``) or ``float`` (``floats``), paths; ``X | None``
    as ``X``; anything else is an ``object``. Fields in ``skip`` are left out.
    """
    hints = typing.get_type_hints(cls)
    skipped = set(skip)
    found: dict[str, Setting] = {}
    for field in dataclasses.fields(cls):
        if field.name in skipped or not field.init:
            continue
        default: Any = field.default
        if default is dataclasses.MISSING:
            default = field.default_factory() if field.default_factory is not dataclasses.MISSING else None
        kind, choices = _kind_of(hints.get(field.name, Any))
        found[field.name] = Setting(field.name, kind, default, choices=choices)  # type: ignore[arg-type]
    return found


def _kind_of(annotation: Any) -> tuple[str, tuple[str, ...]]:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return _kind_of(rest[0]) if len(rest) == 1 else ("object", ())
    if origin is Literal:
        return "choice", tuple(str(a) for a in args)
    if origin in (list, tuple, set, frozenset) or (isinstance(origin, type) and issubclass(origin, Iterable)):
        items = {a for a in args if a is not Ellipsis}
        if items == {int}:
            return "ints", ()
        if items and items <= {int, float}:
            return "floats", ()
        return "object", ()
    simple = {bool: "bool", int: "int", float: "float", str: "str"}
    if annotation in simple:
        return simple[annotation], ()
    if isinstance(annotation, type) and issubclass(annotation, (os.PathLike, PurePath)):
        return "path", ()
    return "object", ()
