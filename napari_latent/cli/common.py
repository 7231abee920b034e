"""Shared pieces of the command line: the parser class, argument types and errors.

Exit codes: 0 on success, 2 with a one-line message on bad input (never a traceback for
a user error), 130 when interrupted. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from ..errors import UserInputError

PROG = "napari-latent"
EXIT_USAGE = 2

Command = Callable[[argparse.Namespace], int]


class CliError(UserInputError):
    """A bad command-line argument found after parsing."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(EXIT_USAGE)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text}")
    return value




def parse_settings(pairs: list[str] | None) -> dict[str, Any]:
    """``--set key=value`` pairs to model settings (numbers, booleans and strings)."""
    settings: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--set expects KEY=VALUE, got {pair!r}")
        value: Any = text.strip()
        for convert in (int, float):
            try:
                value = convert(text)
                break
            except ValueError:
                continue
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        settings[key.strip().replace("-", "_")] = value
    return settings


def is_main_process() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


def add_run_options(parser: argparse.ArgumentParser, device: str = "auto") -> None:
    """Add the ``--device`` and ``--quiet`` options that every long-running command takes."""
    parser.add_argument("--device", default=device, help=f"auto, cpu, cuda, cuda:N or mps (default {device})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
