"""Shared pieces of the command line: the parser class, argument types and errors.

Exit codes: 0 on success, 2 with a one-line message on bad input (never a traceback for
a user error), 130 when interrupted. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from ..errors import UserInputError
from ..settings import Setting, convert_settings

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


def _whole_number(text: str, smallest: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < smallest:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _whole_number(text, 1, "a positive number")


def non_negative_int(text: str) -> int:
    return _whole_number(text, 0, "0 or more")


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


def parse_pairs(pairs: list[str] | None) -> dict[str, str]:
    """``--set KEY=VALUE`` pairs as text by key (dashes in keys read as underscores)."""
    found: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--set expects KEY=VALUE, got {pair!r}")
        found[key.strip().replace("-", "_")] = text.strip()
    return found


def parse_settings(pairs: list[str] | None, declared: Mapping[str, Setting], owner: str) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs checked and converted against the declared settings.

    Parameters
    ----------
    pairs : list of str, optional
        The ``--set`` values.
    declared : mapping of str to Setting
        What the owner accepts.
    owner : str
        For messages (``"model 'vae'"``, ``"method 'sefa'"``).

    Raises
    ------
    UserInputError
        One line for a pair that is not ``KEY=VALUE``, an unknown key or a bad value.
    """
    return convert_settings(declared, parse_pairs(pairs), owner)


#: The VOLUME argument's help: every format a built-in reader opens.
VOLUME_HELP = ("a volume: NIfTI (.nii, .nii.gz), MGH/MGZ, NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd), a DICOM "
               "series folder (or FOLDER::SERIESUID); reader plugins add formats")


def add_volume_argument(parser: argparse.ArgumentParser, help: str = VOLUME_HELP) -> None:
    """The VOLUME positional argument and ``--series UID`` (for DICOM folders holding several series)."""
    parser.add_argument("volume", metavar="VOLUME", help=help)
    parser.add_argument("--series", metavar="UID", default=None,
                        help="the DICOM series to read when VOLUME is a folder holding several (the same as "
                        "VOLUME::UID; an error lists the folder's series)")


def volume_argument(args: argparse.Namespace) -> str:
    """The path to open for VOLUME and ``--series`` (``FOLDER::UID`` when a series is chosen)."""
    from pathlib import Path

    volume = str(args.volume)
    series = getattr(args, "series", None)
    if not series:
        return volume
    if "::" in volume:
        raise UserInputError(f"{volume}: give the series either as VOLUME::UID or with --series, not both")
    if not Path(volume).is_dir():
        raise UserInputError(f"{volume}: --series picks a series of a DICOM folder; this is not a folder")
    return f"{volume}::{series.strip()}"


def is_main_process() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


def add_run_options(parser: argparse.ArgumentParser, device: str = "auto") -> None:
    """Add the ``--device`` and ``--quiet`` options that every long-running command takes."""
    parser.add_argument("--device", default=device, help=f"auto, cpu, cuda, cuda:N or mps (default {device})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
