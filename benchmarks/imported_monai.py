"""Decode throughput of imported MONAI autoencoders: MONAI's own ``decode`` against ours.

    python benchmarks/imported_monai.py [--quick]

For a MONAI ``AutoencoderKL`` (a small latent-diffusion first stage: channels 32/64/64,
attention at the lowest level, 3 latent channels, a quarter-size latent map) and a ``VQVAE``
(channels 32/64, codebook 64 x 8), at 64 and 128 pixels: the same random weights are wrapped
by our families (``monai-autoencoderkl``, ``monai-vqvae``) and the same batch of 16 latent
maps is decoded by MONAI (``net.decode(z)``; for the VQVAE ``net.decode(net.quantize(z)[0])``)
and by ours (``model.decode(z.flatten(1))``, which adds the flat-code view and the affine
intensity mapping from [0, 1] to [-1, 1]). Both run under ``torch.inference_mode`` with the
same threads, interleaved within each repeat (the machine is shared), best time each.
Reported: images per second, our overhead (target <= 5 %) and the maximum absolute
difference of our images from MONAI's mapped to [-1, 1].
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch
from _common import machine

from napari_latent.models.base import build_model

BATCH = 16
KL_NETWORK = {"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "channels": [32, 64, 64], "latent_channels": 3,
              "num_res_blocks": 1, "attention_levels": [False, False, True], "norm_num_groups": 32}
VQ_NETWORK = {"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "channels": [32, 64], "num_res_layers": 1,
              "num_res_channels": [32, 64], "downsample_parameters": [[2, 4, 1, 1], [2, 4, 1, 1]],
              "upsample_parameters": [[2, 4, 1, 1, 0], [2, 4, 1, 1, 0]], "num_embeddings": 64, "embedding_dim": 8}


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure(name: str, network: dict[str, Any], size: int, repeats: int) -> dict[str, Any]:
    """Time MONAI's decode and ours on one batch; the overhead and the largest difference."""
    torch.manual_seed(0)
    model = build_model(name, image_size=size, network=network).eval()
    net = model.network
    z = torch.randn(BATCH, *model.latent_shape())
    if name == "monai-vqvae":  # realistic codes: encoder outputs of noise images
        with torch.inference_mode():
            z = net.encode(torch.rand(BATCH, 1, size, size))

        def theirs() -> torch.Tensor:
            return net.decode(net.quantize(z)[0])
    else:
        def theirs() -> torch.Tensor:
            return net.decode(z)
    flat = z.flatten(1)

    def ours() -> torch.Tensor:
        return model.decode(flat)

    with torch.inference_mode():
        difference = float((ours() - (theirs() * 2 - 1)).abs().max())
        times = {"monai": float("inf"), "ours": float("inf")}
        for _ in range(repeats):  # interleaved: each repeat times both
            for label, fn in (("monai", theirs), ("ours", ours)):
                times[label] = min(times[label], _best(fn, 1))
    overhead = times["ours"] / times["monai"] - 1.0
    return {"model": name, "image_size": size, "batch": BATCH, "latent_shape": list(model.latent_shape()),
            "monai_images_per_s": BATCH / times["monai"], "ours_images_per_s": BATCH / times["ours"],
            "monai_s": times["monai"], "ours_s": times["ours"], "overhead": overhead,
            "max_abs_difference": difference, "within_target": overhead <= 0.05}


def run(quick: bool = False) -> list[dict]:
    """Both families at 64 (and 128 unless ``quick``) pixels."""
    sizes = (64,) if quick else (64, 128)
    repeats = 3 if quick else 9
    return [measure(name, network, size, repeats)
            for size in sizes for name, network in (("monai-autoencoderkl", KL_NETWORK), ("monai-vqvae", VQ_NETWORK))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="64 pixels only, 3 repeats")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    rows = run(quick=args.quick)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(machine())
    for row in rows:
        print(f"{row['model']:>20} {row['image_size']:>4} px, batch {row['batch']}: MONAI "
              f"{row['monai_images_per_s']:8.1f} img/s, ours {row['ours_images_per_s']:8.1f} img/s, overhead "
              f"{100 * row['overhead']:+5.1f} % ({'ok' if row['within_target'] else 'over 5 %'}), "
              f"max |diff| {row['max_abs_difference']:.1e}")


if __name__ == "__main__":
    main()
