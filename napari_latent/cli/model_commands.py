"""Commands on models: ``train``, ``evaluate`` and ``train-encoder``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..settings import Setting, settings_of_dataclass
from .cache_commands import add_cache_options, cache_from_args
from .common import (
    PROG,
    CliError,
    add_run_options,
    is_main_process,
    non_negative_int,
    parse_settings,
    positive_float,
    positive_int,
)

if TYPE_CHECKING:
    from ..training.settings import TrainSettings
    from ..volumes.slicing import SliceSpec

#: The DATA argument's help.
DATA_HELP = ("a volume, a folder of volumes (searched recursively; any format a reader opens, DICOM series "
             "folders included; an optional cohort.csv), or a BIDS root")


def cmd_train(args: argparse.Namespace) -> int:
    """Train a generative model on a data set."""
    from ..models.checkpoint import read_checkpoint, save_checkpoint
    from ..training import TrainSettings, train_model
    from ..volumes.slicing import SliceSpec
    from ..volumes.windows import parse_window

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise CliError(f"{out}: --out must end in .safetensors")
    if out.exists() and not args.resume and not args.overwrite:
        raise CliError(f"{out}: exists (use --resume to continue that run, or --overwrite to replace it)")
    if args.no_amp and args.precision not in (None, "fp32"):
        raise CliError(f"--no-amp means --precision fp32; it contradicts --precision {args.precision}")
    if args.preset and args.resume:
        raise CliError("--preset sets up a new run; --resume continues with the checkpoint's settings")
    from ..training.presets import training_preset

    preset = training_preset(args.model, args.preset, args.size) if args.preset else None
    explicit = _explicit_run_settings(args)
    if preset is not None:
        explicit = {**preset.train, **explicit}  # typed options win
    settings = TrainSettings(**explicit, device=args.device, compile=args.compile,
                             checkpoint_every=args.checkpoint_every, precision="fp32" if args.no_amp else
                             (args.precision or "auto"), tensorboard=args.tensorboard, log_every=args.log_every,
                             workers=args.workers, time_limit=args.time_limit)
    settings.validate()
    model_settings = parse_settings(args.set, model_setting_declarations(args.model), f"model {args.model!r}")
    for name in ("latent_dim", "beta"):
        if getattr(args, name) is not None:
            model_settings[name] = getattr(args, name)
    if preset is not None:
        model_settings = {**preset.model, **model_settings}  # typed --set, --latent-dim and --beta win
        if is_main_process():
            print(f"preset {preset.name} for {preset.family} at {preset.image_size} px: {preset.summary}",
                  file=sys.stderr)
    model_settings["image_size"] = args.size
    window_name, window_values = parse_window(args.window) if args.window is not None else (None, None)
    if args.resume:
        spec = None  # the checkpoint's
        if out.is_file():
            saved = read_checkpoint(out, device="cpu", with_state=False)
            if args.window is not None:
                _check_resumed_window(out, saved.slice_spec, window_values)
            settings = _resumed_settings(settings, saved.training.get("settings"), args, explicit)
    else:
        spec = SliceSpec(plane=args.plane, size=args.size, fixed_window=window_values, window_name=window_name)
    from ..volumes.cohort import load_cohort

    data = load_cohort(args.data, bids_suffix=args.bids_suffix)
    cache = cache_from_args(args)
    try:
        result = train_model(data, args.model, out=out, settings=settings, spec=spec, resume=args.resume,
                             progress=True if (is_main_process() and not args.quiet) else None, cache=cache,
                             **({} if args.resume else model_settings))
    finally:
        cache.close()
    if not is_main_process():
        return 0
    if args.compact and result.path is not None:
        checkpoint = read_checkpoint(result.path, device="cpu", with_state=False)
        save_checkpoint(result.path, checkpoint.model, checkpoint.slice_spec, checkpoint.training,
                        checkpoint.extras, state=None, half_precision=True)
    numbers = ", ".join(f"{k} {v:.4g}" for k, v in result.final_metrics.items())
    state = "stopped early" if result.stopped else "time limit reached" if result.time_limited else "done"
    print(f"{state}: {result.epochs_completed} epochs, {result.steps} steps; saved {result.path}"
          + (f" ({numbers})" if numbers else ""))
    return 0


#: The ``train`` options that set what a run computes (option, and what it is), by TrainSettings
#: field: a resumed run keeps its checkpoint's values and says so when one of them is typed.
RUN_OPTIONS = {"epochs": ("--epochs", "epochs"), "batch_size": ("--batch-size", "batch size"),
               "lr": ("--lr", "learning rate"), "seed": ("--seed", "seed"),
               "val_fraction": ("--val-fraction", "validation fraction"),
               "augment_rotation": ("--rotation", "rotation"), "augment_scale": ("--scale", "scale")}


def _explicit_run_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The run options typed on the command line (those left out are None), by TrainSettings field."""
    given = {name: getattr(args, option[2:].replace("-", "_")) for name, (option, _) in RUN_OPTIONS.items()}
    if args.no_augment:
        given.update(augment_rotation=0.0, augment_scale=0.0)
    return {name: value for name, value in given.items() if value is not None}


