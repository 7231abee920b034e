"""Reconstruction quality in a fixed wall-clock budget: our quality presets against MONAI's AutoencoderKL.

    python benchmarks/bench_quality.py [--cohort DIR] [--minutes 15] [--families vqvae,vae,introvae,dcgan,stylegan]
                                       [--no-monai] [--json OUT.json]

The data is a real-anatomy cohort: 40 subjects warped from nibabel's T1 scan
(``napari-latent phantoms OUT --from-scan anatomical --subjects 40 --size 128``), made in a
temporary folder unless ``--cohort`` names one. Every model trains on the same training
slices (128 px, our slicing and split: 20 % of the subjects held out, seed 0) for the same
wall-clock budget and is scored on the same held-out slices with the same functions
(:func:`napari_latent.metrics.image_metrics`: MSE on the [-1, 1] scale, SSIM, PSNR).

* **Ours**: ``train_model`` with the family's ``quality`` preset at 128 px and
  ``time_limit=--minutes`` (epochs as many as fit; the epoch in progress at the limit ends
  early and is validated). Autoencoders reconstruct with ``decode(encode(x))``. GANs have no
  encoder: their figure is the reconstruction after our default inversion (``plan_inversion``,
  200 optimisation steps) of ``--gan-slices`` held-out slices spread over the set; the
  inversion time is reported, not counted in the budget.
* **MONAI**: ``monai.networks.nets.AutoencoderKL`` trained with the losses of MONAI's
  AutoencoderKL tutorial that need no download: L1 reconstruction + 1e-6 KL, Adam 1e-4,
  batch 32, until the same budget is spent (one step past it at most), reconstructing from
  the posterior mean. The tutorial's perceptual term needs pretrained weights (a download)
  and is left out; so is its adversarial term, which halves the steps on a CPU and does not
  serve MSE or SSIM. Its network is the tutorial's shape made CPU-sized: channels
  ``--monai-channels`` (default 32,64,64: a 32 x 32 x 3 latent at 128 px; the tutorial's
  128,128,256 takes 10x longer per step here, 69 s per batch of 32).

Target (issue 18): ours at least matches MONAI's validation SSIM and MSE; the VQ-VAE
quality preset reaches SSIM 0.85 at 128 px within 15 minutes on this 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import machine

from napari_latent.metrics import image_metrics
from napari_latent.progress import run_operation
from napari_latent.training import iter_prepare_data, train_model
from napari_latent.training.data import SliceSet, TrainingData
from napari_latent.training.presets import training_preset
from napari_latent.volumes import SliceSpec

FAMILIES = ("vqvae", "vae", "introvae", "dcgan", "stylegan")


def warped_cohort(folder: Path, subjects: int, size: int) -> Path:
    """The 40-subject cohort warped from nibabel's T1 (made once in ``folder``)."""
    from napari_latent.volumes.warped import make_warped_cohort

    if not (folder / "cohort.csv").is_file():
        make_warped_cohort(folder, n_subjects=subjects, seed=0, size=size)
    return folder


def held_out_images(data: TrainingData) -> torch.Tensor:
    """Every held-out slice, ``(n, 1, S, S)`` in [-1, 1]."""
    return data.validation.images


def evenly_spaced(n: int, count: int) -> np.ndarray:
    """``count`` indices spread over ``range(n)`` (all of them when ``count >= n``)."""
    return np.unique(np.linspace(0, n - 1, min(count, n)).round().astype(int))


