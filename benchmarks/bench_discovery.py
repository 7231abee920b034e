"""Discovery methods: SeFa's speed, Voynov's training speed, and streaming PCA against sklearn PCA.

    python benchmarks/bench_discovery.py [--samples 100000] [--count 10] [--repeats 5] [--threads 1]
                                         [--voynov-steps 30]

SeFa: wall time of ``discover(model, "sefa")`` (median of ``--repeats``) on the default
64-px StyleGAN (``w``, ``w+``, ``z``) and VAE; target "well under a second".

Voynov: training steps per second of ``discover(model, "voynov")`` on the default 64-px
VAE (``z``) and StyleGAN (``w``, ``w+``) with the official batch of 32 and the CT paper's
setting (``proj``, batch 128), timed over ``--voynov-steps`` steps after 3 warm-up steps
(no evaluation); each step decodes ``2 * batch`` images and trains both networks.

PCA on ``--samples`` prior samples of the default 64-px StyleGAN's ``w`` (128 dimensions).
Ours: ``discover(model, "pca", samples=N)`` (batches of 2048 reduced to a float64 scatter
matrix). Baseline: the same samples drawn into one matrix, then
``sklearn.decomposition.PCA(n_components=K).fit`` (its ``auto`` solver). Each runs in a
fresh process; peak memory is the largest resident set size during the run (polled every
2 ms) minus the size at its start (tracemalloc cannot see torch's allocations). Prints times, memory,
their ratios, and the agreement of the two results.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
import torch
from _common import machine, ratio_line

from napari_latent.latent.discovery import discover
from napari_latent.latent.discovery.pca import sample_codes
from napari_latent.models.base import build_model


def rss_mb() -> float:
    """This process's current resident set size in MB."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


class PeakMemory:
    """The peak resident set size above the size at entry, polled every 2 ms by a thread."""

    def __enter__(self) -> PeakMemory:
        self.start = self.peak = rss_mb()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._done.wait(0.002):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())

    @property
    def increase(self) -> float:
        return self.peak - self.start


def stylegan() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("stylegan", image_size=64)


def child(kind: str, samples: int, count: int) -> None:
    """One PCA run in this (fresh) process; prints a JSON line."""
    from sklearn.decomposition import PCA  # imported before measuring

    model = stylegan()
    fit = None
    with PeakMemory() as memory:
        start = time.perf_counter()
        if kind == "ours":
            found = discover(model, "pca", count=count, samples=samples)
            components, ratio = found.vectors.double().numpy(), found.scores["explained_variance_ratio"]
        else:
            matrix = torch.cat(list(sample_codes(model, "w", samples))).numpy()
            fit_start = time.perf_counter()
            pca = PCA(n_components=count).fit(matrix)
            fit = time.perf_counter() - fit_start
            components, ratio = pca.components_.astype(np.float64), pca.explained_variance_ratio_.tolist()
        elapsed = time.perf_counter() - start
    print(json.dumps({"seconds": elapsed, "fit_seconds": fit, "peak_mb": memory.increase,
                      "components": components.tolist(), "ratio": list(ratio)}))


def run_child(kind: str, samples: int, count: int) -> dict:
    command = [sys.executable, __file__, "--child", kind, "--samples", str(samples), "--count", str(count),
               "--threads", str(torch.get_num_threads())]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_sefa(repeats: int) -> None:
    gan = stylegan()
    cases = [(gan, "w"), (gan, "w+"), (gan, "z")]
    torch.manual_seed(0)
    cases.append((build_model("vae", image_size=64), "z"))
    for model, space in cases:
        discover(model, "sefa", space=space, count=10)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            discover(model, "sefa", space=space, count=10)
            times.append(time.perf_counter() - start)
        print(f"sefa {model.name} {model.image_size} px, space {space} ({model.latent_dim(space)} d): "
              f"median {statistics.median(times) * 1000:.1f} ms over {repeats} runs (target < 1000 ms)")


def bench_voynov(steps: int) -> None:
    torch.manual_seed(0)
    vae, gan = build_model("vae", image_size=64), stylegan()
    cases = [(vae, "z", {"deformator": "orthonormal", "batch_size": 32}),
             (vae, "z", {"deformator": "proj", "batch_size": 128}),
             (vae, "z", {"deformator": "orthonormal", "batch_size": 32, "reconstructor": "resnet"}),
             (gan, "w", {"deformator": "orthonormal", "batch_size": 32}),
             (gan, "w+", {"deformator": "orthonormal", "batch_size": 32})]
    warm_up = 3
    times: list[float] = []

    def record(event: object) -> None:
        times.append(time.perf_counter())

    for model, space, settings in cases:
        times.clear()
        discover(model, "voynov", space=space, count=10, steps=warm_up + steps, eval_samples=0,
                 progress=record, **settings)
        rate = steps / (times[-1] - times[warm_up - 1])
        described = ", ".join(f"{k} {v}" for k, v in settings.items())
        print(f"voynov {model.name} {model.image_size} px, space {space} ({model.latent_dim(space)} d), {described}: "
              f"{rate:.2f} steps/s ({rate * 2 * settings['batch_size']:.0f} images/s) over {steps} steps")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--voynov-steps", type=int, default=30, help="timed voynov training steps per case")
    parser.add_argument("--child", choices=["ours", "baseline"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        child(args.child, args.samples, args.count)
        return
    print(f"machine: {machine()}")
    bench_sefa(args.repeats)
    bench_voynov(args.voynov_steps)
    ours, baseline = run_child("ours", args.samples, args.count), run_child("baseline", args.samples, args.count)
    print(f"pca on {args.samples} samples of StyleGAN 64 px w (128 d), {args.count} components:")
    print(f"  baseline: sampling + sklearn PCA fit {baseline['seconds']:.2f} s "
          f"(fit alone {baseline['fit_seconds']:.2f} s), peak +{baseline['peak_mb']:.0f} MB")
    print(f"  ours: streaming {ours['seconds']:.2f} s, peak +{ours['peak_mb']:.0f} MB")
    print("  " + ratio_line("time", ours["seconds"], baseline["seconds"], "s", higher_is_better=False))
    print("  " + ratio_line("peak memory", max(ours["peak_mb"], 1.0), max(baseline["peak_mb"], 1.0), "MB",
                            higher_is_better=False) + " (ratio > 1: ours uses less)")
    cos = np.abs(np.sum(np.array(ours["components"]) * np.array(baseline["components"]), axis=1))
    gap = np.max(np.abs(np.array(ours["ratio"]) - np.array(baseline["ratio"])))
    print(f"  agreement: min |cos| of matching components {cos.min():.6f}, max difference of explained "
          f"variance ratios {gap:.2e}")


if __name__ == "__main__":
    main()
