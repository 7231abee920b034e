"""Commands in latent space: ``invert`` and ``discover``."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Any

from .common import (
    VOLUME_HELP,
    CliError,
    add_run_options,
    add_volume_argument,
    positive_float,
    positive_int,
    volume_argument,
)
from .method_options import add_method_options, method_settings_from_args, methods_epilog


def print_warnings(warnings: list[Any]) -> None:
    """Print each trust warning (:mod:`napari_latent.analysis.trust`) as one ``warning: ...`` line on stderr."""
    from ..analysis.trust import format_warnings

    for line in format_warnings(warnings):
        print(line, file=sys.stderr)


def is_cohort_data(args: argparse.Namespace) -> bool:
    """Whether ``invert``'s DATA is a cohort (a folder of volumes, a BIDS root, a cohort.csv), not one volume."""
    from ..volumes.readers import readable

    data = Path(str(args.volume))
    return bool(args.labels) or data.suffix.lower() == ".csv" or (data.is_dir() and not readable(data))


def cmd_invert(args: argparse.Namespace) -> int:
    """Invert a volume (or every volume of a cohort) into latent codes."""
    if is_cohort_data(args):
        return _invert_cohort(args)
    from ..latent.inversion import InversionSettings, invert
    from ..models.checkpoint import load_model
    from ..volumes import open_volume, save_volume

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise CliError(f"{out}: --out must end in .safetensors")
    if args.reconstruction and not str(args.reconstruction).endswith((".nii", ".nii.gz")):
        raise CliError(f"{args.reconstruction}: --reconstruction must end in .nii or .nii.gz")
    for option, value in (("--open-volumes", args.open_volumes), ("--bids-suffix", args.bids_suffix)):
        if value is not None:
            raise CliError(f"{option} applies to a cohort DATA (a folder, a BIDS root or a cohort.csv), not to one "
                           "volume")
    model = load_model(args.model, device=args.device)
    volume = open_volume(volume_argument(args), index=args.index)
    settings = InversionSettings(steps=args.steps, batch_size=args.batch_size)
    if args.lr:
        settings.lr = args.lr
    codes = invert(model, volume, method=args.method, space=args.space, settings=settings,
                   progress=None if args.quiet else True)
    codes.save(out)
    summary = codes.summary()
    print(f"inverted {summary['slices']} {model.slice_spec.plane if model.slice_spec else 'axial'} slices of "
          f"{volume.name} into space {codes.space} with {codes.method}: mean MSE {summary['mean_mse']:.4g} "
          f"(max {summary['max_mse']:.4g}); codes saved to {out}")
    from ..analysis.trust import trust_warnings

    print_warnings(trust_warnings(model, codes=codes))
    if args.reconstruction:
        reconstruction = codes.reconstruct(model)
        path = save_volume(reconstruction, args.reconstruction, like=volume)
        print(f"reconstruction on the source grid saved to {path}")
    return 0


#: Summary rows printed before the rest of a long cohort is left to the index.
SHOWN_ROWS = 20


