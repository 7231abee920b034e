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

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..device import get_device
from ..errors import CheckpointError, DataError, UserInputError
from ..models.base import GenerativeModel, build_model, model_fingerprint, trainable_model_names
from ..models.checkpoint import attach_checkpoint_facts, read_checkpoint, save_checkpoint
from ..progress import Operation, ProgressArg, ProgressEvent, RateMeter, StopFlag, run_operation, stop_requested
from ..volumes.cohort import Cohort
from ..volumes.slicing import SliceSpec
from .data import Augmentation, CacheArg, TrainingData, iter_prepare_data
from .distributed import DistributedContext, distributed_context, distributed_device, torchrun_environment
from .monitoring import PREVIEW_COUNT, preview_grid, validation_metrics
from .objectives.base import Objective, objective_class
from .precision import Precision, resolve_precision
from .settings import ResumeWarning, TrainSettings, resume_settings
from .slice_dataset import BatchLoader, default_workers
from .tensorboard_log import TensorBoardLog, require_tensorboard

__all__ = ["PREVIEW_COUNT", "TrainResult", "epoch_order", "iter_train", "step_generator", "train_model",
           "validation_metrics"]


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
    time_limited : bool
        True when the run ended at its ``time_limit`` (its last epoch may be partial).
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
    time_limited: bool = False


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
               labels: str | os.PathLike[str] | None = None, cache: CacheArg = None,
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
        may raise the number of epochs and gives how the run goes on (device, precision,
        compile, checkpoint and log intervals, TensorBoard folder:
        :data:`~napari_latent.training.settings.RESUME_OVERRIDES`); everything else comes
        from the checkpoint, and a :class:`~napari_latent.training.settings.ResumeWarning`
        names each other setting given that the run ignores. The number of processes must
        be the checkpoint's.
    stop : StopFlag, optional
        Ends the run cleanly at the next step (a checkpoint is written).
    labels : path-like, optional
        A cohort table to use instead of the folder's ``cohort.csv``.
    cache : SliceCache, path-like or None
        The slice cache the volumes are sliced into once and read from
        (:mod:`~napari_latent.training.slice_cache`; the default location when None,
        :meth:`SliceCache.temporary() <napari_latent.training.slice_cache.SliceCache.temporary>`
        for one that is deleted afterwards). Ignored when ``data`` is prepared data.
    **model_settings
        Settings of a new model (``image_size``, ``latent_dim``, ``beta``, ...).

    Returns
    -------
    TrainResult

    Raises
    ------
    UserInputError
        For bad settings, a precision the device or model cannot use, a missing
        ``tensorboard`` package when logging is asked for, or a resume with another
        number of processes than the checkpoint's.
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
        _check_world_size(out_path, checkpoint.training)
        settings, ignored = resume_settings(settings, TrainSettings.from_json(state["settings"]))
        if torchrun_environment()[0] == 0:
            for item in ignored:
                warnings.warn(item.message(), ResumeWarning, stacklevel=2)
        net = checkpoint.model
        spec = checkpoint.slice_spec
        extras = checkpoint.extras
    else:
        net = _prepare_model(model, model_settings, settings.seed)
    if not net.trainable():
        raise UserInputError(f"model family {net.name!r} is imported, not trained by napari-latent; "
                             f"train one of {', '.join(trainable_model_names())}")
    settings.validate()
    if out_path is not None and out_path.suffix != ".safetensors":
        raise UserInputError(f"{out_path}: the model file must end in .safetensors")
    spec = spec or getattr(net, "slice_spec", None) or SliceSpec(size=net.image_size)
    if spec.size != net.image_size:
        raise UserInputError(f"slice size {spec.size} does not match the model's image size {net.image_size}")

    device = distributed_device(get_device(settings.device))
    context = distributed_context(device)  # first: a CUDA process takes its GPU before anything touches CUDA
    try:
        resolve_precision(settings.precision, device, net.mixed_precision)  # refuse at once, not after the data
        if settings.tensorboard:
            require_tensorboard()
        result = yield from _run(data, net, out_path, settings, spec, state, extras, context, device, stop, labels,
                                 cache)
    finally:
        context.close()
    return result


