"""Measure inversion quality (per-slice MSE) and speed for docs/inversion.md.

    python docs/scripts/measure_inversion.py [--out DIR] [--gan-epochs 2] [--encoder-steps 300]

Inverts one phantom volume (``--size`` cubed, default 96, 192 mm field of view, not part of
any training cohort) with

* the bundled demo VAE: ``encoder``, ``optimize`` and ``hybrid`` (200 steps);
* a small StyleGAN trained here for ``--gan-epochs`` epochs on a 12-subject phantom cohort
  (64 px), with an inversion encoder trained for ``--encoder-steps`` steps: ``optimize`` in
  ``w`` and ``w+``, ``encoder`` and ``hybrid`` in ``w``.

Prints one Markdown table row per run: model, method, space, steps, mean and median MSE
over the slices (images in [-1, 1]), seconds and slices.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_latent.latent.inversion import invert
from napari_latent.models.checkpoint import load_model
from napari_latent.training import TrainSettings, train_model
from napari_latent.training.encoder import store_inversion_encoder, train_encoder
from napari_latent.volumes import Volume
from napari_latent.volumes.phantoms import PhantomFactors, make_phantom, make_phantom_cohort

SMALL_STYLEGAN = {"image_size": 64, "base_channels": 16, "max_channels": 64, "latent_dim": 64, "w_dim": 64,
                  "mapping_layers": 2}


def row(model_name: str, volume: Volume, model, method: str, space: str | None, steps: int | None) -> str:
    start = time.perf_counter()
    codes = invert(model, volume, method=method, space=space, steps=steps)
    seconds = time.perf_counter() - start
    shown_steps = "-" if method == "encoder" else str(steps)
    return (f"| {model_name} | {method} | {codes.space} | {shown_steps} | {np.mean(codes.errors):.4f} | "
            f"{np.median(codes.errors):.4f} | {seconds:.2f} | {len(codes)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for the cohort and the GAN (default: temp)")
    parser.add_argument("--gan-epochs", type=int, default=2)
    parser.add_argument("--encoder-steps", type=int, default=300)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--size", type=int, default=96, help="voxels per side of the inverted phantom")
    parser.add_argument("--skip-demo", action="store_true", help="only the GAN rows")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="napari-latent-inversion-"))
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    phantom = make_phantom(PhantomFactors(ventricle_enlargement=0.5, cortical_atrophy=0.4, lesion_load=0.4,
                                          rotation_inplane=4.0), size=args.size, seed=42)
    volume = Volume(phantom.image, phantom.affine, name="phantom")

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| model | method | space | steps | mean MSE | median MSE | seconds | slices |")
    print("|---|---|---|---|---|---|---|---|")
    if not args.skip_demo:
        demo = load_model("demo", device="cpu")
        for method, steps in (("encoder", None), ("optimize", args.steps), ("hybrid", args.steps)):
            print(row("demo vae", volume, demo, method, "z", steps), flush=True)

    gan_path = out / "stylegan.safetensors"
    if not gan_path.is_file():
        cohort = out / "cohort"
        make_phantom_cohort(cohort, n_subjects=12, size=64, seed=3)
        start = time.perf_counter()
        train_model(cohort, "stylegan", out=gan_path, settings=TrainSettings(epochs=args.gan_epochs, batch_size=32,
                                                                             device="cpu", seed=0),
                    **SMALL_STYLEGAN)
        print(f"(small StyleGAN: {args.gan_epochs} epochs in {time.perf_counter() - start:.0f} s)", flush=True)
        start = time.perf_counter()
        gan = load_model(gan_path, device="cpu")
        store_inversion_encoder(gan_path, train_encoder(gan, space="w", steps=args.encoder_steps, batch_size=32))
        print(f"(inversion encoder: {args.encoder_steps} steps in {time.perf_counter() - start:.0f} s)", flush=True)
    gan = load_model(gan_path, device="cpu")
    name = "small stylegan"
    for method, space, steps in (("optimize", "w", args.steps), ("optimize", "w+", args.steps),
                                 ("encoder", "w", None), ("hybrid", "w", args.steps)):
        print(row(name, volume, gan, method, space, steps), flush=True)


if __name__ == "__main__":
    main()
