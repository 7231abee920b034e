"""What a training run shows besides its losses: validation metrics and preview grids."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

from .data import SliceSet, TrainingData
from .distributed import DistributedContext
from .objectives.base import Objective

#: Images in a preview grid (originals over reconstructions, or generated samples).
PREVIEW_COUNT = 8


def _batches_of(images: torch.Tensor | SliceSet, batch_size: int, rank: int = 0,
                world: int = 1) -> Iterator[torch.Tensor]:
    """Consecutive batches of a tensor or a slice set (read from disk one at a time); batch
    ``k`` goes to the process ``k % world == rank``."""
    for number, start in enumerate(range(0, len(images), batch_size)):
        if number % world != rank:
            continue
        if isinstance(images, SliceSet):
            yield images.read_range(start, start + batch_size)
        else:
            yield images[start:start + batch_size]


@torch.no_grad()
def validation_metrics(objective: Objective, images: torch.Tensor | SliceSet, device: torch.device,
                       batch_size: int = 64, context: DistributedContext | None = None) -> dict[str, float]:
    """Mean squared error and PSNR of reconstructions of validation images.

    Parameters
    ----------
    objective : Objective
        The objective whose model reconstructs.
    images : Tensor or SliceSet
        ``(n, 1, S, S)`` validation images in [-1, 1], or a slice set (read batch by batch).
    device : torch.device
        Where the model runs.
    batch_size : int
        Images per batch.
    context : DistributedContext, optional
        Under torchrun, each process reconstructs every ``world_size``-th batch and the sums
        are added up over processes (every process gets the same numbers); call it on every
        process.

    Returns
    -------
    dict
        ``{"val_mse", "val_psnr"}``; empty when there are no images or the model does not
        reconstruct.
    """
    if len(images) == 0 or not objective.model.has_encoder:
        return {}
    objective.model.eval()
    rank, world = (context.rank, context.world_size) if context is not None else (0, 1)
    total, count, psnr_sum, missing = 0.0, 0, 0.0, 0
    per_image: list[torch.Tensor] = []
    for images_batch in _batches_of(images, batch_size, rank, world):
        batch = images_batch.to(device)
        recon = objective.reconstruct(batch)
        if recon is None:
            missing = 1
            break
        errors = (recon.float() - batch).pow(2).flatten(1).mean(1)
        if world == 1:
            per_image.append(errors.cpu())
        else:
            psnr_sum += float((10 * torch.log10(4.0 / errors.clamp_min(1e-10))).double().sum())
        total += float(errors.sum())
        count += batch.shape[0]
    if world > 1:  # one collective on every process, whatever its share
        assert context is not None
        sums = context.all_reduce_sum(torch.tensor([total, psnr_sum, count, missing], dtype=torch.float64))
        if sums[3] > 0:
            return {}
        return {"val_mse": float(sums[0] / sums[2]), "val_psnr": float(sums[1] / sums[2])}
    if missing:
        return {}
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
    images = prepared.validation if len(prepared.validation) else prepared.train
    with torch.no_grad():
        objective.model.eval()
        batch = images.read_range(0, PREVIEW_COUNT).to(device)
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
