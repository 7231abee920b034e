"""Commands on volumes and cohorts: ``phantoms`` and ``info``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .common import CliError, add_volume_argument, fraction, positive_float, positive_int, volume_argument


def cmd_phantoms(args: argparse.Namespace) -> int:
    """Write a synthetic brain-phantom cohort, or a cohort warped from a real scan (``--from-scan``)."""
    out = Path(args.out_dir)
    if out.exists() and not out.is_dir():
        raise CliError(f"{out}: exists and is not a folder")
    if args.from_scan is not None and args.spacing is not None:
        raise CliError("--spacing is for synthetic phantoms; a cohort warped from a scan takes its grid from "
                       "--size (voxels per side of a cube that holds the head)")
    if args.from_scan is not None and not args.from_scan.strip():
        raise CliError("--from-scan needs 'anatomical' or the path of a scan")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise CliError(f"{out}: the folder is not empty (use --overwrite to write into it)")
    progress = None
    bars: list[Any] = []  # made at the first subject: a bad --from-scan fails without a bar
    if not args.quiet:
        from tqdm.auto import tqdm

        def progress(done: int, total: int) -> None:
            if not bars:
                bars.append(tqdm(total=total, desc="phantoms", file=sys.stderr, dynamic_ncols=True))
            bars[0].n = done
            bars[0].refresh()

    try:
        if args.from_scan is not None:
            from ..volumes.warped import make_warped_cohort

            info = make_warped_cohort(out, source=args.from_scan, n_subjects=args.subjects, seed=args.seed,
                                      size=args.size, disease_fraction=args.disease_fraction, progress=progress)
            origin = f" warped from {info.source.path.name}"
        else:
            from ..volumes.phantoms import make_phantom_cohort

            info = make_phantom_cohort(out, n_subjects=args.subjects, size=args.size, seed=args.seed,
                                       spacing=args.spacing, disease_fraction=args.disease_fraction,
                                       progress=progress)
            origin = ""
    finally:
        for bar in bars:
            bar.close()
    groups = {g: info.groups.count(g) for g in sorted(set(info.groups))}
    summary = ", ".join(f"{n} {g}" for g, n in groups.items())
    print(f"wrote {len(info.paths)} volumes ({summary}){origin} and {info.csv_path.name} to {info.folder}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Describe a volume."""
    import numpy as np

    from ..volumes import foreground_mask, open_volume

    volume = open_volume(volume_argument(args), index=args.index)
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
    facts = {"format": volume.header.get("format"), **facts}
    for key in ("modality", "series_description", "slices", "transfer_syntax"):  # DICOM (technical tags only)
        if volume.header.get(key) not in (None, ""):
            facts[key] = volume.header[key]
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


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands."""
    p = sub.add_parser("phantoms", help="write a synthetic brain-phantom cohort (the embedded default data), "
                       "or one warped from a real scan",
                       description="Write 3D T1-like brain phantoms of healthy and disease (MS-like) subjects "
                       "with known generating factors, and cohort.csv. With --from-scan, every subject is a real "
                       "T1 scan warped with known factors instead: ventricles enlarged by a known volume factor "
                       "(disease), rotation, head size, intensity gamma, bias field and noise (nuisances).")
    p.add_argument("out_dir", metavar="OUT_DIR", help="output folder (created)")
    p.add_argument("--from-scan", metavar="SCAN", default=None,
                   help="warp a real T1-weighted brain scan instead of drawing phantoms: 'anatomical' for "
                   "nibabel's example T1 (anatomical.nii), or a volume path (any format 'info' reads)")
    p.add_argument("--subjects", type=positive_int, default=20, help="number of subjects (default 20)")
    p.add_argument("--size", type=positive_int, default=64, help="voxels per side (default 64)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default 0)")
    p.add_argument("--spacing", type=positive_float, default=None,
                   help="voxel size in mm (default: 192 mm field of view / size)")
    p.add_argument("--disease-fraction", type=fraction, default=0.5, help="fraction of disease subjects")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_phantoms)

    p = sub.add_parser("info", help="describe a NIfTI volume",
                       description="Print shape, spacing, orientation, intensity range and foreground fraction.")
    add_volume_argument(p)
    p.add_argument("--index", type=int, default=None, help="frame of a 4D series")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)

