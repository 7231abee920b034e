"""Supervised direction variants against their baselines, over many subject splits (for docs/directions.md).

    python docs/scripts/measure_supervised_variants.py COHORT_DIR [COHORT_DIR ...] [--splits 10]
        [--model MODEL.safetensors] [--space w+] [--factor ventricle_enlargement]

For every cohort (a phantom folder with cohort.csv) the codes of the model (default: the demo
model; inverted as the supervised method does: the encoder where there is one) are computed
once; then, for each variant (classifier svm / logistic / lda; training on every slice or on
each subject's mean code; the automatic slice band or every slice; ridge, and with ``--factor``
the ridge regression onto the factor), the supervised method runs
on ``--splits`` subject splits with its baselines (shuffled-label chance, pixel logistic
regression on the same split and band). Printed per variant: mean held-out slice accuracy,
subject accuracy, chance (mean and 95th percentile), the fraction of splits above chance
(p < 0.05), the pixel baseline's accuracy (and, for a direction fitted to the factor, the pixel
ridge regression onto it: accuracy, median readout R²), and with ``--factor`` the factor's readout along the
direction (held-out subjects' R², mean and lowest over the splits; see
``napari_latent.latent.discovery.supervised_readout``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from napari_latent import load_model
from napari_latent.latent.cohort_codes import iter_cohort_codes
from napari_latent.latent.discovery import discover
from napari_latent.latent.inversion import default_space
from napari_latent.progress import run_operation

VARIANTS = {
    "svm, auto band": {"classifier": "svm"},
    "svm, every slice": {"classifier": "svm", "slices": "all"},
    "svm, subject means": {"classifier": "svm", "aggregate": True},
    "logistic, auto band": {"classifier": "logistic"},
    "lda, auto band": {"classifier": "lda"},
    "lda, subject means": {"classifier": "lda", "aggregate": True},
    "lda, every slice": {"classifier": "lda", "slices": "all"},
    "ridge, auto band": {"classifier": "ridge"},
    # with --factor: the ridge regression onto that factor (classifier ridge, target FACTOR)
    "ridge on the factor, auto band": {"classifier": "ridge", "target": "FACTOR"},
    "ridge on the factor, subject means": {"classifier": "ridge", "target": "FACTOR", "aggregate": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cohorts", nargs="+")
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--permutations", type=int, default=100)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--model", default="demo")
    parser.add_argument("--space", default=None)
    parser.add_argument("--steps", type=int, default=100, help="inversion steps of models without an encoder")
    parser.add_argument("--factor", default=None, help="a numeric cohort column to read out along the direction")
    args = parser.parse_args()
    model = load_model(args.model, device="cpu")
    space = args.space or default_space(model)
    for folder in args.cohorts:
        began = time.perf_counter()
        codes = run_operation(iter_cohort_codes(model, folder, space, steps=args.steps))
        print(f"\n{args.model} ({space}): codes in {time.perf_counter() - began:.0f} s")
        print(f"\n{folder}: {len(codes.cohort)} subjects, {len(codes.codes)} slices")
        print("| variant | slice acc. | subject acc. | chance (mean / 95th pct) | splits p<0.05 | pixel acc. "
              f"(slices / subjects) | {args.factor or 'factor'} R² (mean / lowest) | s per split |")
        print("|---|---|---|---|---|---|---|---|")
        for name in args.variants:
            settings = dict(VARIANTS[name])
            if settings.get("target") == "FACTOR":
                if not args.factor:
                    continue
                settings["target"] = args.factor
            rows = []
            began = time.perf_counter()
            for seed in range(args.splits):
                found = discover(model, "supervised", data=codes, space=space, seed=seed, count=1,
                                 permutations=args.permutations, **settings)
                pixel = found.info["baselines"]["pixel"]
                readout = (found.info["factor_readout"].get(args.factor) or {"r2": [np.nan]})["r2"][0] \
                    if args.factor else np.nan
                regression = found.info["baselines"].get("pixel_regression") or {}
                rows.append((found.scores["accuracy"][0], found.scores["subject_accuracy"][0],
                             found.scores["chance_accuracy"][0], found.scores["chance_accuracy_95"][0],
                             float(found.scores["p_value"][0] < 0.05), pixel.get("accuracy", np.nan),
                             pixel.get("subject_accuracy", np.nan), readout,
                             regression.get("accuracy", np.nan),
                             np.nan if regression.get("readout_r2") is None else regression["readout_r2"]))
            m = np.mean(rows, axis=0)
            lowest = np.min(np.asarray(rows)[:, 7])
            seconds = (time.perf_counter() - began) / args.splits
            # a direction fitted to the factor: also the pixel ridge regression onto it (accuracy; median readout R²)
            versus = "" if np.isnan(m[8]) else \
                f"; pixel ridge {m[8]:.3f}, R² {np.median(np.asarray(rows)[:, 9]):.2f} (median)"
            print(f"| {name} | {m[0]:.3f} | {m[1]:.3f} | {m[2]:.3f} / {m[3]:.3f} | {m[4]:.1f} | "
                  f"{m[5]:.3f} / {m[6]:.3f}{versus} | {m[7]:.2f} / {lowest:.2f} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
