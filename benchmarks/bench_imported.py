"""Imported models side by side (issue 17): our StyleGAN2-ADA synthesis and our MONAI wrappers, CPU, one run.

    python benchmarks/bench_imported.py [--quick]

Sections (each also a script of its own):

* :mod:`imported_stylegan`: our re-implemented StyleGAN2-ADA synthesis against an op-by-op
  re-implementation of the official code's CPU path, on the fixture's network at batch 16
  (target: at least 1.5x at identical output, within 1e-4);
* :mod:`imported_monai`: MONAI's own ``decode`` against ours on the same codes, AutoencoderKL
  and VQVAE at 64 and 128 px (target: our wrapping overhead at most 5 %).

Run it on an otherwise idle machine; each section alternates the two paths within its
repeats and takes the best time of each.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import imported_monai
import imported_stylegan
from _common import machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, 64 px only for MONAI")
    args = parser.parse_args()
    print(machine())
    rows = imported_stylegan.run(args.quick)
    ours, official, summary = rows
    print(f"StyleGAN2-ADA synthesis, fixture network, batch {ours['batch']}: ours {ours['images_per_s']:.1f} images/s, "
          f"official path {official['images_per_s']:.1f} images/s, ratio {summary['ratio']:.2f}x "
          f"(target >= 1.5x), max |diff| {summary['max_abs_difference']:.1e} (target <= 1e-4)")
    for row in imported_monai.run(args.quick):
        print(f"MONAI {row['model']} decode, {row['image_size']} px, batch {row['batch']}: MONAI "
              f"{row['monai_images_per_s']:.1f} images/s, ours {row['ours_images_per_s']:.1f} images/s, overhead "
              f"{100 * row['overhead']:+.1f} % (target <= 5 %), max |diff| {row['max_abs_difference']:.1e}")


if __name__ == "__main__":
    main()
