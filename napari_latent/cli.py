"""The ``napari-latent`` command: a thin shell over the library's public functions.

Exit codes: 0 on success, 2 with a one-line message on bad input (never a traceback for
a user error), 130 when interrupted. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import __version__
from .errors import UserInputError

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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text}")
    return value


# -- commands ----------------------------------------------------------------------------

def cmd_phantoms(args: argparse.Namespace) -> int:
    """Write a synthetic brain-phantom cohort."""
    from .volumes.phantoms import make_phantom_cohort

    out = Path(args.out_dir)
    if out.exists() and not out.is_dir():
        raise CliError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise CliError(f"{out}: the folder is not empty (use --overwrite to write into it)")
    progress = None
    if not args.quiet:
        from tqdm.auto import tqdm

        bar = tqdm(total=args.subjects, desc="phantoms", file=sys.stderr, dynamic_ncols=True)

        def progress(done: int, total: int) -> None:
            bar.n = done
            bar.refresh()

    try:
        info = make_phantom_cohort(out, n_subjects=args.subjects, size=args.size, seed=args.seed,
                                   spacing=args.spacing, disease_fraction=args.disease_fraction,
                                   progress=progress)
    finally:
        if progress is not None:
            bar.close()
    groups = {g: info.groups.count(g) for g in sorted(set(info.groups))}
    summary = ", ".join(f"{n} {g}" for g, n in groups.items())
    print(f"wrote {len(info.paths)} volumes ({summary}) and {info.csv_path.name} to {info.folder}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Describe a volume."""
    import numpy as np

    from .volumes import foreground_mask, open_volume

    volume = open_volume(args.volume, index=args.index)
    mask = foreground_mask(volume)
    facts: dict[str, Any] = {
        "path": str(volume.path),
        "shape": list(volume.shape),
        "spacing_mm": [round(s, 4) for s in volume.spacing],
        "orientation": "".join(volume.orientation),
        "oblique": volume.grid.is_oblique,
        "intensity_min": float(volume.data.min()),
        "intensity_max": float(volume.data.max()),
        "intensity_p1_p99": [float(v) for v in np.percentile(volume.data[mask], [1, 99])],
        "foreground_fraction": round(float(mask.mean()), 4),
        "dtype_on_disk": volume.header.get("dtype"),
        "frames": volume.header.get("frames"),
        "frame": volume.header.get("frame"),
        "nonfinite_voxels": volume.header.get("nonfinite_voxels"),
    }
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    width = max(len(k) for k in facts)
    for key, value in facts.items():
        if isinstance(value, float):
            value = f"{value:.6g}"
        elif isinstance(value, list):
            value = " x ".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in value)
        print(f"{key:<{width}}  {value}")
    return 0


def _parse_settings(pairs: list[str] | None) -> dict[str, Any]:
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


def _is_main_process() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train a generative model on a data set."""
    from .models.checkpoint import read_checkpoint, save_checkpoint
    from .training import TrainSettings, train_model
    from .volumes.slicing import SliceSpec

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise CliError(f"{out}: --out must end in .safetensors")
    if out.exists() and not args.resume and not args.overwrite:
        raise CliError(f"{out}: exists (use --resume to continue that run, or --overwrite to replace it)")
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                             val_fraction=args.val_fraction, device=args.device,
                             augment_rotation=0.0 if args.no_augment else args.rotation,
                             augment_scale=0.0 if args.no_augment else args.scale, compile=args.compile,
                             checkpoint_every=args.checkpoint_every, amp=not args.no_amp)
    settings.validate()
    model_settings = _parse_settings(args.set)
    for name in ("latent_dim", "beta"):
        if getattr(args, name) is not None:
            model_settings[name] = getattr(args, name)
    model_settings["image_size"] = args.size
    spec = None if args.resume else SliceSpec(plane=args.plane, size=args.size)
    result = train_model(args.data, args.model, out=out, settings=settings, spec=spec, resume=args.resume,
                         progress=True if (_is_main_process() and not args.quiet) else None,
                         **({} if args.resume else model_settings))
    if not _is_main_process():
        return 0
    if args.compact and result.path is not None:
        checkpoint = read_checkpoint(result.path, device="cpu", with_state=False)
        save_checkpoint(result.path, checkpoint.model, checkpoint.slice_spec, checkpoint.training,
                        checkpoint.extras, state=None, half_precision=True)
    numbers = ", ".join(f"{k} {v:.4g}" for k, v in result.final_metrics.items())
    state = "stopped early" if result.stopped else "done"
    print(f"{state}: {result.epochs_completed} epochs, {result.steps} steps; saved {result.path}"
          + (f" ({numbers})" if numbers else ""))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Reconstruction and sample metrics of a model on a data set."""
    from ._atomic import write_json_atomic
    from .analysis.evaluation import evaluate_model
    from .models.checkpoint import load_model

    model = load_model(args.model, device=args.device)
    report = evaluate_model(model, args.data, sample_count=args.samples, progress=None if args.quiet else True)
    if args.json:
        write_json_atomic(args.json, report)
    width = max(len(k) for k in report)
    for key, value in report.items():
        if isinstance(value, float):
            value = f"{value:.5g}"
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value[:8]) + (" ..." if len(value) > 8 else "")
        print(f"{key:<{width}}  {value}")
    return 0