def _resumed_settings(settings: TrainSettings, saved: dict[str, Any] | None, args: argparse.Namespace,
                      explicit: dict[str, Any]) -> TrainSettings:
    """The settings a resumed run uses; one warning line on stderr per typed option it ignores."""
    from ..training.settings import TrainSettings, resume_settings

    if not saved:
        return settings  # no settings to keep: the library refuses the checkpoint
    merged, ignored = resume_settings(settings, TrainSettings.from_json(saved), explicit=explicit)
    if is_main_process():
        for item in ignored:
            option, label = RUN_OPTIONS[item.name]
            typed = "--no-augment" if args.no_augment and item.name.startswith("augment_") else f"{option} {item.given}"
            if item.name == "epochs":
                kept = f"already trains for {item.kept} epochs (--epochs can only raise them)"
            else:
                value = "the model's default" if item.kept is None else item.kept
                kept = f"keeps its {label} ({value})"
            sys.stderr.write(f"{PROG} train: warning: {typed} is ignored on --resume: the run {kept}\n")
    return merged


def _check_resumed_window(out: Path, spec: SliceSpec | None, values: tuple[float, float] | None) -> None:
    """Refuse a ``--window`` that differs from the one the resumed run was trained with."""
    from ..volumes.slicing import SliceSpec

    spec = spec or SliceSpec()
    if spec.fixed_window != values:
        raise CliError(f"{out}: the run was trained with --window {spec.window_text}; --resume keeps it "
                       "(leave out --window, or train a new model)")