@torch.no_grad()
def autoencoder_reconstructions(model: Any, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """``decode(encode(x))`` batch by batch."""
    model.eval()
    parts = [model.decode(model.encode(images[i:i + batch_size])).float() for i in range(0, len(images), batch_size)]
    return torch.cat(parts)


def inverted_reconstructions(model: Any, images: torch.Tensor) -> torch.Tensor:
    """Reconstructions of a GAN through our default inversion (200 optimisation steps)."""
    from napari_latent.latent.inversion import iter_invert_slices, plan_inversion

    plan = plan_inversion(model)
    codes, _ = run_operation(iter_invert_slices(plan, images, keys=np.arange(len(images))))
    with torch.no_grad():
        return torch.cat([model.decode(codes[i:i + 64], plan.space).float() for i in range(0, len(codes), 64)])


def run_ours(cohort: Path, family: str, size: int, minutes: float, gan_slices: int, images: torch.Tensor,
             folder: Path) -> dict[str, Any]:
    """Train ``family`` with its quality preset for ``minutes`` and score it on ``images``."""
    preset = training_preset(family, "quality", size)
    settings = preset.settings(device="cpu", epochs=100_000, time_limit=minutes)
    start = time.perf_counter()
    result = train_model(cohort, family, out=folder / f"{family}.safetensors", settings=settings,
                         **preset.model_settings())
    seconds = time.perf_counter() - start
    model = result.model
    row: dict[str, Any] = {"model": f"ours: {family} (quality preset)", "train_s": seconds,
                           "epochs": result.epochs_completed, "steps": result.steps}
    if model.has_encoder:
        targets, recon = images, autoencoder_reconstructions(model, images)
        row["scored_on"] = f"{len(images)} held-out slices"
    else:
        targets = images[torch.from_numpy(evenly_spaced(len(images), gan_slices))]
        begin = time.perf_counter()
        recon = inverted_reconstructions(model, targets)
        row["inversion_s"] = time.perf_counter() - begin
        row["scored_on"] = f"{len(targets)} held-out slices, inverted (200 steps)"
    row.update(image_metrics(recon, targets))
    return row


def monai_autoencoder(channels: tuple[int, ...]) -> torch.nn.Module:
    """MONAI's AutoencoderKL in the tutorial's shape, CPU-sized, without attention."""
    from monai.networks.nets import AutoencoderKL

    groups = math.gcd(*channels, 32)
    return AutoencoderKL(spatial_dims=2, in_channels=1, out_channels=1, channels=channels, latent_channels=3,
                         num_res_blocks=1, norm_num_groups=groups, attention_levels=(False,) * len(channels),
                         with_encoder_nonlocal_attn=False, with_decoder_nonlocal_attn=False)


def train_monai(train: SliceSet, minutes: float, channels: tuple[int, ...], batch_size: int = 32,
                kl_weight: float = 1e-6, lr: float = 1e-4, seed: int = 0) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train AutoencoderKL with L1 + KL until ``minutes`` of wall clock are spent."""
    torch.manual_seed(seed)
    model = monai_autoencoder(channels)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    deadline = time.perf_counter() + 60.0 * minutes
    start = time.perf_counter()
    steps = 0
    model.train()
    while time.perf_counter() < deadline:
        order = torch.randperm(len(train), generator=generator)
        for i in range(0, len(order), batch_size):
            images = train.read(order[i:i + batch_size])
            reconstruction, z_mu, z_sigma = model(images)
            l1 = (reconstruction - images).abs().mean()
            kl = 0.5 * (z_mu.pow(2) + z_sigma.pow(2) - torch.log(z_sigma.pow(2)) - 1).sum(dim=(1, 2, 3)).mean()
            loss = l1 + kl_weight * kl
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
            if time.perf_counter() >= deadline:
                break
    facts = {"model": f"MONAI AutoencoderKL {','.join(map(str, channels))} (L1 + KL)",
             "train_s": time.perf_counter() - start, "epochs": steps * batch_size / len(train),
             "steps": steps, "parameters": sum(p.numel() for p in model.parameters())}
    return model, facts


@torch.no_grad()
def monai_reconstructions(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Decoded posterior means."""
    model.eval()
    parts = []
    for i in range(0, len(images), batch_size):
        z_mu, _ = model.encode(images[i:i + batch_size])
        parts.append(model.decode(z_mu).float())
    return torch.cat(parts)


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    lines = ["| model | training (wall) | epochs | steps | val SSIM | val MSE | val PSNR | scored on |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        extra = f" (+{row['inversion_s']:.0f} s inversion)" if "inversion_s" in row else ""
        lines.append(f"| {row['model']} | {row['train_s'] / 60:.1f} min{extra} | {row['epochs']:.2f} | "
                     f"{row['steps']} | "
                     f"{row['ssim']:.3f} | {row['mse']:.5f} | {row['psnr']:.1f} dB | {row['scored_on']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, default=None, help="a cohort folder (default: warp one from anatomical)")
    parser.add_argument("--subjects", type=int, default=40)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--minutes", type=float, default=15.0, help="the wall-clock budget of each model")
    parser.add_argument("--families", default="vqvae", help=f"ours to train, comma-separated ({','.join(FAMILIES)})")
    parser.add_argument("--no-monai", action="store_true", help="skip MONAI's AutoencoderKL")
    parser.add_argument("--monai-channels", default="32,64,64")
    parser.add_argument("--gan-slices", type=int, default=128, help="held-out slices a GAN is inverted on")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = parser.parse_args()
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    work = Path(tempfile.mkdtemp(prefix="napari-latent-quality-"))
    cohort = args.cohort or warped_cohort(work / "cohort", args.subjects, args.size)
    print(f"machine: {machine()}")
    data = run_operation(iter_prepare_data(cohort, SliceSpec(size=args.size), val_fraction=0.2, seed=0))
    images = held_out_images(data)
    print(f"cohort {cohort}: {len(data.train)} training slices of {len(data.train.names)} subjects, "
          f"{len(images)} held-out slices of {len(data.validation.names)} subjects; budget {args.minutes:g} min each")
    rows: list[dict[str, Any]] = []
    if not args.no_monai:
        channels = tuple(int(c) for c in args.monai_channels.split(","))
        model, facts = train_monai(data.train, args.minutes, channels)
        facts["scored_on"] = f"{len(images)} held-out slices"
        facts.update(image_metrics(monai_reconstructions(model, images), images))
        rows.append(facts)
        print(table(rows[-1:]), flush=True)
    for family in families:
        rows.append(run_ours(cohort, family, args.size, args.minutes, args.gan_slices, images, work))
        print(table(rows[-1:]), flush=True)
    print()
    print(table(rows))
    monai = next((r for r in rows if r["model"].startswith("MONAI")), None)
    if monai is not None:
        for row in rows:
            if row is monai:
                continue
            print(f"{row['model']}: SSIM {row['ssim']:.3f} vs MONAI {monai['ssim']:.3f} "
                  f"(ratio {row['ssim'] / monai['ssim']:.3f}); MSE {row['mse']:.5f} vs {monai['mse']:.5f} "
                  f"(MONAI/ours {monai['mse'] / row['mse']:.2f}); "
                  f"{'matches or beats' if row['ssim'] >= monai['ssim'] and row['mse'] <= monai['mse'] else 'BELOW'}")
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine(), "minutes": args.minutes, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