def cmd_invert(args: argparse.Namespace) -> int:
    """Invert a volume into latent codes."""
    from .latent.inversion import InversionSettings, invert
    from .models.checkpoint import load_model
    from .volumes import open_volume, save_volume

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise CliError(f"{out}: --out must end in .safetensors")
    if args.reconstruction and not str(args.reconstruction).endswith((".nii", ".nii.gz")):
        raise CliError(f"{args.reconstruction}: --reconstruction must end in .nii or .nii.gz")
    model = load_model(args.model, device=args.device)
    volume = open_volume(args.volume, index=args.index)
    settings = InversionSettings(steps=args.steps, lr=args.lr) if args.lr else InversionSettings(steps=args.steps)
    codes = invert(model, volume, method=args.method, space=args.space, settings=settings,
                   progress=None if args.quiet else True)
    codes.save(out)
    summary = codes.summary()
    print(f"inverted {summary['slices']} {model.slice_spec.plane if model.slice_spec else 'axial'} slices of "
          f"{volume.name} into space {codes.space} with {codes.method}: mean MSE {summary['mean_mse']:.4g} "
          f"(max {summary['max_mse']:.4g}); codes saved to {out}")
    if args.reconstruction:
        reconstruction = codes.reconstruct(model)
        path = save_volume(reconstruction, args.reconstruction, like=volume)
        print(f"reconstruction on the source grid saved to {path}")
    return 0


def cmd_train_encoder(args: argparse.Namespace) -> int:
    """Train the inversion encoder of a model and store it in the model file."""
    from .models.checkpoint import load_model
    from .training.encoder import store_inversion_encoder, train_encoder

    if args.model == "demo":
        raise CliError("the bundled demo model cannot be changed; copy a model file and train its encoder")
    model = load_model(args.model, device=args.device)
    result = train_encoder(model, space=args.space, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                           seed=args.seed, progress=None if args.quiet else True)
    store_inversion_encoder(args.model, result)
    print(f"inversion encoder for space {result.space} trained for {result.steps} steps (code error "
          f"{result.code_error:.4g}, image MSE {result.image_mse:.4g}); stored in {args.model}")
    return 0


