"""``napari-latent import``: convert a model trained elsewhere into a napari-latent checkpoint."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from .common import CliError, positive_int

#: CLI flags and the importer options they set (an importer refuses options it does not have).
IMPORT_OPTIONS = ("config", "network", "grey", "class_index", "truncation_psi", "image_size", "intensity_range")


def _checked_output(source: Path, out: str) -> Path:
    path = Path(out)
    if path.suffix.lower() != ".safetensors":
        raise CliError(f"{path}: the output must be a .safetensors file (napari-latent's checkpoint format)")
    if path.exists() and path.is_dir():
        raise CliError(f"{path}: is a folder, not a file")
    if path.exists() and source.exists() and path.resolve() == source.resolve():
        raise CliError(f"{path}: the output would overwrite the file being imported")
    if not path.parent.exists():
        raise CliError(f"{path.parent}: no such folder")
    return path


def cmd_import(args: argparse.Namespace) -> int:
    """Read a foreign model file, check the conversion, write our checkpoint atomically."""
    from ..models.checkpoint import load_model, save_checkpoint
    from ..models.importers import check_same_outputs, import_model

    source = Path(args.source)
    out = _checked_output(source, args.out)
    options: dict[str, Any] = {name: getattr(args, name) for name in IMPORT_OPTIONS}
    model = import_model(source, args.format, **options)
    temporary = out.with_name(f".{out.name}.importing-{os.getpid()}.safetensors")
    try:
        save_checkpoint(temporary, model, slice_spec=model.slice_spec, training=model.training_info)
        check_same_outputs(model, load_model(temporary, device="cpu"))
        os.replace(temporary, out)
    finally:
        temporary.unlink(missing_ok=True)
    facts = model.describe()
    dims = ", ".join(f"{space} {dim}" for space, dim in facts["latent_dims"].items())
    encoder = "with an encoder" if model.has_encoder else "no encoder"
    print(f"imported {source.name} ({model.training_info.get('imported', {}).get('format', args.format)}) as a "
          f"{model.name!r} model: {model.image_size} px, latent spaces {dims}, {encoder}, "
          f"{facts['parameters']:,} parameters")
    print(f"wrote {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``import`` command."""
    from ..models.importers import IMPORTERS

    formats = "; ".join(f"{name}: {importer.description}" for name, importer in IMPORTERS.items())
    p = sub.add_parser("import", help="convert a model trained elsewhere (StyleGAN2-ADA, MONAI) into a checkpoint",
                       description="Read a model file written by another program, without executing anything "
                       "in it, and write it as a napari-latent checkpoint that every command, napari and "
                       f"scripts open. Formats: {formats or 'none installed'}.")
    p.add_argument("source", metavar="SOURCE", help="the model file (e.g. network-snapshot-000200.pkl, model.pt)")
    p.add_argument("--out", required=True, metavar="MODEL.safetensors", help="the checkpoint to write")
    p.add_argument("--format", default=None, metavar="NAME",
                   help="the importer to use (default: found from the file)")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="MONAI: the network's constructor arguments (JSON) or a MONAI bundle config")
    p.add_argument("--network", default=None, metavar="NAME",
                   help="StyleGAN2-ADA: G_ema (default) or G; MONAI: the network's key in a bundle config")
    p.add_argument("--grey", default=None, metavar="MODE",
                   help="StyleGAN2-ADA with 3 channels: luminance (default) or one channel (red, green, blue)")
    p.add_argument("--class-index", type=int, default=None, metavar="N",
                   help="StyleGAN2-ADA: the class a conditional generator (c_dim > 0) generates")
    p.add_argument("--truncation-psi", type=float, default=None, metavar="PSI",
                   help="StyleGAN2-ADA: truncation when decoding from z (default 1: none)")
    p.add_argument("--image-size", type=positive_int, default=None, metavar="S",
                   help="MONAI: the slice size the network was trained on")
    p.add_argument("--intensity-range", default=None, metavar="LOW,HIGH",
                   help="MONAI: the intensity range the network was trained on (e.g. 0,1 or -1,1)")
    p.set_defaults(func=cmd_import)
