"""Our re-implemented StyleGAN2-ADA synthesis against the official code's CPU path, on the fixture snapshot.

    python benchmarks/imported_stylegan.py [--quick] [--snapshot PATH]

Both paths synthesise images from the same ``ws`` (batch 16, float32, 2 torch threads,
``noise_mode="const"``) with the same weights (the fixture's ``G_ema``):

* **ours**: :meth:`StyleGAN2ADA.synthesis` (styles modulate the activations so the batch
  shares one convolution weight; separable FIR filters; the x2 upsampling of the skip
  images as a transposed depthwise convolution);
* **official path**: our own op-by-op re-implementation, written here, of what the official code
  does on a CPU in evaluation mode: the "fused" modulated convolution (a weight per sample,
  demodulated, one grouped convolution over the batch; a grouped transposed convolution
  for ``up=2``), and the reference ``upfirdn2d`` (upsampling by inserting zeros, padding,
  a full 2-D depthwise FIR convolution) and ``bias_act`` (separate add, leaky ReLU, gain).

The methods alternate within each repeat and each one's best time counts. Reported:
images/s of each, the ratio, and the largest absolute difference between the outputs
(and of ours against the fixture's reference images, batch of 4).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from napari_latent.models.importers import import_model

FIXTURES = Path(os.environ.get("NAPARI_LATENT_SG2_FIXTURES",
                               Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "stylegan2-ada"))
SNAPSHOT = FIXTURES / "network-snapshot-000000.pkl"
#: Numbers-only copies of the fixture's state dicts and reference outputs (used when the snapshot is absent).
DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "stylegan2_ada"
BATCH = 16
THREADS = 2


# -- the official code's CPU path, op by op ---------------------------------------------------------

def ref_bias_act(x: torch.Tensor, b: torch.Tensor, lrelu: bool, gain: float) -> torch.Tensor:
    x = x + b.reshape(1, -1, 1, 1)
    if lrelu:
        x = F.leaky_relu(x, 0.2)
    return x * gain if gain != 1 else x


def ref_upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int, pad: tuple[int, int, int, int],
                  gain: float) -> torch.Tensor:
    n, c, h, w = x.shape
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
    x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, list(pad))
    f = (f * gain).flip((0, 1))[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, f, groups=c)


def ref_modconv(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool, up: int,
                padding: int, f: torch.Tensor | None) -> torch.Tensor:
    n = x.shape[0]
    out_c, in_c, kh, kw = weight.shape
    w = weight[None] * styles[:, None, :, None, None]
    if demodulate:
        w = w * (w.square().sum(dim=(2, 3, 4)) + 1e-8).rsqrt()[:, :, None, None, None]
    x = x.reshape(1, -1, *x.shape[2:])
    if up == 1:
        x = F.conv2d(x, w.reshape(-1, in_c, kh, kw), padding=padding, groups=n)
    else:
        w = w.reshape(n, out_c, in_c, kh, kw).transpose(1, 2).reshape(n * in_c, out_c, kh, kw)
        x = F.conv_transpose2d(x, w, stride=2, groups=n)
        x = ref_upfirdn2d(x, f, 1, (1, 1, 1, 1), 4.0)
    return x.reshape(n, -1, *x.shape[2:])


def ref_affine(layer, w: torch.Tensor) -> torch.Tensor:
    return torch.addmm((layer.bias * layer.bias_gain)[None], w, (layer.weight * layer.weight_gain).t())


def ref_layer(layer, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    styles = ref_affine(layer.affine, w)
    x = ref_modconv(x, layer.weight, styles, True, layer.up, layer.padding, layer.resample_filter)
    x = x + layer.noise_const * layer.noise_strength
    return ref_bias_act(x, layer.bias, True, math.sqrt(2))


def ref_torgb(layer, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    styles = ref_affine(layer.affine, w) * layer.weight_gain
    return ref_bias_act(ref_modconv(x, layer.weight, styles, False, 1, 0, None), layer.bias, False, 1.0)


def official_path(synthesis, ws: torch.Tensor) -> torch.Tensor:
    """The official skip-architecture synthesis on a CPU (fused modulated convolutions, reference upfirdn2d)."""
    x = img = None
    start = 0
    for block in synthesis.blocks():
        rows = ws[:, start:start + block.num_conv + block.num_torgb].unbind(1)
        if block.in_channels == 0:
            x = block.const[None].repeat(ws.shape[0], 1, 1, 1)
            x = ref_layer(block.conv1, x, rows[0])
        else:
            x = ref_layer(block.conv0, x, rows[0])
            x = ref_layer(block.conv1, x, rows[1])
        if img is not None:
            img = ref_upfirdn2d(img, block.resample_filter, 2, (2, 1, 2, 1), 4.0)
        y = ref_torgb(block.torgb, x, rows[block.num_conv])
        img = img + y if img is not None else y
        start += block.num_conv
    return img


# -- the benchmark ----------------------------------------------------------------------------------

def _best(fn, ws: torch.Tensor) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = fn(ws)
    return time.perf_counter() - start, out


def fixture_model(snapshot: Path = SNAPSHOT):
    """The fixture's ``G_ema`` (and D): from the snapshot when it is there, else from the numbers-only copies of
    its state dicts in ``tests/data/stylegan2_ada`` (the same weights)."""
    if snapshot.is_file():
        return import_model(snapshot)
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file

    from napari_latent.models.stylegan2_ada.importer import model_from_state_dicts

    def kwargs(name: str) -> dict:
        with safe_open(str(DATA / f"{name}.safetensors"), "pt") as handle:
            return json.loads(handle.metadata()["init_kwargs"])

    return model_from_state_dicts("fixture", "G_ema", kwargs("G_ema"), load_file(DATA / "G_ema.safetensors"),
                                  kwargs("D"), load_file(DATA / "D.safetensors"))


def run(quick: bool = False, snapshot: Path = SNAPSHOT) -> list[dict]:
    """Time both paths; one dict per method plus a summary row (ratio, max abs difference)."""
    torch.set_num_threads(THREADS)
    model = fixture_model(snapshot)
    synthesis = model.generator.synthesis
    z = torch.randn(BATCH, model.config.latent_dim, generator=torch.Generator().manual_seed(0))
    repeats = 3 if quick else 10
    with torch.inference_mode():
        ws = model.mapping(z)
        methods = {"ours": lambda w: model.synthesis(w), "official path": lambda w: official_path(synthesis, w)}
        outputs = {name: fn(ws) for name, fn in methods.items()}  # warm-up
        times: dict[str, list[float]] = {name: [] for name in methods}
        for _ in range(repeats):
            for name, fn in methods.items():
                seconds, _ = _best(fn, ws)
                times[name].append(seconds)
        difference = float((outputs["ours"] - outputs["official path"]).abs().max())
        reference_difference = None
        references = [path for path in (snapshot.parent / "reference.npz", DATA / "reference.npz") if path.is_file()]
        if references:
            with np.load(references[0]) as ref:
                ours = model.synthesis(torch.from_numpy(ref["ws"])).numpy()
                official = official_path(synthesis, torch.from_numpy(ref["ws"])).numpy()
                reference_difference = (float(np.abs(ours - ref["img"]).max()),
                                        float(np.abs(official - ref["img"]).max()))
    rows = []
    for name in methods:
        best = min(times[name])
        rows.append({"method": name, "batch": BATCH, "threads": THREADS, "best_s": best,
                     "images_per_s": BATCH / best, "median_s": float(np.median(times[name]))})
    rows.append({"method": "summary", "ratio": rows[1]["best_s"] / rows[0]["best_s"],
                 "max_abs_difference": difference,
                 "max_abs_vs_reference_ours": reference_difference[0] if reference_difference else None,
                 "max_abs_vs_reference_official_path": reference_difference[1] if reference_difference else None})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 10")
    parser.add_argument("--snapshot", type=Path, default=SNAPSHOT)
    args = parser.parse_args()
    rows = run(args.quick, args.snapshot)
    print(f"StyleGAN2-ADA synthesis, {args.snapshot.name}: batch {BATCH}, float32, {THREADS} threads, "
          f"torch {torch.__version__}")
    for row in rows[:-1]:
        print(f"  {row['method']:>14}: {row['images_per_s']:8.1f} images/s (best {row['best_s'] * 1e3:.1f} ms, "
              f"median {row['median_s'] * 1e3:.1f} ms)")
    summary = rows[-1]
    print(f"  ratio ours / official path: {summary['ratio']:.2f}x; max |ours - official path| = "
          f"{summary['max_abs_difference']:.2e}")
    if summary["max_abs_vs_reference_ours"] is not None:
        print(f"  against the fixture's reference images (batch 4): ours {summary['max_abs_vs_reference_ours']:.2e}, "
              f"official path {summary['max_abs_vs_reference_official_path']:.2e}")


if __name__ == "__main__":
    main()
