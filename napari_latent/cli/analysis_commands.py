"""Analysis commands: ``traverse``, ``eigen`` and ``demo``.

Every input is checked before anything slow runs or anything is written: bad alphas, a
direction index out of range, codes of another model, a mask on another grid, a 3D file
given as a traversal all end in one line on standard error and exit code 2, with no
output file left behind (every file is written atomically).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .common import EXIT_USAGE, PROG, CliError, add_run_options, add_volume_argument, positive_int, volume_argument

#: Accepted ``--units`` values; ``sd`` is short for ``std``.
UNIT_CHOICES = ("latent", "std", "sd", "direction_std")


def _units(text: str) -> str:
    return "std" if text == "sd" else text


def parse_index(text: str) -> int | str | dict[int | str, float]:
    """``--index``: a direction number, a name, or weights ``K=W,K=W`` for a weighted sum.

    Raises
    ------
    CliError
        For an empty text or a weight that is not a number.
    """
    raw = text.strip()
    if not raw:
        raise CliError("--index is empty; give a direction number (0, 1, ...), a name, or weights like 0=1,2=0.5")
    if "=" not in raw:
        return int(raw) if raw.lstrip("-").isdigit() else raw
    weights: dict[int | str, float] = {}
    for part in raw.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CliError(f"--index {raw!r}: expected weights like 0=1,2=0.5, got {part.strip()!r}")
        try:
            weight = float(value)
        except ValueError:
            raise CliError(f"--index {raw!r}: weight {value.strip()!r} is not a number") from None
        weights[int(key) if key.lstrip("-").isdigit() else key] = weight
    return weights


def _nifti_out(path: str, option: str) -> Path:
    out = Path(path)
    if not out.name.lower().endswith((".nii.gz", ".nii")):
        raise CliError(f"{out}: {option} must end in .nii.gz or .nii")
    return out


def gui_show() -> Any:
    """``napari_latent.gui.show``, or None when it (or napari) is not installed.

    Imported by name at run time: the command line and the GUI are independent shells over
    the library (an import-linter contract), and napari is needed only for ``--view``.
    """
    import importlib

    try:
        gui = importlib.import_module("napari_latent.gui")
        show = getattr(gui, "show", None)
        if show is None:
            show = getattr(importlib.import_module("napari_latent.gui.launcher"), "show", None)
    except ImportError:
        return None
    return show if callable(show) else None


def _traversal_out(path: str) -> Path:
    from ..latent.traversal.store import is_store_path

    out = Path(path)
    if not (is_store_path(out) or out.name.lower().endswith((".nii.gz", ".nii"))):
        raise CliError(f"{out}: --out must end in .zarr (a traversal store) or .nii.gz/.nii (a 4D NIfTI)")
    return out


def cmd_traverse(args: argparse.Namespace) -> int:
    """Traverse a volume along a latent direction and save the result (a store or a 4D NIfTI)."""
    from ..analysis.trust import direction_warnings, trust_warnings
    from ..latent.codes import LatentCodes
    from ..latent.directions import Directions
    from ..latent.inversion import iter_invert
    from ..latent.traversal import LazyTraversal, is_store_path, parse_alphas, resolve_direction
    from ..models.checkpoint import load_model
    from ..progress import run_operation
    from ..volumes import open_volume
    from .latent_commands import print_warnings

    out = _traversal_out(args.out)
    alphas = parse_alphas(args.alphas)  # bad syntax fails before anything is loaded
    index = parse_index(args.index) if args.index is not None else None
    units = _units(args.units)
    directions = Directions.load(args.directions)
    resolve_direction(directions, index)  # an index out of range fails before the inversion
    model = load_model(args.model, device=args.device)
    directions.check_model(model)
    volume = open_volume(volume_argument(args))
    progress = None if args.quiet else True
    if args.codes:
        codes = LatentCodes.load(args.codes)
        codes.check_model(model)
        codes.geometry.grid.check_same(volume.grid, f"the volume {Path(volume_argument(args)).name}")
    else:
        codes = run_operation(iter_invert(model, volume, method=args.method, steps=args.steps), progress)
    lazy = LazyTraversal(model, codes, directions, alphas, index=index, units=units, source=volume,  # type: ignore[arg-type]
                         batch_size=args.batch_size, bf16=args.bf16)
    path = run_operation(lazy.iter_save(out), progress)  # streamed: a few volumes in memory, never A of them
    written = f"the store {path}" if is_store_path(path) else \
        f"{path} (sidecar {path.name.rsplit('.nii', 1)[0]}.json)"
    units = "latent units" if lazy.units == "latent" else \
        f"{lazy.units} units; one is {lazy.alpha_scale:.4g} latent units"
    print(f"traversed {len(codes)} slices of {volume.name} along {lazy.direction.name!r} for {len(lazy)} alphas "
          f"from {lazy.alphas[0]:g} to {lazy.alphas[-1]:g} ({units}); saved to {written}")
    print_warnings(trust_warnings(model, codes=codes) + [w for k in _direction_indices(directions, index)
                                                         for w in direction_warnings(directions, k)])
    return 0


def _direction_indices(directions: Any, index: Any) -> list[int]:
    """The indices of the directions a traversal uses (one, or those of a weighted sum)."""
    if index is None:
        return [0] if len(directions) == 1 else []
    keys = list(index) if isinstance(index, dict) else [index]
    return [directions.index_of(key) for key in keys]


def cmd_export(args: argparse.Namespace) -> int:
    """Convert a saved traversal: a store to a 4D NIfTI, or a 4D NIfTI to a store."""
    from ..latent.traversal import open_traversal

    out = _traversal_out(args.out)
    traversal = open_traversal(args.traversal)
    if Path(args.traversal).resolve() == out.resolve():
        raise CliError(f"{out}: --out is the traversal itself")
    path = traversal.save(out)
    print(f"{len(traversal)} alphas of {Path(args.traversal).name} written to {path}")
    return 0


def _gallery_inputs(args: argparse.Namespace) -> tuple[Any, Any] | None:
    """The model and directions of ``--gallery DIRS --model MODEL`` (checked to fit), or None."""
    if args.gallery is None:
        if args.model is not None:
            raise CliError("--model is only used with --gallery DIRS (the gallery in the report)")
        return None
    if args.model is None:
        raise CliError("--gallery needs --model MODEL (the model the directions belong to)")
    if args.no_report:
        raise CliError("--gallery goes into the report: drop --no-report")
    if not args.gallery_amount > 0:
        raise CliError(f"--gallery-amount must be positive, got {args.gallery_amount}")
    from ..latent.directions import Directions
    from ..models.checkpoint import load_model

    model = load_model(args.model)
    directions = Directions.load(args.gallery)
    directions.check_model(model)
    return model, directions


def cmd_eigen(args: argparse.Namespace) -> int:
    """Eigencomponents and difference maps of a saved traversal, with a report."""
    from ..analysis.eigen import iter_eigencomponents
    from ..analysis.plots import save_figure, write_report
    from ..analysis.regions import region_curves
    from ..latent.traversal import open_traversal
    from ..progress import run_operation

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CliError(f"{out}: --out must be a folder")
    traversal = open_traversal(args.traversal)
    roi = _resolve_roi(args, traversal)  # a bad mask fails here, before anything is written
    gallery_inputs = _gallery_inputs(args)  # and a bad model or directions file
    n_components = min(args.components, len(traversal))
    center: Any = {"paper": True, "none": False, "baseline": "baseline"}[args.center]
    progress = None if args.quiet else True
    eigen = run_operation(iter_eigencomponents(traversal, mask=args.mask, n_components=n_components,
                                               center=center, differences=args.differences), progress)
    if eigen is None:  # pragma: no cover - only when stopped
        raise CliError("the eigen analysis was stopped")
    eigen.save(out)
    curves = None
    if roi is not None:
        curves = region_curves(traversal, roi["labels"], roi["threshold"], roi["below"], eigen, roi["names"])
        curves.to_csv(out / "regions.csv")
        save_figure(curves.figure(), out / "regions.png")
    gallery = None
    if gallery_inputs is not None:
        from ..analysis.gallery import direction_gallery

        model, directions = gallery_inputs
        gallery = direction_gallery(model, directions, amount=args.gallery_amount)
    report = None if args.no_report else write_report(out / "report", traversal, eigen, regions=curves,
                                                      gallery=gallery)
    ratio = eigen.explained_variance_ratio
    corr = eigen.alpha_correlation()
    print(f"{eigen.n_components} eigencomponents of {len(traversal)} alphas over {eigen.n_voxels:,} voxels "
          f"({eigen.mask_info.get('kind', 'mask')}) saved to {out} (eigen.json, component_*.nii.gz, "
          f"{len(eigen.difference_indices)} difference maps)")
    for k in range(eigen.n_components):
        constant = float(eigen.eigenvectors[:, k].sum() ** 2 / len(eigen.alphas))
        r = "n/a" if corr[k] != corr[k] else f"{corr[k]:+.3f}"
        print(f"  component {k + 1}: {100 * ratio[k]:.4g}% of the variance, eigenvector vs alpha r = {r}, "
              f"{100 * constant:.1f}% on the constant vector")
    if curves is not None:
        print(f"regions ({roi['kind']}) saved to {out / 'regions.csv'} and regions.png:")
        print("\n".join(f"  {line}" for line in curves.summary().splitlines()))
    if report is not None:
        print(f"report: {report}")
    return 0


def _resolve_roi(args: argparse.Namespace, traversal: Any) -> dict[str, Any] | None:
    """``--roi``: the label volume on the traversal's grid, names, threshold and side (None without it).

    ``--roi auto`` is :func:`~napari_latent.analysis.regions.automatic_regions`: its CSF
    threshold and ``below`` unless ``--roi-threshold`` is given.
    """
    from ..analysis.regions import automatic_regions, resolve_regions

    if args.roi is None:
        if args.roi_threshold is not None or args.roi_below:
            raise CliError("--roi-threshold and --roi-below need --roi MASK (or --roi auto)")
        return None
    if args.roi == "auto":
        labels, names, threshold = automatic_regions(traversal)
        if args.roi_threshold is None:
            return {"labels": labels, "names": names, "threshold": threshold, "below": True,
                    "kind": f"automatic; threshold {threshold:.4g}, voxels below it counted"}
        return {"labels": labels, "names": names, "threshold": args.roi_threshold, "below": args.roi_below,
                "kind": "automatic"}
    labels, _ = resolve_regions(traversal, args.roi)
    return {"labels": labels, "names": None, "threshold": args.roi_threshold, "below": args.roi_below,
            "kind": Path(args.roi).name}


def cmd_demo(args: argparse.Namespace) -> int:
    """The MS paper's pipeline end to end on a phantom cohort with the bundled model."""
    show = None
    if args.view:  # fail before the run, not after it
        show = gui_show()
        if show is None:
            sys.stderr.write(f"{PROG} demo: error: --view needs napari_latent.gui.show, which this installation "
                             "does not have yet; run without --view and open the files with 'napari-latent "
                             "view'\n")
            return EXIT_USAGE
    from ..analysis.demo import run_demo
    from .latent_commands import print_warnings

    result = run_demo(args.out, progress=None if args.quiet else True, subjects=args.subjects, size=args.size,
                      seed=args.seed, alphas=args.alphas, units=_units(args.units), unsupervised=args.unsupervised,
                      n_components=args.components, device=args.device)
    summary = result.summary
    supervised = summary["supervised_run"]
    print(f"demo finished in {summary['timings_s']['total']:.1f} s: {summary['cohort']['subjects']} phantoms, "
          f"{result.model.name if result.model else 'model'}, subject {summary['traversed_subject']} traversed "
          f"along {summary['supervised']['name']!r} (held-out accuracy "
          f"{summary['supervised']['held_out_accuracy']:.2f}) and {summary['unsupervised']['most_aligned_name']!r}")
    print(f"eigenvector 1: {100 * supervised['eigenvector_1_constant_fraction']:.1f}% constant; eigenvector 2 vs "
          f"alpha: r = {supervised.get('eigenvector_2_alpha_correlation', float('nan')):.4f}")
    baselines = summary["supervised"].get("baseline_summary")
    if baselines:
        print(f"supervised direction: {baselines}")
    print_warnings(result.warnings)
    if not result.warnings:
        print("checks: reconstruction quality, chance and pixel baselines, inversion error of the traversed subject: "
              "no warning")
    print(f"report: {result.report}")
    if show is not None:
        show(volume=result.volume, model=result.model, traversal=result.traversal, eigen=result.eigen)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands."""
    from ..latent.inversion import METHODS

    p = sub.add_parser("traverse", help="traverse a volume along a latent direction (a store or a 4D NIfTI)",
                       description="Shift every slice code of a volume by alpha times a direction, decode, and map "
                       "the slices back onto the volume: one 3D volume per alpha. OUT.zarr is a chunked store "
                       "written as the alphas are computed and read lazily by 'eigen' and napari (memory stays at a "
                       "few volumes: use it for CT-sized volumes); OUT.nii.gz is a 4D NIfTI with the source affine "
                       "and a JSON sidecar, built in memory. Both record the alphas, direction and model "
                       "fingerprint; 'napari-latent export' converts one into the other.")
    p.add_argument("model", metavar="MODEL", help="a .safetensors model file, or 'demo'")
    add_volume_argument(p)
    p.add_argument("--directions", required=True, metavar="DIRS", help="a directions .safetensors file")
    p.add_argument("--index", default=None, metavar="K",
                   help="direction number (from 0) or name, or weights K=W,K=W for a weighted sum (default: the "
                   "only direction)")
    p.add_argument("--alphas", required=True, metavar="START:STOP:N",
                   help="N evenly spaced alphas, both ends included (e.g. 0:50:15), or a comma list; write "
                   "--alphas=-2:2:5 when the first alpha is negative")
    p.add_argument("--units", choices=UNIT_CHOICES, default="latent",
                   help="alpha units: latent distance (default), std/sd of this volume's codes along the "
                   "direction, or direction_std (the spread the discovery method measured)")
    p.add_argument("--out", required=True, metavar="OUT.zarr|OUT.nii.gz",
                   help="traversal to write: a store (.zarr, streamed) or a 4D NIfTI (plus OUT.json)")
    p.add_argument("--codes", metavar="CODES", help="the volume's codes from 'napari-latent invert' (else the "
                   "volume is inverted first)")
    p.add_argument("--method", choices=METHODS, default="auto", help="inversion method without --codes")
    p.add_argument("--steps", type=positive_int, default=200, help="inversion steps without --codes (default 200)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="images per decoder call")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (faster, ~1%% less accurate)")
    add_run_options(p)
    p.set_defaults(func=cmd_traverse)

    p = sub.add_parser("eigen", help="eigencomponents and difference maps of a traversal",
                       description="The MS paper's analysis: the foreground voxels of every alpha image form M "
                       "(voxels x alphas); the covariance of M is eigendecomposed; component map k = M v_k on the "
                       "volume. Writes component_K.nii.gz, difference maps and mask.nii.gz with the source affine, "
                       "eigen.json, and a report folder (report.html, report.json, figures).")
    p.add_argument("traversal", metavar="TRAVERSAL", help="a traversal store (.zarr, read slab by slab) or a 4D "
                   "traversal .nii.gz with its .json sidecar")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--mask", metavar="MASK", help="a mask on the traversal's grid (default: the baseline's "
                   "foreground)")
    p.add_argument("--components", type=positive_int, default=5, metavar="K", help="components kept (default 5)")
    p.add_argument("--center", choices=("paper", "none", "baseline"), default="paper",
                   help="paper: the covariance (default); none: uncentred; baseline: the baseline frame "
                   "subtracted per voxel (no anatomy leak; the change becomes component 1)")
    p.add_argument("--differences", default="extreme",
                   help="difference maps: extreme (default: the alpha farthest from the baseline), all or none")
    p.add_argument("--roi", metavar="MASK|auto",
                   help="regions of interest: a mask or label NIfTI on the traversal's grid (0 = background, each "
                   "label one region), or 'auto' (the dark voxels inside the head at the baseline, see "
                   "docs/analysis.md); writes regions.csv and regions.png (mean intensity and thresholded volume "
                   "in mm3 per region and alpha)")
    p.add_argument("--roi-threshold", type=float, default=None, metavar="T",
                   help="with --roi: also measure the volume of each region's voxels above T (default: not "
                   "measured; with --roi auto: the automatic CSF threshold, voxels below it)")
    p.add_argument("--roi-below", action="store_true", help="with --roi-threshold: count voxels below T")
    p.add_argument("--gallery", metavar="DIRS", default=None,
                   help="a directions .safetensors file: put their gallery (one slice at -a, 0, +a per direction, "
                   "from the model's mean latent) in the report; needs --model")
    p.add_argument("--model", metavar="MODEL", default=None, help="with --gallery: the model of the directions")
    p.add_argument("--gallery-amount", type=float, default=2.0, metavar="A",
                   help="with --gallery: the shift in spreads of the codes (default 2)")
    p.add_argument("--no-report", action="store_true", help="skip the report folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eigen)

    p = sub.add_parser("export", help="convert a traversal: a store to a 4D NIfTI or back",
                       description="Write a saved traversal in the other format: a store (.zarr) as a 4D NIfTI "
                       "(.nii.gz or .nii, plus its .json sidecar; one alpha volume in memory at a time), or a 4D "
                       "NIfTI traversal as a store.")
    p.add_argument("traversal", metavar="TRAVERSAL", help="a traversal store (.zarr) or a 4D traversal NIfTI")
    p.add_argument("--out", required=True, metavar="OUT.nii.gz|OUT.zarr", help="the converted traversal")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="the MS paper's pipeline end to end on phantoms (about a minute)",
                       description="Phantom cohort, the bundled demo model, inversion of a healthy subject, the "
                       "supervised healthy-to-disease direction plus one unsupervised method, traversals, "
                       "eigencomponents, difference maps and a report. Alphas default to 0:3:15 in direction_std "
                       "units (SDs of the cohort's codes along the direction).")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--view", action="store_true", help="open napari with the results afterwards")
    p.add_argument("--subjects", type=positive_int, default=20, help="phantom subjects (default 20)")
    p.add_argument("--size", type=positive_int, default=64, help="phantom voxels per axis (default 64)")
    p.add_argument("--seed", type=int, default=0, help="cohort seed (default 0)")
    p.add_argument("--alphas", default="0:3:15", metavar="START:STOP:N", help="alphas (default 0:3:15)")
    p.add_argument("--units", choices=UNIT_CHOICES, default="direction_std", help="alpha units (default "
                   "direction_std)")
    p.add_argument("--unsupervised", choices=("sefa", "pca"), default="sefa", help="unsupervised method")
    p.add_argument("--components", type=positive_int, default=5, help="eigencomponents (default 5)")
    add_run_options(p, device="cpu")
    p.set_defaults(func=cmd_demo)
