"""What a training run shows besides its losses: validation metrics and preview grids."""

from __future__ import annotations

import math

import numpy as np
import torch

from .data import TrainingData
from .objectives.base import Objective

#: Images in a preview grid (originals over reconstructions, or generated samples).
PREVIEW_COUNT = 8


@torch.no_grad()
def validation_metrics(objective: Objective, images: torch.Tensor, device: torch.device,
                       batch_size: int = 64) -> dict[str, float]:
    """Mean squared error and PSNR of reconstructions of validation images.

    Parameters
    ----------
    objective : Objective
        The objective whose model reconstructs.
    images : Tensor
        ``(n, 1, S, S)`` validation images in [-1, 1].
    device : torch.device
        Where the model runs.
    batch_size : int
        Images per batch.

    Returns
    -------
    dict
        ``{"val_mse", "val_psnr"}``; empty when there are no images or the model does not
        reconstruct.
    """
    if len(images) == 0 or not objective.model.has_encoder:
        return {}
    objective.model.eval()
    total, count = 0.0, 0
    per_image: list[torch.Tensor] = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].to(device)
        recon = objective.reconstruct(batch)
        if recon is None:
            return {}
        errors = (recon.float() - batch).pow(2).flatten(1).mean(1)
        per_image.append(errors.cpu())
        total += float(errors.sum())
        count += batch.shape[0]
    errors = torch.cat(per_image)
    mse = total / count
    psnr = float((10 * torch.log10(4.0 / errors.clamp_min(1e-10))).mean())
    return {"val_mse": mse, "val_psnr": psnr}


def preview_grid(objective: Objective, prepared: TrainingData, device: torch.device, seed: int) -> np.ndarray:
    """A small grid for displays: originals over reconstructions, or generated samples.

    Parameters
    ----------
    objective : Objective
        The objective whose model reconstructs or samples.
    prepared : TrainingData
        The originals come from its validation slices (its training slices when there are none).
    device : torch.device
        Where the model runs.
    seed : int
        Seeds the samples of a model that does not reconstruct.

    Returns
    -------
    numpy.ndarray
        ``(rows * S, columns * S)`` float32 in [-1, 1].
    """
    images = prepared.validation.images if len(prepared.validation) else prepared.train.images
    with torch.no_grad():
        objective.model.eval()
        batch = images[:PREVIEW_COUNT].to(device)
        recon = objective.reconstruct(batch) if len(batch) else None
        if recon is not None:
            rows = torch.cat([batch, recon.float()], dim=0)
            columns = batch.shape[0]
        else:
            rows = objective.samples(PREVIEW_COUNT, torch.Generator().manual_seed(seed)).float()
            columns = PREVIEW_COUNT
    tiles = rows[:, 0].cpu().numpy()
    size = tiles.shape[-1]
    n_rows = math.ceil(len(tiles) / columns)
    grid = np.full((n_rows * size, columns * size), -1.0, np.float32)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        grid[r * size:(r + 1) * size, c * size:(c + 1) * size] = tile
    return grid
