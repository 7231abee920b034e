"""The ``discover`` command's method options, generated from the discovery methods' descriptions.

Every declared setting of every registered method (a plugin's included) becomes one option
``--name-with-dashes`` (the union over the methods; one option for a name several methods
share), and ``--help`` lists the methods with their settings. Values are read as text and
converted against the *chosen* method's description, so that a bad value names the method
and the setting, and a setting the method does not take is refused.
"""

from __future__ import annotations

import argparse
import textwrap
from typing import TYPE_CHECKING, Any

from ..settings import Setting, format_value
from .common import CliError, parse_settings

if TYPE_CHECKING:
    from ..latent.discovery import DiscoveryMethod

#: Options of ``discover`` that are not method settings (a setting of one of these names is
#: left to ``--set``).
FIXED_OPTIONS = ("model", "method", "out", "space", "data", "labels", "set", "no_evaluate", "report", "device",
                 "quiet", "help")


def option_settings(methods: list[DiscoveryMethod]) -> dict[str, list[tuple[str, Setting]]]:
    """The generated options: each setting name with the ``(method name, setting)`` pairs declaring it."""
    found: dict[str, list[tuple[str, Setting]]] = {}
    for method in methods:
        for setting in method.settings:
            if setting.on_command_line and setting.name not in FIXED_OPTIONS:
                found.setdefault(setting.name, []).append((method.name, setting))
    return found


def _option_help(owners: list[tuple[str, Setting]]) -> str:
    groups: dict[tuple[str, str], list[str]] = {}
    for method, setting in owners:
        groups.setdefault((setting.help, setting.describe_default()), []).append(method)
    parts = [f"{', '.join(methods)}: {text}" + ("" if default == "none" else f" (default {default})")
             for (text, default), methods in groups.items()]
    return "; ".join(parts).replace("%", "%%")


def add_method_options(parser: argparse.ArgumentParser, methods: list[DiscoveryMethod]) -> None:
    """Add one option per declared setting (see the module docstring)."""
    group = parser.add_argument_group(
        "method settings", "generated from the methods' descriptions (listed below); a setting the chosen method "
        "does not take is an error")
    for name, owners in option_settings(methods).items():
        setting = owners[0][1]
        if all(s.kind == "bool" for _, s in owners):
            group.add_argument(setting.option, dest=name, default=None, action=argparse.BooleanOptionalAction,
                               help=_option_help(owners))
        else:
            metavar = setting.value_name if len({s.value_name for _, s in owners}) == 1 else "VALUE"
            group.add_argument(setting.option, dest=name, default=None, metavar=metavar, help=_option_help(owners))


def methods_epilog(methods: list[DiscoveryMethod], width: int = 88) -> str:
    """The list of methods with their data and settings, for ``--help``."""
    lines = ["methods (--method NAME):"]
    for method in methods:
        need = method.data
        data = "none" if need.kind == "none" else f"{'required' if need.required else 'optional'} --data"
        settings = ", ".join(f"{s.name}={format_value(s.default) if s.default is not None else '-'}"
                             for s in method.settings if s.on_command_line)
        lines.append(f"  {method.name}: {method.summary}")
        lines += textwrap.wrap(f"data: {data}; settings: {settings or 'none'}", width, initial_indent="      ",
                               subsequent_indent="      ")
    lines.append("Any setting can also be given as --set KEY=VALUE; it is checked against the method's "
                 "description.")
    return "\n".join(lines)


def method_settings_from_args(args: argparse.Namespace, method: DiscoveryMethod,
                              methods: list[DiscoveryMethod]) -> dict[str, Any]:
    """The settings given for ``method`` (``--set`` pairs, then the generated options), checked and converted.

    Raises
    ------
    UserInputError
        One line for an unknown key, a setting the method does not take, or a bad value.
    """
    pairs = list(args.set or [])
    for pair in pairs:
        key = pair.partition("=")[0].strip().replace("-", "_")
        if key in method.data.parameters:
            raise CliError(f"--set {key}=...: give the data with --{key}")
    settings = parse_settings(pairs, method.declared(), method.owner)
    for name, owners in option_settings(methods).items():
        value = getattr(args, name, None)
        if value is None:
            continue
        setting = method.setting(name)
        if setting is None or not setting.on_command_line:
            raise CliError(f"method {method.name!r} has no {owners[0][1].option} setting")
        settings[name] = setting.convert(value, method.owner)
    if args.space is not None:
        settings["space"] = args.space
    return settings
