"""Time ``image_metrics`` against a plain skimage + numpy loop on 512 images of 64 x 64.

Run with ``python benchmarks/bench_metrics.py``. The baseline computes SSIM with
``skimage.metrics.structural_similarity`` (the same Gaussian 11-pixel window) and MSE/PSNR
with numpy, image by image, on one core; ours also computes MS-SSIM, which the baseline does
not, and is timed on one thread (like for like) and on torch's default number of threads.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity

from napari_latent.metrics import image_metrics

N, SIZE, REPEATS = 512, 64, 3


def make_images() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    noise = torch.rand((N, 1, SIZE, SIZE), generator=generator) * 2 - 1
    targets = F.avg_pool2d(noise, 9, stride=1, padding=4, count_include_pad=False)
    targets = targets / targets.abs().amax(dim=(1, 2, 3), keepdim=True)
    reconstructions = (targets + 0.1 * torch.randn(targets.shape, generator=generator)).clamp(-1, 1)
    return reconstructions, targets


def baseline(reconstructions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    mses, psnrs, ssims = [], [], []
    for x, y in zip(reconstructions[:, 0], targets[:, 0]):
        error = float(np.mean((x - y) ** 2))
        mses.append(error)
        psnrs.append(min(10 * np.log10(4.0 / error), 100.0) if error > 0 else 100.0)
        ssims.append(structural_similarity(x, y, data_range=2.0, gaussian_weights=True, sigma=1.5,
                                           use_sample_covariance=False))
    return {"mse": float(np.mean(mses)), "psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims))}


def best_time(function, *args) -> tuple[float, dict[str, float]]:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        result = function(*args)
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    reconstructions, targets = make_images()
    base_time, base = best_time(baseline, reconstructions.double().numpy(), targets.double().numpy())
    default_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # like for like: the baseline runs on one core
    ours_time, ours = best_time(image_metrics, reconstructions, targets)
    torch.set_num_threads(default_threads)
    threaded_time, _ = best_time(image_metrics, reconstructions, targets)
    print(f"{N} images of {SIZE}x{SIZE}, best of {REPEATS}")
    print(f"  skimage SSIM + numpy MSE/PSNR loop (mse, psnr, ssim):   {base_time:.3f} s")
    print(f"  napari_latent image_metrics (mse, psnr, ssim, ms_ssim): {ours_time:.3f} s on 1 thread, "
          f"{threaded_time:.3f} s on {default_threads} threads")
    print(f"  ratio baseline / ours (1 thread): {base_time / ours_time:.1f}x")
    for key in base:
        print(f"  {key:5s} ours {ours[key]:.6f}  baseline {base[key]:.6f}")

if __name__ == "__main__":
    main()
