"""Held-out accuracy of the supervised direction over many subject splits (for docs/directions.md).

    python docs/scripts/measure_supervised_splits.py COHORT_DIR [--splits 10]

One split holds out only a quarter of the subjects (4 of 16), so its accuracy says little;
this prints, with the demo model, the accuracy per split, the mean over splits, and the same
for labels shuffled across subjects (chance).
"""

from __future__ import annotations

import argparse

import numpy as np

from napari_latent import load_model
from napari_latent.latent.cohort_codes import CohortCodes, iter_cohort_codes
from napari_latent.latent.discovery import discover
from napari_latent.progress import run_operation
from napari_latent.volumes.cohort import Cohort, Subject


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cohort")
    parser.add_argument("--splits", type=int, default=10)
    args = parser.parse_args()
    model = load_model("demo", device="cpu")
    codes = run_operation(iter_cohort_codes(model, args.cohort, "z"))
    groups = [s.group for s in codes.cohort.subjects]
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(args.splits):
        found = discover(model, "supervised", data=codes, seed=seed)
        permuted = [Subject(s.path, g, s.factors) for s, g in zip(codes.cohort.subjects, rng.permutation(groups))]
        control = CohortCodes(codes.codes, codes.subject, codes.position, Cohort(codes.cohort.root, permuted), "z")
        shuffled = discover(model, "supervised", data=control, seed=seed, count=1)
        rows.append((found.scores["accuracy"][0], found.scores["subject_accuracy"][0], found.scores["accuracy"][1],
                     shuffled.scores["accuracy"][0]))
        print(f"split {seed}: svm {rows[-1][0]:.3f} (subjects {rows[-1][1]:.2f}), mean difference {rows[-1][2]:.3f}, "
              f"shuffled labels {rows[-1][3]:.3f}")
    mean = np.mean(rows, axis=0)
    print(f"mean over {args.splits} splits: svm slice accuracy {mean[0]:.3f}, subject accuracy {mean[1]:.2f}, "
          f"mean difference {mean[2]:.3f}; shuffled labels {mean[3]:.3f}")


if __name__ == "__main__":
    main()