def _run(data: Any, net: GenerativeModel, out_path: Path | None, settings: TrainSettings, spec: SliceSpec,
         state: dict[str, Any] | None, extras: dict[str, dict[str, torch.Tensor]], context: DistributedContext,
         device: torch.device, stop: StopFlag | None, labels: Any, cache: CacheArg = None) -> Operation[TrainResult]:
    """Prepare the data, build the objective (restored on resume), train, and return the result."""
    if isinstance(data, TrainingData):
        prepared = data
    else:
        prepared = yield from iter_prepare_data(data, spec, settings.val_fraction, settings.seed, labels, stop,
                                                cache=cache, context=context)
    if stop_requested(stop):
        return TrainResult(None, None, stopped=True)
    _check_data(prepared, state)
    run = _Run(net, _build_objective(net, settings, context, device), prepared, settings, spec, context, device,
               out_path)
    if state is not None:
        run.restore(state, extras)
    if settings.tensorboard and context.is_main:
        run.log = TensorBoardLog(settings.tensorboard, settings.log_every, start_step=run.step)
    try:
        if run.log is not None:
            run.log.add_run({"model": net.name, "config": net.config.to_json(), "settings": settings.to_json(),
                             "precision": run.objective.precision.mode, "device": str(device),
                             "world_size": context.world_size}, run.step)
        stopped = yield from run.iter_epochs(stop)
    finally:
        run.close()
        if run.log is not None:
            run.log.close()
    return TrainResult(run.finish(), run.written, run.step, run.epoch, stopped, run.history, run.last_metrics,
                       run.time_limited)


def _check_world_size(out_path: Path, facts: dict[str, Any]) -> None:
    """Resume needs as many processes as the interrupted run (its data order and step count follow from them)."""
    saved = facts.get("world_size")
    world_size = torchrun_environment()[1]
    if saved is not None and int(saved) != world_size:
        raise UserInputError(f"{out_path}: the run was trained by {int(saved)} process(es) and cannot be resumed by "
                             f"{world_size}: its data order and step count depend on that number (resume it with "
                             f"{int(saved)} process(es) in all, e.g. torchrun --nproc_per_node {int(saved)})")


def _check_data(prepared: TrainingData, state: dict[str, Any] | None) -> None:
    """Resume needs the interrupted run's data; training needs at least 2 slices."""
    if state is not None and state.get("data_fingerprint") != prepared.fingerprint:
        raise DataError("resume needs the same data, slicing and split as the interrupted run "
                        "(the data fingerprint differs)")
    if len(prepared.train) < 2:
        raise DataError(f"only {len(prepared.train)} training slice(s); the data set is too small to train on")


def _build_objective(net: GenerativeModel, settings: TrainSettings, context: DistributedContext,
                     device: torch.device) -> Objective:
    """The model's objective on ``device`` (its modules compiled when asked)."""
    net.to(device)
    precision = Precision(device, settings.precision, net.mixed_precision)
    objective = objective_class(net.objective)(net, settings, context, precision)
    precision.attach(objective.optimizers())
    if settings.compile:
        for module in objective.modules().values():
            module.compile()
    return objective


