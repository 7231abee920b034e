"""Whole-volume traversal against a loop that decodes one slice at a time per alpha.

    python benchmarks/bench_traversal.py [--model demo] [--size 128] [--alphas 0:3:15]
                                         [--repeats 3] [--threads N]

Baseline: what public research code does (e.g. the MS paper's pipeline and the CT code it
builds on): for each alpha, for each slice, ``G(z_slice + alpha * d)`` with a batch of one,
under ``torch.no_grad``, with the model as it is; then the decoded slices are put back on
the volume grid (``SliceGeometry.to_volume``). Each repeat times it on one alpha (the
first, middle and last in turn); its best time per alpha is multiplied by the number of
alphas (each alpha is the same amount of work). Ours: ``traverse()`` on every alpha
(batches of 16 images across slices and alphas, inference mode, a channels-last copy of
the model), and again with bfloat16 autocast. The methods are interleaved within each
repeat (the machine is shared: its speed drifts) and each one's best time counts; the
first call of ours (model copy and oneDNN set-up) is reported too. Both outputs are
compared voxel by voxel.

FLOPs of the decoder are counted with ``torch.utils.flop_counter.FlopCounterMode`` (one
image), and the achieved rate is compared with a float32 matmul measured now and with the
machine's nominal 135 GFLOP/s.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from _common import machine
from torch.utils.flop_counter import FlopCounterMode

from napari_latent.latent.inversion import invert
from napari_latent.latent.traversal import LazyTraversal, parse_alphas, traverse
from napari_latent.models.checkpoint import load_model
from napari_latent.volumes import Volume
from napari_latent.volumes.phantoms import PhantomFactors, make_phantom

NOMINAL_MATMUL_GFLOPS = 135.0


def matmul_rate(size: int = 2048, repeats: int = 5) -> float:
    """Best float32 matmul rate in GFLOP/s with torch's threads."""
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def decoder_flops(model, space: str) -> float:
    """FLOPs of decoding one image (counted on a batch of 8)."""
    codes = torch.zeros(8, model.latent_dim(space))
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.decode(codes, space)
    return counter.get_total_flops() / 8


@torch.no_grad()
def baseline_frame(model, codes, vector: torch.Tensor, alpha: float, source: Volume) -> np.ndarray:
    """One alpha, one slice at a time, the model as it is."""
    model.eval()
    images = [model.decode((code + alpha * vector)[None], codes.space) for code in codes.codes]
    return codes.geometry.to_volume(torch.cat(images), fill=source)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--alphas", default="0:3:15")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu")
    phantom = make_phantom(PhantomFactors(), size=args.size, seed=42)
    volume = Volume(phantom.image, phantom.affine, name="phantom")
    codes = invert(model, volume, method="auto")
    generator = torch.Generator().manual_seed(0)
    vector = torch.randn(codes.codes.shape[1], generator=generator)
    vector /= vector.norm()
    alphas = np.sort(parse_alphas(args.alphas))
    count, slices = len(alphas), len(codes)
    images = count * slices
    flops = decoder_flops(model, codes.space) * images
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}")
    print(f"model {model.name} ({model.image_size} px, {decoder_flops(model, codes.space) / 1e9:.3f} GFLOP per "
          f"image), volume {volume.shape}, {slices} slices x {count} alphas = {images} images, "
          f"{flops / 1e9:.0f} GFLOP")

    chosen = sorted({0, count // 2, count - 1})
    timings = {"baseline": float("inf"), "ours fp32": float("inf"), "ours bf16": float("inf")}
    results: dict[str, object] = {}
    frames: dict[int, np.ndarray] = {}
    start = time.perf_counter()
    results["ours fp32"] = traverse(model, codes, vector, alphas, source=volume)
    first_call = time.perf_counter() - start
    for repeat in range(args.repeats):
        index = chosen[repeat % len(chosen)]
        start = time.perf_counter()
        frames[index] = baseline_frame(model, codes, vector, float(alphas[index]), volume)
        timings["baseline"] = min(timings["baseline"], time.perf_counter() - start)
        for name, bf16 in (("ours fp32", False), ("ours bf16", True)):
            start = time.perf_counter()
            results[name] = traverse(model, codes, vector, alphas, source=volume, bf16=bf16)
            timings[name] = min(timings[name], time.perf_counter() - start)
    lazy = LazyTraversal(model, codes, vector, alphas, source=volume)
    shifted = lazy.shifted_codes(np.repeat(np.arange(count), slices), np.tile(np.arange(slices), count))
    lazy.decoder(shifted[:64])  # warm up
    decode_only = float("inf")
    for _ in range(args.repeats):
        start = time.perf_counter()
        lazy.decoder(shifted)
        decode_only = min(decode_only, time.perf_counter() - start)
    baseline_total = timings["baseline"] * count

    low, high = codes.geometry.window_values
    ours = results["ours fp32"]
    difference = max(float(np.abs(frames[i] - ours.images[i]).max()) for i in frames)  # type: ignore[attr-defined]
    bf16_error = float(np.abs(results["ours bf16"].images - ours.images).max())  # type: ignore[attr-defined]
    rate = matmul_rate()
    print(f"baseline (one slice at a time per alpha, batch 1): {timings['baseline']:.2f} s per alpha, "
          f"{baseline_total:.1f} s for {count} alphas, {flops / baseline_total / 1e9:.1f} GFLOP/s")
    print(f"ours fp32 (whole volume, batches of 16 across slices and alphas): {timings['ours fp32']:.2f} s "
          f"(first call {first_call:.2f} s), {flops / timings['ours fp32'] / 1e9:.1f} GFLOP/s end to end; decoder "
          f"alone {decode_only:.2f} s, {flops / decode_only / 1e9:.1f} GFLOP/s")
    print(f"ours bf16 autocast: {timings['ours bf16']:.2f} s, {flops / timings['ours bf16'] / 1e9:.1f} GFLOP/s; "
          f"max difference from fp32 {bf16_error:.4g} intensity units ({bf16_error / (high - low):.2%} of the "
          f"window)")
    print(f"identical output: max |baseline - ours| = {difference:.3g} intensity units "
          f"({difference / (high - low):.1e} of the window {low:.3g}..{high:.3g}) on {len(frames)} alphas")
    print(f"float32 matmul now: {rate:.0f} GFLOP/s (nominal {NOMINAL_MATMUL_GFLOPS:.0f}); the decoder reaches "
          f"{flops / decode_only / 1e9 / rate:.0%} of it ({flops / decode_only / 1e9 / NOMINAL_MATMUL_GFLOPS:.0%} "
          "of nominal)")
    print(f"ratio (baseline time / ours fp32): {baseline_total / timings['ours fp32']:.1f}x (target >= 3x; first "
          f"call {baseline_total / first_call:.1f}x); bf16: {baseline_total / timings['ours bf16']:.1f}x; "
          f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