def model_setting_declarations(name: str) -> dict[str, Setting]:
    """The settings ``--set`` may give a model family: its config's fields, less the derived ones."""
    from ..models.base import model_class

    config = model_class(name).config_class
    return settings_of_dataclass(config, skip=config.derived)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Reconstruction and sample metrics of a model on a data set."""
    from .._atomic import write_json_atomic
    from ..analysis.evaluation import evaluate_model
    from ..models.checkpoint import load_model

    model = load_model(args.model, device=args.device)
    extractor = None
    if args.inception:
        from ..analysis.inception import InceptionFeatures

        extractor = InceptionFeatures(args.inception, device=model.device)
    cache = cache_from_args(args)
    try:
        report = evaluate_model(model, args.data, sample_count=args.samples, extractor=extractor,
                                progress=None if args.quiet else True, cache=cache)
    finally:
        cache.close()
    if args.json:
        write_json_atomic(args.json, report)
    width = max(len(k) for k in report)
    for key, value in report.items():
        if isinstance(value, float):
            value = f"{value:.5g}"
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value[:8]) + (" ..." if len(value) > 8 else "")
        print(f"{key:<{width}}  {value}")
    from ..analysis.trust import reconstruction_warnings
    from .latent_commands import print_warnings

    if model.has_encoder:  # PSNR < 20 dB or SSIM < 0.6 on these slices: one warning line each, on stderr
        print_warnings(reconstruction_warnings(model, report))
    return 0


def cmd_train_encoder(args: argparse.Namespace) -> int:
    """Train the inversion encoder of a model and store it in the model file."""
    from ..models.checkpoint import load_model
    from ..training.encoder import store_inversion_encoder, train_encoder

    if args.model == "demo":
        raise CliError("the bundled demo model cannot be changed; copy a model file and train its encoder")
    model = load_model(args.model, device=args.device)
    result = train_encoder(model, space=args.space, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                           seed=args.seed, progress=None if args.quiet else True)
    store_inversion_encoder(args.model, result)
    print(f"inversion encoder for space {result.space} trained for {result.steps} steps (code error "
          f"{result.code_error:.4g}, image MSE {result.image_mse:.4g}); stored in {args.model}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands."""
    from ..models.base import SUPPORTED_IMAGE_SIZES, trainable_model_names
    from ..training.settings import PRECISIONS
    from ..volumes.slicing import PLANES
    from ..volumes.windows import PRESETS as WINDOW_PRESETS

    p = sub.add_parser("train", help="train a generative model on slices of volumes",
                       description="Train a generative model on 2D slices of volumes. DATA is a volume file "
                       "or a folder of them with an optional cohort.csv. Validation subjects are held out by subject. "
                       "Runs under 'torchrun --nproc_per_node N' train with DistributedDataParallel.")
    p.add_argument("data", metavar="DATA", help=DATA_HELP)
    p.add_argument("--bids-suffix", default="T1w", metavar="SUFFIX",
                   help="the suffix of a BIDS dataset's volumes (default T1w)")
    p.add_argument("--model", required=True, metavar="NAME",
                   help=f"model family: {', '.join(trainable_model_names())} (and any a plugin registers)")
    p.add_argument("--out", required=True, metavar="MODEL.safetensors", help="checkpoint to write (and resume)")
    p.add_argument("--preset", choices=("fast", "quality"), default=None,
                   help="a training recipe for the model at --size 64 or 128: fast (a first model in minutes) or "
                   "quality (about 15 minutes on 2 cores for 40 volumes at 128 px); typed options win; "
                   "see docs/training.md")
    p.add_argument("--epochs", type=positive_int, default=None, help="passes over the data (default 20)")
    p.add_argument("--time-limit", type=positive_float, default=None, metavar="MINUTES",
                   help="a wall-clock budget for the training steps: when it is spent, the epoch in progress ends "
                   "early, is validated and saved, and the run ends (with --epochs as the most it trains)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="images per step (default 32)")
    p.add_argument("--lr", type=positive_float, default=None, help="learning rate (default: the model's)")
    p.add_argument("--size", type=int, choices=SUPPORTED_IMAGE_SIZES, default=64, help="image size (default 64)")
    p.add_argument("--plane", choices=PLANES, default="axial", help="slice plane (default axial)")
    p.add_argument("--window", default=None, metavar="LOW:HIGH|PRESET",
                   help="intensity window mapped to [-1, 1]: 'auto' (default: per-volume percentiles, for MR), "
                   f"LOW:HIGH in the volumes' units (CT: Hounsfield units, e.g. -1000:400) or a CT preset "
                   f"({', '.join(WINDOW_PRESETS)}), the same for every subject")
    p.add_argument("--latent-dim", type=positive_int, default=None, help="latent dimension (default 32)")
    p.add_argument("--beta", type=positive_float, default=None, help="KL weight of VAE-type models (default 1)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any other model setting, e.g. --set margin=8 --set codebook_size=512")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    p.add_argument("--val-fraction", type=float, default=None, help="fraction of subjects held out (default 0.2)")
    p.add_argument("--rotation", type=float, default=None, help="augmentation: max rotation in degrees (default 5)")
    p.add_argument("--scale", type=float, default=None, help="augmentation: max relative scale change (default 0.05)")
    p.add_argument("--no-augment", action="store_true", help="no augmentation")
    p.add_argument("--checkpoint-every", type=positive_int, default=500, help="steps between checkpoints")
    p.add_argument("--workers", type=non_negative_int, default=None, metavar="N",
                   help="DataLoader worker processes reading batches (per process under torchrun; default: 0 on "
                   "the CPU, up to 4 on CUDA)")
    add_cache_options(p)
    p.add_argument("--resume", action="store_true",
                   help="continue the run stored in --out (with as many processes; its batch size, learning "
                   "rate, seed, split and augmentation are kept, and a different value given is ignored with a "
                   "warning; --epochs can raise its epochs)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="auto (default: bf16 autocast on GPUs with native bfloat16, else fp16 with a loss scaler "
                   "per optimiser, or fp32 for models that refuse fp16; fp32 on the CPU and MPS), bf16 (CUDA, or "
                   "the CPU), fp16 (CUDA) or fp32")
    p.add_argument("--no-amp", action="store_true", help="the same as --precision fp32")
    p.add_argument("--tensorboard", metavar="DIR", default=None,
                   help="write TensorBoard logs to DIR: losses, learning rates, images/s, validation metrics and "
                   "preview images (needs the tensorboard package; watch with: tensorboard --logdir DIR)")
    p.add_argument("--log-every", type=positive_int, default=10, metavar="STEPS",
                   help="steps between TensorBoard loss points (default 10)")
    p.add_argument("--compact", action="store_true",
                   help="at the end, store float16 weights without optimiser state (smaller; cannot be resumed)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="reconstruction and sample metrics of a model",
                       description="MSE, PSNR, SSIM and MS-SSIM of reconstructions of the validation subjects "
                       "(all subjects when DATA is not the training data), and the Frechet distance between "
                       "generated and real slices.")
    p.add_argument("model", metavar="MODEL", help="a .safetensors model file, or 'demo'")
    p.add_argument("data", metavar="DATA", help=DATA_HELP)
    p.add_argument("--json", metavar="OUT", help="also write the metrics as JSON")
    p.add_argument("--samples", type=positive_int, default=None,
                   help="generated images for the Frechet distance (default: as many as real slices)")
    p.add_argument("--inception", metavar="WEIGHTS.safetensors", default=None,
                   help="local InceptionV3 weights (pytorch-fid's, as safetensors): the Frechet distance is "
                   "then the FID; without it, a fixed random-conv extractor reported as FD-randconv64")
    add_cache_options(p)
    add_run_options(p)
    p.set_defaults(func=cmd_evaluate)


    p = sub.add_parser("train-encoder", help="train a GAN's inversion encoder on its own samples",
                       description="Train an encoder that predicts a model's codes from images it generates, and "
                       "store it in the model file; inversion then starts from its prediction (method hybrid).")
    p.add_argument("model", metavar="MODEL", help="a .safetensors model file (changed in place, atomically)")
    p.add_argument("--space", default=None, help="latent space to predict (default: w for StyleGAN, else z)")
    p.add_argument("--steps", type=positive_int, default=2000, help="training steps (default 2000)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="samples per step (default 32)")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="learning rate (default 0.001)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_run_options(p)
    p.set_defaults(func=cmd_train_encoder)