@dataclass(eq=False)
class _Run:
    """One training run in progress: what stays fixed, the counters a checkpoint stores, the
    checkpoint writer and the epochs' steps."""

    net: GenerativeModel
    objective: Objective
    prepared: TrainingData
    settings: TrainSettings
    spec: SliceSpec
    context: DistributedContext
    device: torch.device
    out_path: Path | None
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    epoch_rows: list[dict[str, float]] = field(default_factory=list)
    last_metrics: dict[str, float] = field(default_factory=dict)
    written: Path | None = None
    loader: BatchLoader | None = None
    time_limited: bool = False
    deadline: float | None = None

    def batch_loader(self) -> BatchLoader:
        """The training slices' batch loader (its worker processes start once, stop in :meth:`close`)."""
        if self.loader is None:
            workers = default_workers(self.device) if self.settings.workers is None else self.settings.workers
            self.loader = BatchLoader(self.prepared.train.reader, workers, pin_memory=self.device.type == "cuda")
        return self.loader

    def close(self) -> None:
        """Stop the batch loader's worker processes."""
        if self.loader is not None:
            self.loader.close()
            self.loader = None
    log: TensorBoardLog | None = None

    def restore(self, state: dict[str, Any], extras: dict[str, dict[str, torch.Tensor]]) -> None:
        """Continue from a checkpoint's training state."""
        self.objective.load_state_dict(state["objective"])
        self.objective.load_extras(extras)
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.history = list(state.get("history") or [])
        self.epoch_rows = list(state.get("epoch_rows") or [])

    def save(self, final: bool = False) -> None:
        """Write the checkpoint (the main process only, when there is an output file)."""
        if self.out_path is None or not self.context.is_main:
            return
        settings, prepared = self.settings, self.prepared
        facts = {
            "epochs": self.epoch, "steps": self.step, "seed": settings.seed, "data_fingerprint": prepared.fingerprint,
            "data_subjects": len(prepared.cohort), "train_slices": len(prepared.train),
            "validation_subjects": len(prepared.validation.names), "settings": settings.to_json(),
            "final_metrics": self.last_metrics, "completed": final, "world_size": self.context.world_size,
            "device": str(self.device), "precision": self.objective.precision.mode,
        }
        run_state = {"settings": settings.to_json(), "objective": self.objective.state_dict(), "step": self.step,
                     "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "history": self.history,
                     "epoch_rows": self.epoch_rows, "data_fingerprint": prepared.fingerprint}
        path = save_checkpoint(self.out_path, self.net, self.spec, facts, self.objective.extras(), run_state)
        attach_checkpoint_facts(self.net, self.spec, facts, path)
        self.written = path or self.written

    def iter_epochs(self, stop: StopFlag | None) -> Operation[bool]:
        """Train to the last epoch; returns True when the run was stopped early."""
        settings, context, train = self.settings, self.context, self.prepared.train
        augment = Augmentation(settings.augment_rotation, settings.augment_scale)
        steps_per_epoch = len(_batches(epoch_order(len(train), settings.seed, 0, context), settings.batch_size))
        total_steps = steps_per_epoch * settings.epochs
        meter = RateMeter()
        start_step = self.step
        stopped = False
        loader = self.batch_loader()
        if settings.time_limit is not None:
            self.deadline = time.monotonic() + 60.0 * settings.time_limit
        while self.epoch < settings.epochs and not stopped:
            batches = _batches(epoch_order(len(train), settings.seed, self.epoch, context), settings.batch_size)
            stopped = yield from self._iter_steps(batches, loader, augment, meter, start_step, total_steps, stop)
            if stopped:
                break
            yield from self._iter_epoch_end(total_steps)
            if self.time_limited:
                break
            if stop_requested(stop):
                stopped = self.epoch < settings.epochs
        if stopped:
            self.save()
        return stopped

    def _iter_steps(self, batches: list[list[int]], loader: BatchLoader, augment: Augmentation, meter: RateMeter,
                    start_step: int, total_steps: int, stop: StopFlag | None) -> Operation[bool]:
        """The epoch's remaining steps (a checkpoint every ``checkpoint_every``); True when stopped.

        The loader reads the batches (ahead, in its workers); augmentation is drawn here, from
        the step's generator, so the run does not depend on the number of workers.
        """
        settings, context, objective = self.settings, self.context, self.objective
        first = self.batch_in_epoch
        for index, batch in zip(range(first, len(batches)), loader(batches[first:]), strict=True):
            generator = step_generator(settings.seed, self.step, context.rank)
            images = augment(batch.to(self.device, non_blocking=loader.pin_memory), generator)
            metrics = objective.train_step(images, generator)
            self.step += 1
            self.batch_in_epoch = index + 1
            self.epoch_rows.append(metrics)
            meter.add(images.shape[0] * context.world_size)
            rate = meter.rate
            eta = (total_steps - self.step) * (meter.elapsed / max(self.step - start_step, 1))
            preview = None
            if settings.preview_every and self.step % settings.preview_every == 0:
                preview = preview_grid(objective, self.prepared, self.device, settings.seed)
            if self.log is not None:
                self._log_step(metrics, rate, preview)
            yield ProgressEvent(self.step, total_steps, f"epoch {self.epoch + 1}/{settings.epochs}",
                                {**metrics, "epoch": self.epoch + 1, "images_per_s": rate, "eta_s": eta},
                                preview=preview, stage="train")
            if stop_requested(stop):
                return True
            if self._time_is_up():
                self.time_limited = True
                return False  # the epoch ends here: validated and saved as the run's last
            if self.step % settings.checkpoint_every == 0:
                self.save()
        return False

    def _time_is_up(self) -> bool:
        """True once the time limit is spent (on any process: they all stop at the same step)."""
        if self.deadline is None:
            return False
        if not self.context.is_distributed:
            return time.monotonic() >= self.deadline
        up = torch.tensor([float(time.monotonic() >= self.deadline)], device=self.device)
        return bool(self.context.all_reduce_sum(up).item() > 0)

    def _iter_epoch_end(self, total_steps: int) -> Operation[None]:
        """End of epoch: validation, history, a preview and a checkpoint."""
        settings, objective = self.settings, self.objective
        objective.on_epoch_end(self.epoch)
        self.epoch += 1
        self.batch_in_epoch = 0
        val = validation_metrics(objective, self.prepared.validation, self.device, context=self.context)
        row = {**_mean_metrics(self.epoch_rows), **val, "epoch": self.epoch, "step": self.step}
        self.history.append(row)
        self.epoch_rows = []
        self.last_metrics = val or {k: v for k, v in row.items() if k not in ("epoch", "step")}
        preview = preview_grid(objective, self.prepared, self.device, settings.seed)
        if self.log is not None:
            self.log.add_epoch(self.step, row, val)
            self.log.add_preview(self.step, preview, _preview_tag(objective))
        label = " (time limit reached)" if self.time_limited else ""
        yield ProgressEvent(self.step, total_steps, f"epoch {self.epoch}/{settings.epochs} done{label}", row,
                            preview=preview, stage="validate")
        self.save(final=self.epoch >= settings.epochs or self.time_limited)

    def _log_step(self, metrics: dict[str, float], rate: float, preview: Any) -> None:
        """A step's losses, learning rates and speed (and a preview grid, when one was made) to TensorBoard."""
        assert self.log is not None
        rates = {name: float(o.param_groups[0]["lr"]) for name, o in self.objective.optimizers().items()}
        self.log.add_step(self.step, metrics, rates, rate)
        if preview is not None:
            self.log.add_preview(self.step, preview, _preview_tag(self.objective))

    def finish(self) -> GenerativeModel:
        """The trained model, in eval mode, with its slicing, facts and fingerprint."""
        net = self.net
        net.eval()
        if not self.written:
            net.slice_spec = self.spec
        final = self.objective.model_for_use()
        if final is not net:
            final.slice_spec, final.training_info = net.slice_spec, net.training_info
            final.source_path = net.source_path
        final.fingerprint = model_fingerprint(final)
        final.eval()
        return final


def _preview_tag(objective: Objective) -> str:
    """What :func:`preview_grid` shows for this objective's model."""
    return "reconstructions" if objective.model.has_encoder else "samples"


def train_model(data: str | os.PathLike[str] | Cohort, model: str | GenerativeModel = "vae",
                out: str | os.PathLike[str] | None = None, settings: TrainSettings | None = None,
                spec: SliceSpec | None = None, resume: bool = False, progress: ProgressArg = None,
                stop: StopFlag | None = None, cache: CacheArg = None, **model_settings: Any) -> TrainResult:
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
    operation = iter_train(data, model, out, settings, spec, resume, stop, cache=cache, **model_settings)
    return run_operation(operation, progress)
