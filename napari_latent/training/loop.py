"""The training engine: one generator that trains any registered model.

``iter_train`` yields :class:`~napari_latent.progress.ProgressEvent` objects (step, epoch,
losses, validation metrics, images per second, time left) and returns a
:class:`TrainResult`. ``train_model`` drives it to the end. Checkpoints are written
atomically to the output file every ``checkpoint_every`` steps, at every epoch end, at the
end, and when a stop is requested; each carries the optimiser state and counters, so
``resume=True`` continues where the run stopped and reaches the same weights as an
uninterrupted run with the same seed (every random draw comes from a generator seeded by
the seed, the step and the process rank).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..device import get_device
from ..errors import CheckpointError, DataError, UserInputError
from ..models.base import GenerativeModel, build_model, model_fingerprint
from ..models.checkpoint import attach_checkpoint_facts, read_checkpoint, save_checkpoint
from ..progress import Operation, ProgressArg, ProgressEvent, RateMeter, StopFlag, run_operation, stop_requested
from ..volumes.cohort import Cohort
from ..volumes.slicing import SliceSpec
from .data import Augmentation, SliceSet, TrainingData, iter_prepare_data
from .distributed import DistributedContext, distributed_context, distributed_device
from .objectives.base import Objective, objective_class
from .precision import Precision
from .settings import TrainSettings

PREVIEW_COUNT = 8


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes
    ----------
    model : GenerativeModel or None
        The trained model (None if the run was cancelled before its first step).
    path : Path or None
        The checkpoint file (None when nothing was written).
    steps, epochs_completed : int
    stopped : bool
        True when the run ended early on request.
    history : list of dict
        Per-epoch means of the training losses and the validation metrics.
    final_metrics : dict
        The last validation metrics (training losses when there is no validation set).
    """

    model: GenerativeModel | None
    path: Path | None
    steps: int = 0
    epochs_completed: int = 0
    stopped: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    final_metrics: dict[str, float] = field(default_factory=dict)


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """The random generator of one training step (reproducible from seed, step and rank)."""
    mixed = (int(seed) * 1_000_003 + int(step) * 7_919 + int(rank) * 104_729) % (2**63 - 1)
    return torch.Generator().manual_seed(mixed)


def epoch_order(n: int, seed: int, epoch: int, context: DistributedContext) -> list[int]:
    """The slice order of an epoch for this process (a DistributedSampler shard)."""
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=context.world_size, rank=context.rank, shuffle=True,
                                 seed=seed, drop_last=context.is_distributed)
    sampler.set_epoch(epoch)
    return list(sampler)


def _batches(order: list[int], batch_size: int) -> list[list[int]]:
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches.pop()  # a one-image batch adds noise and nothing else
    return batches


@torch.no_grad()
def validation_metrics(objective: Objective, images: torch.Tensor, device: torch.device,
                       batch_size: int = 64) -> dict[str, float]:
    """Mean squared error and PSNR of reconstructions of validation images."""
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


def _preview(objective: Objective, images: torch.Tensor, device: torch.device, seed: int) -> np.ndarray:
    """A small grid for displays: originals over reconstructions, or generated samples."""
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


def _preview_source(prepared: TrainingData) -> torch.Tensor:
    return prepared.validation.images if len(prepared.validation) else prepared.train.images


