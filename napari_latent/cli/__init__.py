"""The ``napari-latent`` command: a thin shell over the library's public functions.

Exit codes: 0 on success, 2 with a one-line message on bad input (never a traceback for
a user error), 130 when interrupted. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from .. import __version__
from ..errors import UserInputError
from . import (
    analysis_commands,
    cache_commands,
    data_commands,
    import_commands,
    latent_commands,
    model_commands,
    view_commands,
)
from .common import EXIT_USAGE, PROG, CliError, _Parser

__all__ = ["EXIT_USAGE", "PROG", "CliError", "build_parser", "main", "run"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``napari-latent`` command."""
    parser = _Parser(prog=PROG, description="Interpret the latent spaces of generative models of medical "
                     "images: train or load models on slices of 3D volumes, invert volumes, discover latent "
                     "directions, traverse volumes along them and decompose the change.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in (data_commands, model_commands, import_commands, latent_commands, analysis_commands,
                   view_commands, cache_commands):
        module.register(sub)
    return parser


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


#: Options whose value may start with a minus sign (negative alphas: ``--alphas -3:3:7``; a
#: window in Hounsfield units: ``--window -1000:400``).
SIGNED_VALUE_OPTIONS = ("--alphas", "--window")


def join_signed_values(argv: Sequence[str]) -> list[str]:
    """``["--alphas", "-3:3:7"]`` becomes ``["--alphas=-3:3:7"]``, which argparse reads as a value.

    argparse takes a word that starts with ``-`` and is not a plain negative number for an
    option, so a range of alphas that starts below zero would otherwise be refused.
    """
    out: list[str] = []
    words = list(argv)
    i = 0
    while i < len(words):
        word = words[i]
        value = words[i + 1] if i + 1 < len(words) else ""
        if word in SIGNED_VALUE_OPTIONS and value[:1] == "-" and (value[1:2].isdigit() or value[1:2] == "."):
            out.append(f"{word}={value}")
            i += 2
            continue
        out.append(word)
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(join_signed_values(sys.argv[1:] if argv is None else argv))
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except UserInputError as exc:
        sys.stderr.write(f"{PROG} {args.command}: error: {_one_line(str(exc))}\n")
        return EXIT_USAGE
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        sys.stderr.write(f"{PROG} {args.command}: error: {where}{_one_line(exc.strerror or str(exc))}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG} {args.command}: interrupted\n")
        return 130


def run() -> NoReturn:
    """Console-script entry point."""
    raise SystemExit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
