"""``napari-latent view [FILES...]``: open napari with volumes and results.

Every file is identified and loaded first (see :mod:`napari_latent.analysis.result_files`),
so a missing or broken file ends the command with one line and exit code 2 before any
window opens. Then :func:`napari_latent.gui.show` opens the viewer with the plugin's
widgets docked.

The command line and the GUI are one layer of the import-linter contract that must not
import each other (and the CLI must stay importable without napari), so ``show`` is looked
up by name at run time with :mod:`importlib`.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from .common import CliError

#: Which ``show()`` argument each kind of file goes to.
_SHOW_ARGUMENT = {"volume": "volume", "eigen_map": "volume", "traversal": "traversal", "eigen": "eigen",
                  "model": "model", "codes": "codes", "directions": "directions"}


def load_view_files(paths: list[str], device: str = "auto") -> dict[str, Any]:
    """Identify and load the files of ``view``: keyword arguments for ``show()``.

    Raises
    ------
    UserInputError
        The first file that is missing, broken or not one napari-latent opens; more than one
        model, codes or directions file.
    """
    from ..analysis.result_files import load_result

    arguments: dict[str, Any] = {"volume": [], "traversal": [], "eigen": []}
    for path in paths:
        found, obj = load_result(path, device=device)
        key = _SHOW_ARGUMENT[found.kind]
        if key in ("volume", "traversal", "eigen"):
            arguments[key].append(obj)
        elif key in arguments:
            raise CliError(f"{path}: only one {found.kind} file can be opened at a time "
                           f"(also given: {arguments[key + '_path']})")
        else:
            arguments[key] = obj
            arguments[key + "_path"] = path
    return {k: v for k, v in arguments.items() if not k.endswith("_path") and v != []}


def gui_show() -> Any:
    """``napari_latent.gui.show`` imported at run time (None when napari is not installed)."""
    try:
        return importlib.import_module("napari_latent.gui.launcher").show
    except ImportError:
        return None


def cmd_view(args: argparse.Namespace) -> int:
    """Open napari with the given volumes and results."""
    arguments = load_view_files(list(args.files), device=args.device)
    show = gui_show()
    if show is None:
        raise CliError("napari is not installed; install napari-latent with its GUI (pip install napari[pyqt5])")
    show(**arguments, widgets=not args.no_widgets)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``view`` command."""
    p = sub.add_parser("view", help="open napari with volumes and napari-latent results",
                       description="Open napari with NIfTI volumes, traversals (a .zarr traversal store, shown "
                       "lazily, or a 4D NIfTI + .json sidecar), eigen result folders and a model, codes and "
                       "directions (.safetensors), with the napari-latent widgets docked. Files are checked before "
                       "the window opens.")
    p.add_argument("files", metavar="FILES", nargs="*", help="volumes, result files or eigen folders")
    p.add_argument("--device", default="auto", help="device for a model file (auto, cpu, cuda, ...)")
    p.add_argument("--no-widgets", action="store_true", help="do not dock the napari-latent widgets")
    p.set_defaults(func=cmd_view)
