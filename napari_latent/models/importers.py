"""Model importers: turn a model trained elsewhere into one of ours.

An importer reads a file written by another program (an official StyleGAN2-ADA snapshot,
a MONAI autoencoder's weights) into a :class:`~napari_latent.models.base.GenerativeModel`
of a registered family, with its weights loaded. From then on the model is like any other:
:func:`napari_latent.models.checkpoint.save_checkpoint` converts it into our checkpoint
format (``napari-latent import``), and :func:`~napari_latent.models.checkpoint.load_model`
opens an importable file directly.

Importers are an extension point like the model families: the registry :data:`IMPORTERS`
is filled from the ``napari_latent.importers`` entry points, our built-ins included. A
plugin module registers one with :func:`register_importer`::

    register_importer(ModelImporter(
        name="mynet", description="MyNet checkpoints (.ckpt)", suffixes=(".ckpt",),
        sniff=lambda path: path.read_bytes()[:4] == b"MYNT", read=read_mynet))

An importer never executes code from the file it reads (no ``pickle.load``, no
``torch.load`` without ``weights_only=True``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, UserInputError
from ..registry import Registry
from .base import GenerativeModel

#: Modules (in this package) that register the built-in importers; declared as
#: ``napari_latent.importers`` entry points in ``setup.cfg``.
BUILTIN_IMPORTER_MODULES: tuple[str, ...] = ("stylegan2_ada.importer", "monai_autoencoders.importer")


class MissingImportOptionError(CheckpointError):
    """An importer read the file's kind but needs options to read it (a MONAI state dict needs its ``config``).

    :func:`~napari_latent.models.checkpoint.load_model`, which imports with default options,
    then keeps its own error (not our checkpoint) and appends :attr:`hint`.

    Parameters
    ----------
    message : str
        The error (one line).
    hint : str
        How to import such a file (one line, for the hint).
    """

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class ModelImporter:
    """One way of reading a foreign model file.

    Attributes
    ----------
    name : str
        The name users pass as ``--format`` (``"stylegan2-ada"``, ``"monai"``).
    description : str
        One line for ``--help`` and messages.
    suffixes : tuple of str
        File suffixes it reads (lower case, with the dot; ``".pkl"``).
    sniff : callable
        ``sniff(path) -> bool``: whether the file is one this importer reads, from a cheap
        look at its content (never by executing it).
    read : callable
        ``read(path, **options) -> GenerativeModel``: the model in evaluation mode on the
        CPU, weights loaded. Raises :class:`~napari_latent.errors.UserInputError` (one line)
        for anything wrong with the file or the options.
    options : dict of str to str
        The keyword options ``read`` accepts, with one line of help each.
    """

    name: str
    description: str
    suffixes: tuple[str, ...]
    sniff: Callable[[Path], bool]
    read: Callable[..., GenerativeModel]
    options: dict[str, str] = field(default_factory=dict)


#: The importers by name.
IMPORTERS: Registry[ModelImporter] = Registry(
    "model importer", "napari_latent.importers", tuple(f"{__package__}.{m}" for m in BUILTIN_IMPORTER_MODULES))


def register_importer(importer: ModelImporter) -> ModelImporter:
    """Make ``importer`` available to :func:`import_model`, ``load_model`` and ``napari-latent import``."""
    return IMPORTERS.add(importer.name, importer)


def importer_names() -> list[str]:
    """Names of the registered importers."""
    return IMPORTERS.names()


def find_importer(path: str | os.PathLike[str], name: str | None = None) -> ModelImporter:
    """The importer for ``path``: the one named ``name``, or the first whose ``sniff`` accepts the file.

    Raises
    ------
    CheckpointError
        When no importer reads the file (the message lists the formats there are).
    UserInputError
        For an unknown importer name.
    """
    path = Path(path)
    if name:
        return IMPORTERS.get(name)
    for _, importer in IMPORTERS.items():
        if path.suffix.lower() in importer.suffixes and _sniffs(importer, path):
            return importer
    for _, importer in IMPORTERS.items():
        if path.suffix.lower() not in importer.suffixes and _sniffs(importer, path):
            return importer
    formats = "; ".join(f"{i.name}: {i.description}" for _, i in IMPORTERS.items()) or "none installed"
    raise CheckpointError(f"{path}: not a napari-latent model and not a format that can be imported ({formats})")


def _sniffs(importer: ModelImporter, path: Path) -> bool:
    try:
        return bool(importer.sniff(path))
    except Exception:  # a sniff that fails on a file it does not know means "not mine"
        return False


def import_model(path: str | os.PathLike[str], format: str | None = None, **options: Any) -> GenerativeModel:
    """Read a model written by another program.

    Parameters
    ----------
    path : path-like
        The foreign model file (a StyleGAN2-ADA ``network-snapshot-*.pkl``, a MONAI
        state dict, ...).
    format : str, optional
        The importer's name; found from the file when omitted.
    **options
        The importer's options (see ``ModelImporter.options``); unknown ones are an error.

    Returns
    -------
    GenerativeModel
        In evaluation mode on the CPU, with ``source_path`` set and ``training_info["imported"]``
        describing where it came from.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file")
    importer = find_importer(path, format)
    unknown = sorted(k for k, v in options.items() if v is not None and k not in importer.options)
    if unknown:
        accepted = ", ".join(sorted(importer.options)) or "none"
        raise UserInputError(f"the {importer.name} importer has no option(s) {', '.join(unknown)}; "
                             f"it accepts {accepted}")
    model = importer.read(path, **{k: v for k, v in options.items() if v is not None})
    model.eval()
    model.source_path = path
    info = dict(model.training_info or {})
    info.setdefault("imported", {"format": importer.name, "file": path.name,
                                 **{k: v for k, v in options.items() if v is not None and _is_plain(v)}})
    model.training_info = info
    return model


def _is_plain(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def check_same_outputs(imported: GenerativeModel, converted: GenerativeModel, tolerance: float = 1e-5,
                       samples: int = 2, seed: int = 0) -> float:
    """Check that a converted checkpoint decodes (and encodes) like the model it was made from.

    Parameters
    ----------
    imported, converted : GenerativeModel
        The model as read by its importer, and the same model loaded back from our checkpoint.
    tolerance : float
        Largest allowed absolute difference of the outputs (images in [-1, 1]).
    samples : int
        Prior samples decoded (and their images encoded again) by both.
    seed : int

    Returns
    -------
    float
        The largest absolute difference found.

    Raises
    ------
    CheckpointError
        When the outputs differ by more than ``tolerance`` or the models do not describe
        themselves the same way.
    """
    import torch

    if converted.name != imported.name or converted.latent_dim() != imported.latent_dim():
        raise CheckpointError(f"the converted model ({converted.name!r}) does not describe itself like the imported "
                              f"one ({imported.name!r})")
    imported, converted = imported.to("cpu").eval(), converted.to("cpu").eval()
    with torch.no_grad():
        codes = imported.sample_latent(samples, torch.Generator().manual_seed(int(seed)))
        first, second = imported.decode(codes), converted.decode(codes)
        worst = float((first - second).abs().max())
        if imported.has_encoder:
            worst = max(worst, float((imported.encode(first) - converted.encode(first)).abs().max()))
    if not worst <= tolerance:
        raise CheckpointError(f"the converted model's outputs differ from the imported model's by {worst:.3g} "
                              f"(more than {tolerance:g}); nothing was written")
    return worst
