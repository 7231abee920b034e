"""Regenerate the measured evaluation table of docs/directions.md.

    python docs/scripts/make_directions_table.py [--out DIR] [--subjects 16] [--size 64]
                                                 [--voynov-steps 200] [--base-count 128] [--threads 2]

With the bundled demo model (``load_model("demo")``: a VAE, 64 px, 32-d ``z``) and a
freshly written phantom cohort, every discovery method is run, and each result is
evaluated with :func:`~napari_latent.analysis.direction_evaluation.evaluate_directions`
against the cohort's known factors. The cohort's codes are computed once (the demo VAE's
encoder) and shared. Prints a Markdown table (one row per method: the direction with the
largest effect on each key factor, that effect in factor standard deviations per spread of
shift, and the MIG-style gap), the supervised method's held-out accuracies, the
representation's MIG/SAP/DCI, and the wall time of each method.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from napari_latent import load_model
from napari_latent.analysis.direction_evaluation import evaluate_directions, fit_factor_readouts
from napari_latent.latent.cohort_codes import iter_cohort_codes
from napari_latent.latent.discovery import discover
from napari_latent.progress import run_operation
from napari_latent.volumes.cohort import load_cohort
from napari_latent.volumes.phantoms import make_phantom_cohort

KEY_FACTORS = ("ventricle_enlargement", "cortical_atrophy", "lesion_load", "rotation_inplane", "head_size",
               "image_angle_deg")


def markdown_row(row: dict) -> str:
    """One table row: per key factor the best direction (1-based), its effect and the gap."""
    cells = [row["method"], f"{row['seconds']:.2f}"]
    cells += [f"{row[f][0] + 1} ({row[f][1]:+.2f}, {row[f][2]:.2f})" for f in KEY_FACTORS]
    cells.append(f"{row['mean_gap']:.2f}")
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="directions-table")
    parser.add_argument("--subjects", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--voynov-steps", type=int, default=200)
    parser.add_argument("--base-count", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    make_phantom_cohort(out / "cohort", n_subjects=args.subjects, size=args.size, seed=args.seed, write_labels=False)
    model = load_model("demo", device="cpu")
    cohort = load_cohort(out / "cohort")
    start = time.perf_counter()
    codes = run_operation(iter_cohort_codes(model, cohort, "z"))
    print(f"cohort: {len(cohort)} phantom subjects, {args.size}^3 voxels, seed {args.seed}; "
          f"{len(codes.codes)} axial slices encoded in {time.perf_counter() - start:.1f} s")
    runs = {
        "sefa": ("sefa", {"count": args.count}),
        "pca (prior)": ("pca", {"count": args.count, "samples": 20000}),
        "pca (data)": ("pca", {"count": args.count, "data": codes}),
        "supervised": ("supervised", {"data": codes}),
        "axes": ("axes", {"count": args.count, "data": cohort}),
        "jacobian": ("jacobian", {"count": args.count}),
        "voynov": ("voynov", {"count": args.count, "steps": args.voynov_steps, "deformator": "proj",
                              "batch_size": 32, "eval_samples": 256}),
    }
    start = time.perf_counter()
    readouts = fit_factor_readouts(codes)  # the factor regressors do not depend on the directions
    print(f"factor regressors fitted in {time.perf_counter() - start:.1f} s; held-out R²: " + ", ".join(
        f"{f} {r:.2f}" for f, r in readouts.r2.items()), flush=True)
    rows, report = [], {}
    for label, (method, settings) in runs.items():
        began = time.perf_counter()
        directions = discover(model, method, **settings)
        seconds = time.perf_counter() - began
        began_eval = time.perf_counter()
        evaluation = evaluate_directions(model, directions, codes, base_count=args.base_count, readouts=readouts)
        row = {"method": label, "seconds": seconds, "K": len(directions)}
        for factor in KEY_FACTORS:
            k = evaluation.factors.index(factor)
            best = evaluation.best[factor]
            row[factor] = (best, float(evaluation.effects[best, k]), evaluation.gap[factor])
        row["mean_gap"] = evaluation.mean_gap
        rows.append(row)
        report[label] = {"seconds": seconds, "scores": directions.scores, "info": {
            k: v for k, v in directions.info.items() if isinstance(v, (int, float, str))},
            "evaluation": evaluation.to_json()}
        if method == "supervised":
            report[label]["accuracy"] = directions.scores["accuracy"]
            print(f"    held-out accuracy {directions.scores['accuracy']}, subject accuracy "
                  f"{directions.scores['subject_accuracy']}", flush=True)
        print(f"  {label}: {seconds:.1f} s (evaluation {time.perf_counter() - began_eval:.1f} s)", flush=True)
        print("    " + markdown_row(row), flush=True)
    first = evaluation  # any evaluation: the regressors and the representation are the same for all
    print()
    print("Readout R² on held-out subjects: " + ", ".join(
        f"{f} {first.regressor_r2[f]:.2f}" for f in KEY_FACTORS if f in first.regressor_r2))
    if first.representation is not None:
        summary = first.representation["summary"]
        print("Representation (posterior means) against the factors: " + ", ".join(
            f"{k} {v:.3f}" for k, v in summary.items()))
    print()
    header = ["method", "time (s)", *[f"{f}: best (effect, gap)" for f in KEY_FACTORS], "mean gap"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print(markdown_row(row))
    supervised = report["supervised"]["scores"]
    print()
    print("supervised (held-out subjects): " + "; ".join(
        f"{name}: slice accuracy {supervised['accuracy'][i]:.3f}, subject accuracy "
        f"{supervised['subject_accuracy'][i]:.2f}, d' {supervised['separation'][i]:.2f}"
        for i, name in enumerate(("svm normal", "mean difference"))))
    voynov = report["voynov"]["info"]
    print(f"voynov: RCA {voynov.get('rca', float('nan')):.3f} (chance {voynov['chance']:.3f}) after "
          f"{voynov['steps_done']} steps")
    (out / "report.json").write_text(json.dumps(report, indent=1, default=lambda v: np.asarray(v).tolist()))


if __name__ == "__main__":
    main()
