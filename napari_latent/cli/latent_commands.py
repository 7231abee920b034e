"""Commands in latent space: ``invert`` and ``discover``."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import Any

from .common import CliError, add_run_options, add_volume_argument, positive_float, positive_int, volume_argument
from .method_options import add_method_options, method_settings_from_args, methods_epilog


def cmd_invert(args: argparse.Namespace) -> int:
    """Invert a volume into latent codes."""
    from ..latent.inversion import InversionSettings, invert
    from ..models.checkpoint import load_model
    from ..volumes import open_volume, save_volume

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise CliError(f"{out}: --out must end in .safetensors")
    if args.reconstruction and not str(args.reconstruction).endswith((".nii", ".nii.gz")):
        raise CliError(f"{args.reconstruction}: --reconstruction must end in .nii or .nii.gz")
    model = load_model(args.model, device=args.device)
    volume = open_volume(volume_argument(args), index=args.index)
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
    from ..latent.cohort_codes import iter_cohort_codes
    from ..latent.discovery import METHODS, discovery_method, iter_discover
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
    method = discovery_method(args.method)
    need = method.data
    settings = method_settings_from_args(args, method, [entry for _, entry in METHODS.items()])
    if need.required and not args.data:
        raise CliError(f"the {method.name} method needs --data: {need.help}")
    progress = None if args.quiet else True
    model = load_model(args.model, device=args.device)
    cohort = load_cohort(args.data, args.labels, bids_suffix=args.bids_suffix) if args.data else None
    evaluate = cohort is not None and not args.no_evaluate and bool(cohort.factor_names)
    cohort_codes = None
    if cohort is not None and (need.kind == "codes" or evaluate):
        from ..latent.inversion import default_space

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
    directions.save(out)
    if args.report:
        write_json_atomic(args.report, report)
    print(f"{len(directions)} {directions.method} directions in space {directions.space} of {model.name} "
          f"saved to {out}")
    print_table(directions.table())
    if "accuracy" in report:
        print(f"held-out accuracy: {report['accuracy']:.3f}")
    if evaluation is not None:
        print("\nevaluation against the cohort's factors (effect: factor SDs per spread of shift):")
        print_table(_factor_table(evaluation))
    return 0


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

    p = sub.add_parser("invert", help="invert a volume into latent codes",
                       description="Find one latent code per slice of a volume (any orientation is resliced to the "
                       "model's plane). Methods: encoder, optimize (all slices as one batch), hybrid (encoder start, "
                       "then optimize), auto.")
    p.add_argument("model", metavar="MODEL", help="a .safetensors model file, or 'demo'")
    add_volume_argument(p)
    p.add_argument("--out", required=True, metavar="CODES.safetensors", help="codes file to write")
    p.add_argument("--method", choices=METHODS, default="auto", help="inversion method (default auto)")
    p.add_argument("--steps", type=positive_int, default=200, help="optimisation steps (default 200)")
    p.add_argument("--lr", type=positive_float, default=None, help="peak learning rate (default 0.1 of the spread)")
    p.add_argument("--space", default=None, help="latent space: z, w or w+ (default: w for StyleGAN, else z)")
    p.add_argument("--index", type=int, default=None, help="frame of a 4D series")
    p.add_argument("--reconstruction", metavar="OUT.nii.gz", help="also write the reconstruction on the source grid")
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
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any method setting, checked against the method's description, e.g. --set deformator=proj "
                   "--set classifier=logistic")
    p.add_argument("--no-evaluate", action="store_true", help="skip the evaluation against the cohort's factors")
    p.add_argument("--report", metavar="OUT.json", help="also write the table (and evaluation) as JSON")
    add_method_options(p, methods)
    add_run_options(p)
    p.set_defaults(func=cmd_discover)
