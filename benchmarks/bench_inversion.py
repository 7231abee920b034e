"""Whole-volume batched hybrid inversion against the per-image projector loop.

    python benchmarks/bench_inversion.py [--model demo] [--baseline-slices 6] [--baseline-steps 1000]

Baseline: what public StyleGAN projectors do, one slice at a time, 1000 Adam steps each
from the mean code, with the same loss (MSE + 0.2 (1 - SSIM)) and the same learning-rate
and noise schedule. It runs on ``--baseline-slices`` slices of the volume; its time per
slice is multiplied by the number of slices (every slice is an independent problem), and
its mean final MSE is the target. Ours: ``invert(method="hybrid")`` on the whole volume as
one batch, with increasing step counts; the first that reaches the target MSE (on the
same slices) counts. Prints both times and the ratio (target: at least 20x).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import machine

from napari_latent.latent.inversion import (
    InversionSettings,
    invert,
    iter_optimize_codes,
    latent_statistics,
    resolve_method,
)
from napari_latent.models.checkpoint import load_model
from napari_latent.progress import run_operation
from napari_latent.volumes import Volume, slice_volume
from napari_latent.volumes.phantoms import PhantomFactors, make_phantom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--space", default=None)
    parser.add_argument("--baseline-slices", type=int, default=6)
    parser.add_argument("--baseline-steps", type=int, default=1000)
    args = parser.parse_args()
    model = load_model(args.model, device="cpu")
    phantom = make_phantom(PhantomFactors(ventricle_enlargement=0.2, rotation_inplane=4.0), size=96, seed=42)
    volume = Volume(phantom.image, phantom.affine, name="phantom")
    targets, _ = slice_volume(volume, model.slice_spec)
    space = args.space or ("w" if "w" in model.spaces else model.default_space)
    n = len(targets)
    chosen = np.linspace(0, n - 1, args.baseline_slices).round().astype(int)
    mean, spread = latent_statistics(model, space)

    settings = InversionSettings(steps=args.baseline_steps, batch_size=1)
    start = time.perf_counter()
    codes = run_operation(iter_optimize_codes(model, targets[chosen], mean.expand(len(chosen), -1).clone(), space,
                                              settings, spread))
    baseline_per_slice = (time.perf_counter() - start) / len(chosen)
    with torch.no_grad():
        baseline_mse = float((model.decode(codes, space) - targets[chosen]).pow(2).mean())
    baseline_total = baseline_per_slice * n

    method = "hybrid" if resolve_method(model, "auto", space) != "optimize" else "optimize"
    ours_time, ours_mse, ours_steps = float("nan"), float("nan"), 0
    for steps in (5, 10, 20, 40, 80, 160, 320, 640, 1000):
        start = time.perf_counter()
        result = invert(model, volume, method=method, space=space, steps=steps)
        elapsed = time.perf_counter() - start
        mse = float(result.errors[chosen].mean())
        ours_time, ours_mse, ours_steps = elapsed, mse, steps
        if mse <= baseline_mse:
            break
    print(f"machine: {machine()}; model {model.name} ({model.image_size} px), space {space}, {n} slices")
    print(f"baseline (per-slice projector, {args.baseline_steps} steps): {baseline_per_slice:.2f} s per slice, "
          f"{baseline_total:.1f} s for the volume (extrapolated from {len(chosen)} slices), MSE {baseline_mse:.5f}")
    print(f"ours ({method}, whole volume in one batch): {ours_steps} steps, {ours_time:.2f} s, MSE {ours_mse:.5f}"
          + ("" if ours_mse <= baseline_mse else " (did not reach the baseline MSE)"))
    print(f"ratio (baseline time / ours, same or better MSE): {baseline_total / ours_time:.1f}x (target >= 20x)")


if __name__ == "__main__":
    main()
