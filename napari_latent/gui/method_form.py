"""The fields of the discovery methods' settings, generated from the methods' descriptions.

One field per declared setting (int: SpinBox, float: FloatSpinBox, bool: CheckBox, choice:
ComboBox, path: FileEdit, other text: LineEdit), shared by the methods that declare a
setting of the same name and kind, and one folder field for the data a method takes. Only
the selected method's fields are shown, set to its defaults, bounds and help.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, FileEdit, FloatSpinBox, LineEdit, SpinBox
from magicgui.widgets.bases import ValueWidget

from ..latent.discovery import DiscoveryMethod
from ..settings import Setting, format_value

#: Bounds of the spin boxes when a setting declares none (Qt's int range).
INT_LIMIT = 2**31 - 1
FLOAT_LIMIT = 1e12


def no_path(value: Any) -> bool:
    """Whether a FileEdit value is empty."""
    return value is None or str(value) in ("", ".")


def data_message(method: DiscoveryMethod) -> str:
    """What to say when a method's required data is missing."""
    return f"The {method.name} method needs {method.data.help}."


def _step(setting: Setting) -> float:
    """A spin step one decimal finer than the default (0.01 without one), so that the default shows exactly."""
    default = setting.default
    if not default:
        return 0.01
    return min(0.1, 10.0 ** (math.floor(math.log10(abs(float(default)))) - 1))


def make_field(setting: Setting) -> ValueWidget:
    """An (unconfigured) form field for a setting of its kind."""
    common: dict[str, Any] = {"name": setting.name, "label": setting.title, "tooltip": setting.help}
    if setting.kind == "int":
        return SpinBox(min=-INT_LIMIT, max=INT_LIMIT, value=0, **common)
    if setting.kind == "float":
        return FloatSpinBox(min=-FLOAT_LIMIT, max=FLOAT_LIMIT, step=_step(setting), value=0.0, **common)
    if setting.kind == "bool":
        return CheckBox(value=False, **common)
    if setting.kind == "choice":
        return ComboBox(choices=setting.choices, **common)
    if setting.kind == "path":
        return FileEdit(mode=setting.mode, **common)
    return LineEdit(value="", **common)


def _signature(setting: Setting) -> tuple[str, str]:
    return setting.kind, setting.mode if setting.kind == "path" else ""


class MethodForm:
    """The settings fields of every method (see the module docstring).

    Parameters
    ----------
    methods : list of DiscoveryMethod
    """

    def __init__(self, methods: list[DiscoveryMethod]) -> None:
        self.methods = {m.name: m for m in methods}
        self.data = FileEdit(label="labelled data", mode="d")
        #: The fields by key (the setting's name; ``method.name`` for a same-named setting of another kind).
        self.fields: dict[str, ValueWidget] = {}
        self._keys: dict[str, dict[str, str]] = {}
        signatures: dict[str, tuple[str, str]] = {}
        for method in methods:
            keys = self._keys.setdefault(method.name, {})
            for setting in method.settings:
                if not setting.in_forms:
                    continue
                key = setting.name
                if signatures.setdefault(key, _signature(setting)) != _signature(setting):
                    key = f"{method.name}.{setting.name}"
                if key not in self.fields:
                    self.fields[key] = make_field(setting)
                keys[setting.name] = key

    @property
    def widgets(self) -> list[ValueWidget]:
        """The data field, then the settings fields."""
        return [self.data, *self.fields.values()]

    def show(self, name: str) -> None:
        """Show the fields of method ``name`` only, with its defaults, bounds, choices and help."""
        method = self.methods[name]
        keys = self._keys[name]
        used = set(keys.values())
        for key, field in self.fields.items():
            field.visible = key in used
        for setting_name, key in keys.items():
            self._configure(self.fields[key], method.setting(setting_name))
        need = method.data
        self.data.visible = need.kind != "none"
        self.data.label = "labelled data" if need.required else "data (optional)"
        self.data.tooltip = f"A folder of volumes with cohort.csv: {need.help}" if need.help else None

    @staticmethod
    def _configure(field: ValueWidget, setting: Setting | None) -> None:
        if setting is None:
            return
        field.tooltip = setting.help
        if setting.kind in ("int", "float"):
            limit = INT_LIMIT if setting.kind == "int" else FLOAT_LIMIT
            field.min = -limit if setting.minimum is None else setting.minimum
            field.max = limit if setting.maximum is None else setting.maximum
        if setting.kind == "choice":
            field.choices = setting.choices
        if setting.kind in ("int", "float", "bool", "choice"):
            field.value = setting.default if setting.default is not None else field.value
        elif setting.kind == "path":  # (a FileEdit given "" would show the current folder)
            field.line_edit.value = "" if setting.default is None else str(setting.default)
        else:
            field.value = "" if setting.default is None else format_value(setting.default)

    def values(self, name: str) -> dict[str, Any]:
        """The settings of method ``name`` that differ from its defaults, checked and converted.

        Raises
        ------
        UserInputError
            For a bad value (one line naming the method and the setting).
        """
        method = self.methods[name]
        given: dict[str, Any] = {}
        for setting_name, key in self._keys[name].items():
            value = self.fields[key].value
            if isinstance(value, str):
                value = value.strip() or None
            elif isinstance(value, Path) and no_path(value):
                value = None
            given[setting_name] = value
        converted = method.convert(given)
        defaults = method.defaults()
        return {k: v for k, v in converted.items() if v != defaults.get(k)}