# -- parser --------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``napari-latent`` command."""
    parser = _Parser(prog=PROG, description="Interpret the latent spaces of generative models of medical "
                     "images: train or load models on slices of 3D volumes, invert volumes, discover latent "
                     "directions, traverse volumes along them and decompose the change.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("phantoms", help="write a synthetic brain-phantom cohort (the embedded default data)",
                       description="Write 3D T1-like brain phantoms of healthy and disease (MS-like) subjects "
                       "with known generating factors, and cohort.csv.")
    p.add_argument("out_dir", metavar="OUT_DIR", help="output folder (created)")
    p.add_argument("--subjects", type=_positive_int, default=20, help="number of subjects (default 20)")
    p.add_argument("--size", type=_positive_int, default=64, help="voxels per side (default 64)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default 0)")
    p.add_argument("--spacing", type=_positive_float, default=None,
                   help="voxel size in mm (default: 192 mm field of view / size)")
    p.add_argument("--disease-fraction", type=_fraction, default=0.5, help="fraction of disease subjects")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_phantoms)

    p = sub.add_parser("info", help="describe a NIfTI volume",
                       description="Print shape, spacing, orientation, intensity range and foreground fraction.")
    p.add_argument("volume", metavar="VOLUME", help="a .nii or .nii.gz file")
    p.add_argument("--index", type=int, default=None, help="frame of a 4D series")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)

    from .models.base import SUPPORTED_IMAGE_SIZES, model_names
    from .volumes.slicing import PLANES

    p = sub.add_parser("train", help="train a generative model on slices of volumes",
                       description="Train a generative model on 2D slices of NIfTI volumes. DATA is a NIfTI file "
                       "or a folder of them with an optional cohort.csv. Validation subjects are held out by subject. "
                       "Runs under 'torchrun --nproc_per_node N' train with DistributedDataParallel.")
    p.add_argument("data", metavar="DATA", help="a NIfTI file or a folder of them")
    p.add_argument("--model", required=True, choices=model_names(), help="model type")
    p.add_argument("--out", required=True, metavar="MODEL.safetensors", help="checkpoint to write (and resume)")
    p.add_argument("--epochs", type=_positive_int, default=20, help="passes over the data (default 20)")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="images per step (default 32)")
    p.add_argument("--lr", type=_positive_float, default=None, help="learning rate (default: the model's)")
    p.add_argument("--size", type=int, choices=SUPPORTED_IMAGE_SIZES, default=64, help="image size (default 64)")
    p.add_argument("--plane", choices=PLANES, default="axial", help="slice plane (default axial)")
    p.add_argument("--latent-dim", type=_positive_int, default=None, help="latent dimension (default 32)")
    p.add_argument("--beta", type=_positive_float, default=None, help="KL weight of VAE-type models (default 1)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any other model setting, e.g. --set margin=8 --set codebook_size=512")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="fraction of subjects held out (default 0.2)")
    p.add_argument("--rotation", type=float, default=5.0, help="augmentation: max rotation in degrees (default 5)")
    p.add_argument("--scale", type=float, default=0.05, help="augmentation: max relative scale change (default 0.05)")
    p.add_argument("--no-augment", action="store_true", help="no augmentation")
    p.add_argument("--checkpoint-every", type=_positive_int, default=500, help="steps between checkpoints")
    p.add_argument("--resume", action="store_true", help="continue the run stored in --out")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument("--compact", action="store_true",
                   help="at the end, store float16 weights without optimiser state (smaller; cannot be resumed)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="reconstruction and sample metrics of a model",
                       description="MSE, PSNR, SSIM and MS-SSIM of reconstructions of the validation subjects "
                       "(all subjects when DATA is not the training data), and the Frechet distance between "
                       "generated and real slices.")
    p.add_argument("model", metavar="MODEL", help="a .safetensors model file, or 'demo'")
    p.add_argument("data", metavar="DATA", help="a NIfTI file or a folder of them")
    p.add_argument("--json", metavar="OUT", help="also write the metrics as JSON")
    p.add_argument("--samples", type=_positive_int, default=None,
                   help="generated images for the Frechet distance (default: as many as real slices)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (default auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)

    from .latent.inversion import METHODS

    p = sub.add_parser("invert", help="invert a volume into latent codes",
                       description="Find one latent code per slice of a volume (any orientation is resliced to the "
                       "model's plane). Methods: encoder, optimize (all slices as one batch), hybrid (encoder start, "
                       "then optimize), auto.")
    p.add_argument("model", metavar="MODEL", help="a .safetensors model file, or 'demo'")
    p.add_argument("volume", metavar="VOLUME", help="a .nii or .nii.gz volume")
    p.add_argument("--out", required=True, metavar="CODES.safetensors", help="codes file to write")
    p.add_argument("--method", choices=METHODS, default="auto", help="inversion method (default auto)")
    p.add_argument("--steps", type=_positive_int, default=200, help="optimisation steps (default 200)")
    p.add_argument("--lr", type=_positive_float, default=None, help="peak learning rate (default 0.1 of the spread)")
    p.add_argument("--space", default=None, help="latent space: z, w or w+ (default: w for StyleGAN, else z)")
    p.add_argument("--index", type=int, default=None, help="frame of a 4D series")
    p.add_argument("--reconstruction", metavar="OUT.nii.gz", help="also write the reconstruction on the source grid")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (default auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_invert)

    p = sub.add_parser("train-encoder", help="train a GAN's inversion encoder on its own samples",
                       description="Train an encoder that predicts a model's codes from images it generates, and "
                       "store it in the model file; inversion then starts from its prediction (method hybrid).")
    p.add_argument("model", metavar="MODEL", help="a .safetensors model file (changed in place, atomically)")
    p.add_argument("--space", default=None, help="latent space to predict (default: w for StyleGAN, else z)")
    p.add_argument("--steps", type=_positive_int, default=2000, help="training steps (default 2000)")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="samples per step (default 32)")
    p.add_argument("--lr", type=_positive_float, default=1e-3, help="learning rate (default 0.001)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (default auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train_encoder)
    return parser


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
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