def _mean_metrics(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = {k for row in rows for k in row}
    return {k: float(np.mean([row[k] for row in rows if k in row])) for k in sorted(keys)}


def _prepare_model(model: str | GenerativeModel, model_settings: dict[str, Any], seed: int) -> GenerativeModel:
    """Build a new model with initial weights drawn from ``seed`` (same seed, same start)."""
    if isinstance(model, GenerativeModel):
        if model_settings:
            raise UserInputError("model settings are given with an already built model")
        return model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(model, **model_settings)


def iter_train(data: str | os.PathLike[str] | Cohort | TrainingData, model: str | GenerativeModel = "vae",
               out: str | os.PathLike[str] | None = None, settings: TrainSettings | None = None,
               spec: SliceSpec | None = None, resume: bool = False, stop: StopFlag | None = None,
               labels: str | os.PathLike[str] | None = None,
               **model_settings: Any) -> Operation[TrainResult]:
    """Train a generative model on slices of volumes (a generator; see the module docstring).

    Parameters
    ----------
    data : path-like, Cohort or TrainingData
        A NIfTI file, a folder of them (with an optional ``cohort.csv``), a cohort, or
        already prepared data.
    model : str or GenerativeModel
        A registered model name (``"vae"``, ...) or a built model.
    out : path-like, optional
        The ``.safetensors`` checkpoint to write (and to resume from).
    settings : TrainSettings, optional
    spec : SliceSpec, optional
        Preprocessing; by default axial slices at the model's image size.
    resume : bool
        Continue the run stored in ``out`` (its model, settings and counters). ``settings``
        may raise the number of epochs; everything else comes from the checkpoint.
    stop : StopFlag, optional
        Ends the run cleanly at the next step (a checkpoint is written).
    labels : path-like, optional
        A cohort table to use instead of the folder's ``cohort.csv``.
    **model_settings
        Settings of a new model (``image_size``, ``latent_dim``, ``beta``, ...).

    Returns
    -------
    TrainResult
    """
    settings = settings or TrainSettings()
    out_path = Path(out) if out is not None else None
    state: dict[str, Any] | None = None
    extras: dict[str, dict[str, torch.Tensor]] = {}
    if resume:
        if out_path is None or not out_path.is_file():
            raise CheckpointError(f"{out_path}: nothing to resume (the checkpoint does not exist)")
        checkpoint = read_checkpoint(out_path, device="cpu", with_state=True)
        if checkpoint.state is None:
            raise CheckpointError(f"{out_path}: the checkpoint holds no training state to resume from")
        state = checkpoint.state
        saved = TrainSettings.from_json(state["settings"])
        saved.epochs = max(saved.epochs, settings.epochs)
        saved.device = settings.device
        settings = saved
        net = checkpoint.model
        spec = checkpoint.slice_spec
        extras = checkpoint.extras
    else:
        net = _prepare_model(model, model_settings, settings.seed)
    settings.validate()
    if out_path is not None and out_path.suffix != ".safetensors":
        raise UserInputError(f"{out_path}: the model file must end in .safetensors")
    spec = spec or getattr(net, "slice_spec", None) or SliceSpec(size=net.image_size)
    if spec.size != net.image_size:
        raise UserInputError(f"slice size {spec.size} does not match the model's image size {net.image_size}")

    device = distributed_device(get_device(settings.device))
    context = distributed_context(device)
    try:
        result = yield from _run(data, net, out_path, settings, spec, state, extras, context, device, stop, labels)
    finally:
        context.close()
    return result


def _run(data: Any, net: GenerativeModel, out_path: Path | None, settings: TrainSettings, spec: SliceSpec,
         state: dict[str, Any] | None, extras: dict[str, dict[str, torch.Tensor]], context: DistributedContext,
         device: torch.device, stop: StopFlag | None, labels: Any) -> Operation[TrainResult]:
    if isinstance(data, TrainingData):
        prepared = data
    else:
        prepared = yield from iter_prepare_data(data, spec, settings.val_fraction, settings.seed, labels, stop)
    if stop_requested(stop):
        return TrainResult(None, None, stopped=True)
    if state is not None and state.get("data_fingerprint") != prepared.fingerprint:
        raise DataError("resume needs the same data, slicing and split as the interrupted run "
                        "(the data fingerprint differs)")
    train: SliceSet = prepared.train
    if len(train) < 2:
        raise DataError(f"only {len(train)} training slice(s); the data set is too small to train on")

    net.to(device)
    precision = Precision(device, settings.amp)
    objective = objective_class(net.objective)(net, settings, context, precision)
    if settings.compile:
        for module in objective.modules().values():
            module.compile()
    step, epoch, batch_in_epoch = 0, 0, 0
    history: list[dict[str, float]] = []
    epoch_rows: list[dict[str, float]] = []
    if state is not None:
        objective.load_state_dict(state["objective"])
        objective.load_extras(extras)
        step, epoch, batch_in_epoch = int(state["step"]), int(state["epoch"]), int(state["batch_in_epoch"])
        history = list(state.get("history") or [])
        epoch_rows = list(state.get("epoch_rows") or [])
    augment = Augmentation(settings.augment_rotation, settings.augment_scale)
    steps_per_epoch = len(_batches(epoch_order(len(train), settings.seed, 0, context), settings.batch_size))
    total_steps = steps_per_epoch * settings.epochs
    meter = RateMeter()
    start_step = step
    last_metrics: dict[str, float] = {}

    def save(final: bool = False) -> Path | None:
        if out_path is None or not context.is_main:
            return None
        facts = {
            "epochs": epoch, "steps": step, "seed": settings.seed, "data_fingerprint": prepared.fingerprint,
            "data_subjects": len(prepared.cohort), "train_slices": len(train),
            "validation_subjects": len(prepared.validation.names), "settings": settings.to_json(),
            "final_metrics": last_metrics, "completed": final, "world_size": context.world_size,
            "device": str(device),
        }
        run_state = {"settings": settings.to_json(), "objective": objective.state_dict(), "step": step,
                     "epoch": epoch, "batch_in_epoch": batch_in_epoch, "history": history,
                     "epoch_rows": epoch_rows, "data_fingerprint": prepared.fingerprint}
        path = save_checkpoint(out_path, net, spec, facts, objective.extras(), run_state)
        attach_checkpoint_facts(net, spec, facts, path)
        return path

    written: Path | None = None
    stopped = False
    while epoch < settings.epochs and not stopped:
        batches = _batches(epoch_order(len(train), settings.seed, epoch, context), settings.batch_size)
        for index in range(batch_in_epoch, len(batches)):
            generator = step_generator(settings.seed, step, context.rank)
            images = augment(train.images[batches[index]], generator).to(device)
            metrics = objective.train_step(images, generator)
            step += 1
            batch_in_epoch = index + 1
            epoch_rows.append(metrics)
            meter.add(images.shape[0] * context.world_size)
            rate = meter.rate
            eta = (total_steps - step) * (meter.elapsed / max(step - start_step, 1))
            preview = None
            if settings.preview_every and step % settings.preview_every == 0:
                preview = _preview(objective, _preview_source(prepared), device, settings.seed)
            yield ProgressEvent(step, total_steps, f"epoch {epoch + 1}/{settings.epochs}",
                                {**metrics, "epoch": epoch + 1, "images_per_s": rate, "eta_s": eta},
                                preview=preview, stage="train")
            if stop_requested(stop):
                stopped = True
                break
            if step % settings.checkpoint_every == 0:
                written = save() or written
        if stopped:
            break
        # end of epoch: validation, history, checkpoint
        objective.on_epoch_end(epoch)
        epoch += 1
        batch_in_epoch = 0
        val = validation_metrics(objective, prepared.validation.images, device)
        row = {**_mean_metrics(epoch_rows), **val, "epoch": epoch, "step": step}
        history.append(row)
        epoch_rows = []
        last_metrics = val or {k: v for k, v in row.items() if k not in ("epoch", "step")}
        preview = _preview(objective, _preview_source(prepared), device, settings.seed)
        yield ProgressEvent(step, total_steps, f"epoch {epoch}/{settings.epochs} done", row, preview=preview,
                            stage="validate")
        written = save(final=epoch >= settings.epochs) or written
        if stop_requested(stop):
            stopped = epoch < settings.epochs
    if stopped:
        written = save() or written
    net.eval()
    if not written:
        net.slice_spec = spec
    final = objective.model_for_use()
    if final is not net:
        final.slice_spec, final.training_info, final.source_path = net.slice_spec, net.training_info, net.source_path
    final.fingerprint = model_fingerprint(final)
    final.eval()
    return TrainResult(final, written, step, epoch, stopped, history, last_metrics)


def train_model(data: str | os.PathLike[str] | Cohort, model: str | GenerativeModel = "vae",
                out: str | os.PathLike[str] | None = None, settings: TrainSettings | None = None,
                spec: SliceSpec | None = None, resume: bool = False, progress: ProgressArg = None,
                stop: StopFlag | None = None, **model_settings: Any) -> TrainResult:
    """Train a model to the end (see :func:`iter_train` for the parameters).

    Parameters
    ----------
    progress : callable, bool or None
        ``True`` for a terminal progress bar, a callable for every event.

    Examples
    --------
    >>> from napari_latent import train_model, TrainSettings           # doctest: +SKIP
    >>> result = train_model("cohort/", "vae", out="vae.safetensors",
    ...                      settings=TrainSettings(epochs=10), latent_dim=32)
    """
    operation = iter_train(data, model, out, settings, spec, resume, stop, **model_settings)
    return run_operation(operation, progress)
