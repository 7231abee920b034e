"""Training throughput of the engine against a plain PyTorch loop over the same network and data.

    python benchmarks/bench_training.py [--model vae] [--epochs 3]

Both train the same model (same initial weights) on the same prepared slices with Adam,
batch 32, no augmentation. "Steps only" counts the time between the first and the last
training step (the engine's validation passes and checkpoints excluded); "whole run"
includes them. Target: ratio of at least 0.9.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import tempfile
import time
from pathlib import Path

import torch
from _common import machine, phantom_cohort, ratio_line

from napari_latent.models.base import build_model
from napari_latent.progress import run_operation
from napari_latent.training import TrainSettings, iter_prepare_data, train_model
from napari_latent.training.distributed import DistributedContext
from napari_latent.training.loop import _batches, epoch_order, step_generator
from napari_latent.training.objectives.base import objective_class
from napari_latent.training.precision import Precision
from napari_latent.volumes import SliceSpec


def plain_vae_loop(model: torch.nn.Module, images: torch.Tensor, epochs: int, batch_size: int, lr: float) -> float:
    """The textbook loop: shuffle, slice a batch, forward, loss, backward, step. Returns seconds."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(0)
    model.train()
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for i in range(0, len(order) - 1, batch_size):
            batch = images[order[i:i + batch_size]]
            out = model(batch, generator)
            sse = (out["reconstruction"] - batch).pow(2).flatten(1).sum(1).mean()
            kl = (0.5 * (out["mean"].pow(2) + out["logvar"].exp() - 1 - out["logvar"])).sum(1).mean()
            loss = (sse + kl) / batch[0].numel()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return time.perf_counter() - start


def plain_objective_loop(model, images, epochs, batch_size) -> float:
    """A plain loop that calls the model family's objective directly (for non-VAE models)."""
    objective = objective_class(model.objective)(model, TrainSettings(), DistributedContext(),
                                                 Precision(torch.device("cpu"), False))
    start = time.perf_counter()
    step = 0
    for epoch in range(epochs):
        for batch in _batches(epoch_order(len(images), 0, epoch, DistributedContext()), batch_size):
            objective.train_step(images[batch], step_generator(0, step))
            step += 1
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vae")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    cohort = phantom_cohort(12, 64)
    data = run_operation(iter_prepare_data(cohort, SliceSpec(size=args.size), val_fraction=0.2, seed=0))
    images = data.train.images
    model = build_model(args.model, image_size=args.size)
    baseline_model = copy.deepcopy(model)
    batch_sizes = [len(b) for b in _batches(list(range(len(images))), 32)]  # the same batches in both loops
    n_images = args.epochs * sum(batch_sizes)

    if args.model == "vae":
        plain_seconds = plain_vae_loop(baseline_model, images, args.epochs, 32, 1e-3)
    else:
        plain_seconds = plain_objective_loop(baseline_model, images, args.epochs, 32)

    times: list[tuple[str, float]] = []
    out = Path(tempfile.mkdtemp()) / "bench.safetensors"
    start = time.perf_counter()
    settings = TrainSettings(epochs=args.epochs, batch_size=32, device="cpu", augment_rotation=0.0,
                             augment_scale=0.0)
    train_model(data, model, out=out, settings=settings,
                progress=lambda e: times.append((e.stage, time.perf_counter())))
    whole = time.perf_counter() - start
    train_times = [t for stage, t in times if stage == "train"]
    steps = len(train_times)
    # time per step, measured between consecutive training events inside epochs: the interval
    # ending at the k-th event of an epoch is the duration of its k-th batch
    step_seconds, step_images, index_in_epoch = 0.0, 0, 0
    for (s1, t1), (s2, t2) in itertools.pairwise(times):
        if s2 != "train":
            continue
        index_in_epoch = index_in_epoch + 1 if s1 == "train" else 0
        if s1 == "train":
            step_seconds += t2 - t1
            step_images += batch_sizes[index_in_epoch]
    ours_steps_rate = step_images / step_seconds
    print(f"machine: {machine()}; model {args.model} at {args.size} px, {len(images)} training slices, "
          f"{args.epochs} epochs, {steps} steps")
    print(ratio_line("training throughput (steps only)", ours_steps_rate, n_images / plain_seconds, "images/s"))
    print(ratio_line("training throughput (whole run incl. validation and checkpoints)", n_images / whole,
                     n_images / plain_seconds, "images/s"))


if __name__ == "__main__":
    main()