def _invert_cohort(args: argparse.Namespace) -> int:
    """``invert MODEL DATA --out DIR``: every volume of a cohort, sharded over torchrun's ranks."""
    from ..device import get_device
    from ..latent.batched_inversion import DEFAULT_OPEN_VOLUMES
    from ..latent.cohort_inversion import check_output_folder, iter_invert_cohort
    from ..latent.inversion import InversionSettings
    from ..models.checkpoint import load_model
    from ..progress import run_operation
    from ..training.distributed import distributed_context, distributed_device
    from ..volumes.cohort import load_cohort

    for option, value in (("--reconstruction", args.reconstruction), ("--index", args.index),
                          ("--series", args.series)):
        if value is not None:
            raise CliError(f"{option} applies to a single VOLUME, not to a cohort DATA")
    data, labels = Path(str(args.volume)), args.labels
    if data.suffix.lower() == ".csv" and not labels:
        if not data.is_file():
            raise CliError(f"{data}: no such cohort table")
        data, labels = data.parent, data
    cohort = load_cohort(data, labels, bids_suffix=args.bids_suffix or "T1w")  # DATA's own errors first
    out = Path(args.out)
    if out.suffix == ".safetensors":
        raise CliError(f"{out}: DATA is a cohort, so --out is a folder (one codes file per volume and index.json)")
    check_output_folder(out)
    settings = InversionSettings(steps=args.steps, batch_size=args.batch_size)
    if args.lr:
        settings.lr = args.lr
    device = distributed_device(get_device(args.device))
    context = distributed_context(device)
    try:
        model = load_model(args.model, device=device)
        operation = iter_invert_cohort(model, cohort, out, method=args.method, space=args.space, settings=settings,
                                       open_volumes=args.open_volumes or DEFAULT_OPEN_VOLUMES, context=context)
        result = run_operation(operation, None if args.quiet or not context.is_main else True)
    finally:
        context.close()
    if not context.is_main:
        return 0
    rows = result.table()
    print_table(rows[:SHOWN_ROWS])
    if len(rows) > SHOWN_ROWS:
        print(f"... and {len(rows) - SHOWN_ROWS} more volumes (see {result.index_path})")
    processes = f" by {context.world_size} processes" if context.is_distributed else ""
    print(f"inverted {len(rows)} volumes ({result.slices} {model.slice_spec.plane if model.slice_spec else 'axial'} "
          f"slices) into space {result.header['space']} with {result.header['method']}{processes}: mean MSE "
          f"{result.mean_mse:.4g}; codes in {out}, index {result.index_path}")
    return 0


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_table(rows: list[dict[str, Any]]) -> None:
    """Print dictionaries with the same keys as an aligned text table."""
    if not rows:
        return
    columns = list(rows[0])
    cells = [[_format(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def _factor_table(evaluation: Any) -> list[dict[str, Any]]:
    rows = []
    for k, factor in enumerate(evaluation.factors):
        best = evaluation.best[factor]
        rows.append({"factor": factor, "best_direction": f"{best} {evaluation.directions[best]}",
                     "effect": float(evaluation.effects[best, k]), "gap": evaluation.gap[factor],
                     "readout_r2": evaluation.regressor_r2.get(factor, float("nan"))})
    return rows


def cmd_discover(args: argparse.Namespace) -> int:
    """Discover latent directions of a model."""
    from .._atomic import write_json_atomic
    from ..analysis.direction_evaluation import iter_evaluate_directions
    from ..analysis.trust import baseline_summary, trust_warnings
    from ..latent.cohort_codes import iter_cohort_codes
    from ..latent.discovery import METHODS, discovery_method, iter_discover
    from ..latent.inversion import default_space
    from ..models.checkpoint import load_model
    from ..progress import run_operation
    from ..volumes.cohort import load_cohort

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise CliError(f"{out}: --out must end in .safetensors")
    if args.report and Path(args.report).suffix != ".json":
        raise CliError(f"{args.report}: --report must end in .json")
    if args.labels and not args.data:
        raise CliError("--labels needs --data (the folder of the volumes it labels)")
    if args.codes and args.data:
        raise CliError("give the cohort either as --data (volumes) or as --codes (their codes), not both")
    if args.gallery is None and args.gallery_codes:
        raise CliError("--gallery-codes needs --gallery OUT.png")
    if args.gallery is not None:
        from ..analysis.gallery import check_png_path

        check_png_path(args.gallery)
    method = discovery_method(args.method)
    need = method.data
    settings = method_settings_from_args(args, method, [entry for _, entry in METHODS.items()])
    if need.required and not (args.data or args.codes):
        raise CliError(f"the {method.name} method needs --data: {need.help}")
    if args.codes and need.kind == "cohort":
        raise CliError(f"the {method.name} method reads the cohort's images: give --data, not --codes")
    progress = None if args.quiet else True
    model = load_model(args.model, device=args.device)
    gallery_codes = _gallery_codes(args, model, settings.get("space") or default_space(model))
    cohort_codes = None
    if args.codes:
        from ..latent.cohort_inversion import load_cohort_codes

        space = model.check_space(settings.get("space") or default_space(model))
        cohort_codes = load_cohort_codes(args.codes, model)
        if cohort_codes.space != space:
            raise CliError(f"{args.codes}: the codes are in space {cohort_codes.space!r}, not {space!r} (invert "
                           f"again with --space {space}, or discover with --space {cohort_codes.space})")
        cohort = cohort_codes.cohort
        if need.check is not None:
            need.check(cohort, settings)
    else:
        cohort = load_cohort(args.data, args.labels, bids_suffix=args.bids_suffix) if args.data else None
    evaluate = cohort is not None and not args.no_evaluate and bool(cohort.factor_names)
    if cohort_codes is None and cohort is not None and (need.kind == "codes" or evaluate):
        space = model.check_space(settings.get("space") or default_space(model))
        if need.check is not None:
            need.check(cohort, settings)  # fail before inverting
        inversion = method.inversion_settings(settings) if need.kind == "codes" else {}
        cohort_codes = run_operation(iter_cohort_codes(model, cohort, space, **inversion), progress)
    if need.kind == "codes" and cohort_codes is not None:
        settings["data"] = cohort_codes
    elif need.kind == "cohort" and cohort is not None:
        settings["data"] = cohort
    directions = run_operation(iter_discover(model, args.method, **settings), progress)
    report: dict[str, Any] = {"model": str(args.model), "model_name": model.name, "method": directions.method,
                              "space": directions.space, "settings": _jsonable(directions.settings),
                              "directions": directions.table(), "info": _jsonable(directions.info),
                              "out": str(out)}
    if "accuracy" in directions.scores:
        report["accuracy"] = directions.scores["accuracy"][0]
    evaluation = None
    if cohort_codes is not None and not args.no_evaluate and cohort_codes.cohort.factor_names:
        evaluation = run_operation(iter_evaluate_directions(model, directions, cohort_codes), progress)
        report["evaluation"] = evaluation.to_json()
    warnings = trust_warnings(model, directions=directions)
    report["warnings"] = [w.to_json() for w in warnings]
    gallery = None
    if args.gallery is not None:
        from ..analysis.gallery import direction_gallery

        gallery = direction_gallery(model, directions, gallery_codes, amount=args.gallery_amount)
        report["gallery"] = {"path": str(args.gallery), **gallery.to_json()}
    directions.save(out)
    if gallery is not None:
        gallery.to_png(args.gallery)
    if args.report:
        write_json_atomic(args.report, report)
    print(f"{len(directions)} {directions.method} directions in space {directions.space} of {model.name} "
          f"saved to {out}")
    print_table(directions.table())
    if "accuracy" in report:
        print(f"held-out accuracy: {report['accuracy']:.3f}")
    for index in range(len(directions)):
        line = baseline_summary(directions, index)
        if line is not None:
            print(f"{directions.names[index]}: {line}")
    if evaluation is not None:
        print("\nevaluation against the cohort's factors (effect: factor SDs per spread of shift):")
        print_table(_factor_table(evaluation))
    if gallery is not None:
        print(f"gallery ({len(gallery)} directions at -{gallery.amount:g}, 0, +{gallery.amount:g} spreads from "
              f"{gallery.start}) saved to {args.gallery}")
    print_warnings(warnings)
    return 0


def _gallery_codes(args: argparse.Namespace, model: Any, space: str) -> Any:
    """``--gallery-codes`` loaded and checked against the model and the space (None without it)."""
    if not args.gallery_codes:
        return None
    from ..latent.codes import LatentCodes

    codes = LatentCodes.load(args.gallery_codes)
    codes.check_model(model)
    if codes.space != model.check_space(space):
        raise CliError(f"{args.gallery_codes}: the codes are in space {codes.space!r}, the directions in {space!r}")
    return codes


def _jsonable(value: Any) -> Any:
    """Settings and info with paths and objects turned into strings."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands."""
    from ..latent.inversion import METHODS

    p = sub.add_parser("invert", help="invert a volume (or a cohort) into latent codes",
                       description="Find one latent code per slice of a volume (any orientation is resliced to the "
                       "model's plane). Methods: encoder, optimize (slices in batches), hybrid (encoder start, "
                       "then optimize), auto. DATA may also be a cohort (a folder of volumes, a BIDS root or a "
                       "cohort.csv): then --out is a folder that gets one codes file per volume and index.json, "
                       "slices of several volumes are inverted together, and under torchrun each process inverts "
                       "its share of the volumes.")
    p.add_argument("model", metavar="MODEL", help="a .safetensors model file, or 'demo'")
    add_volume_argument(p, help=VOLUME_HELP + "; or a cohort: a folder of them (searched recursively, with an "
                        "optional cohort.csv), a BIDS root, or a cohort.csv")
    p.add_argument("--out", required=True, metavar="CODES.safetensors|DIR",
                   help="codes file to write (a folder for a cohort)")
    p.add_argument("--method", choices=METHODS, default="auto", help="inversion method (default auto)")
    p.add_argument("--steps", type=positive_int, default=200, help="optimisation steps (default 200)")
    p.add_argument("--lr", type=positive_float, default=None, help="peak learning rate (default 0.1 of the spread)")
    p.add_argument("--space", default=None, help="latent space: z, w or w+ (default: w for StyleGAN, else z)")
    p.add_argument("--index", type=int, default=None, help="frame of a 4D series")
    p.add_argument("--reconstruction", metavar="OUT.nii.gz", help="also write the reconstruction on the source grid")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="slices encoded or optimised together, across volumes for a cohort (default 256 up to 64 px, "
                   "fewer for larger images: 16 at 256 px, 4 at 512 px)")
    p.add_argument("--labels", metavar="CSV", help="a cohort table to use instead of DATA/cohort.csv")
    p.add_argument("--bids-suffix", default=None, metavar="SUFFIX",
                   help="the suffix of a BIDS dataset's volumes (default T1w)")
    p.add_argument("--open-volumes", type=positive_int, default=None, metavar="N",
                   help="cohort: sliced volumes held in memory at a time (default 4)")
    add_run_options(p)
    p.set_defaults(func=cmd_invert)

    from ..latent.discovery import METHODS

    methods = [entry for _, entry in METHODS.items()]
    names = [m.name for m in methods]
    uses = [f"{m.name} ({'required' if m.data.required else 'optional'}): {m.data.help}" for m in methods
            if m.data.kind != "none"]
    p = sub.add_parser("discover", help="discover interpretable latent directions",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=methods_epilog(methods),
                       description=textwrap.fill(
                           f"Find latent directions with one of the methods ({', '.join(names)}; listed below with "
                           "their settings). Prints the directions and their scores; with labelled --data whose "
                           "cohort.csv has factor columns (the phantoms'), also how each direction changes each "
                           "factor.", 88))
    p.add_argument("model", metavar="MODEL", help="a .safetensors model file, or 'demo'")
    p.add_argument("--method", required=True, choices=names, help="discovery method")
    p.add_argument("--out", required=True, metavar="DIRS.safetensors", help="directions file to write")
    p.add_argument("--space", default=None, help="latent space: z, w or w+ (default: w for StyleGAN, else z)")
    p.add_argument("--data", metavar="DATA", help="a folder of volumes with cohort.csv: "
                   + "; ".join([*uses, "with factor columns, the evaluation"]))
    p.add_argument("--labels", metavar="CSV", help="a cohort table to use instead of DATA/cohort.csv")
    p.add_argument("--bids-suffix", default="T1w", metavar="SUFFIX",
                   help="the suffix of a BIDS dataset's volumes (default T1w)")
    p.add_argument("--codes", metavar="DIR", help="instead of --data: the cohort's codes from 'napari-latent invert "
                   "MODEL DATA --out DIR' (its index.json gives the volumes and their labels)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any method setting, checked against the method's description, e.g. --set deformator=proj "
                   "--set classifier=logistic")
    p.add_argument("--no-evaluate", action="store_true", help="skip the evaluation against the cohort's factors")
    p.add_argument("--report", metavar="OUT.json", help="also write the table (and evaluation) as JSON")
    p.add_argument("--gallery", metavar="OUT.png", help="also write a gallery: one slice decoded at -a, 0 and +a "
                   "along each direction (a in spreads of the codes along it)")
    p.add_argument("--gallery-amount", type=positive_float, default=2.0, metavar="A",
                   help="the gallery's shift in spreads of the codes (default 2)")
    p.add_argument("--gallery-codes", metavar="CODES.safetensors", help="start the gallery from the middle slice "
                   "of these codes (from 'napari-latent invert'); default: the model's mean latent")
    add_method_options(p, methods)
    add_run_options(p)
    p.set_defaults(func=cmd_discover)
