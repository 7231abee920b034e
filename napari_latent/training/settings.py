"""Settings of a training run (what ``napari-latent train`` options map to)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from ..errors import UserInputError

#: The values of the ``precision`` setting (see :mod:`napari_latent.training.precision`).
PRECISIONS = ("auto", "bf16", "fp16", "fp32")


@dataclasses.dataclass
class TrainSettings:
    """How to train (the model's own settings live in its config).

    Parameters
    ----------
    epochs : int
        Passes over the training slices.
    batch_size : int
        Images per step (per process when distributed).
    lr : float or None
        Adam learning rate; None uses the objective's default.
    seed : int
        Seed of the split, the data order, augmentation and sampling noise. The same seed
        and data give the same model (on the same device and library versions).
    val_fraction : float
        Fraction of subjects held out for validation.
    augment_rotation, augment_scale : float
        Light augmentation: maximum rotation in degrees and relative scale change.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ...
    precision : str
        ``"auto"`` (bf16 autocast on GPUs with native bfloat16, else fp16 with a loss scaler
        per optimiser; fp32 on the CPU and MPS), ``"bf16"``, ``"fp16"`` or ``"fp32"`` (see
        :mod:`napari_latent.training.precision`). Checkpoints of older versions stored a
        boolean ``amp``: true reads as ``"auto"``, false as ``"fp32"``.
    compile : bool
        ``torch.compile`` the trained modules.
    checkpoint_every : int
        Steps between periodic checkpoints (a checkpoint is also written at the end of every
        epoch, at the end of the run and when the run is cancelled).
    preview_every : int
        Steps between preview images in progress events (0: only at epoch ends).
    grad_clip : float or None
        Clip the gradient norm.
    workers : int or None
        DataLoader worker processes that read batches from the slice cache (per process
        when distributed); None chooses: 0 on the CPU, up to 4 on CUDA
        (:func:`~napari_latent.training.slice_dataset.default_workers`). Like ``device``, a
        resumed run takes it from the current call, not from the checkpoint.
    time_limit : float or None
        A wall-clock budget in minutes for the training steps (data preparation excluded):
        once it is spent, the epoch in progress ends early, is validated, and the run ends
        with a final checkpoint, as if ``epochs`` had been reached. None trains for
        ``epochs``. A resumed run takes it from the current call (a new budget).
    tensorboard : str or None
        A TensorBoard log folder (needs the ``tensorboard`` package): losses every
        ``log_every`` steps, learning rates, images per second, validation metrics and a
        preview grid per epoch, written by the main process only.
    log_every : int
        Steps between TensorBoard loss points (each the mean over those steps).
    """

    epochs: int = 20
    batch_size: int = 32
    lr: float | None = None
    seed: int = 0
    val_fraction: float = 0.2
    augment_rotation: float = 5.0
    augment_scale: float = 0.05
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    checkpoint_every: int = 500
    preview_every: int = 0
    grad_clip: float | None = None
    workers: int | None = None
    tensorboard: str | None = None
    log_every: int = 10
    time_limit: float | None = None

    def validate(self) -> None:
        """Raise :class:`UserInputError` for impossible settings."""
        if self.epochs < 1:
            raise UserInputError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UserInputError(f"batch size must be at least 1, got {self.batch_size}")
        if self.lr is not None and not self.lr > 0:
            raise UserInputError(f"learning rate must be positive, got {self.lr}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise UserInputError(f"validation fraction must be in [0, 1), got {self.val_fraction}")
        if self.augment_rotation < 0 or self.augment_scale < 0 or self.augment_scale >= 0.5:
            raise UserInputError("augmentation must be non-negative (scale below 0.5)")
        if self.checkpoint_every < 1:
            raise UserInputError(f"checkpoint interval must be at least 1 step, got {self.checkpoint_every}")
        if self.workers is not None and self.workers < 0:
            raise UserInputError(f"workers must be 0 or more, got {self.workers}")
        if self.log_every < 1:
            raise UserInputError(f"the logging interval must be at least 1 step, got {self.log_every}")
        if self.time_limit is not None and not self.time_limit > 0:
            raise UserInputError(f"the time limit must be positive (minutes), got {self.time_limit}")
        if self.precision not in PRECISIONS:
            raise UserInputError(f"unknown precision {self.precision!r}; use one of {', '.join(PRECISIONS)}")

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> TrainSettings:
        """Rebuild from :meth:`to_json` output (unknown keys are ignored for forward compatibility).

        An older checkpoint's ``amp`` flag becomes ``precision`` ``"auto"`` (true) or ``"fp32"``.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in obj.items() if k in names}
        if "precision" not in values and "amp" in obj:
            values["precision"] = "auto" if obj["amp"] else "fp32"
        return cls(**values)


#: Settings a resumed run takes from the caller rather than from its checkpoint: how and
#: where it runs, not what it computes (``epochs`` may also be raised).
RESUME_OVERRIDES = ("device", "precision", "compile", "checkpoint_every", "preview_every", "tensorboard",
                    "log_every", "workers", "time_limit")


class ResumeWarning(UserWarning):
    """A setting given for a resumed run is ignored (the run keeps its checkpoint's)."""


@dataclasses.dataclass(frozen=True)
class IgnoredSetting:
    """A setting given for a resumed run that the run does not use (it keeps the checkpoint's)."""

    name: str
    given: Any
    kept: Any

    def message(self) -> str:
        """One line for a warning."""
        if self.name == "epochs":
            return (f"resume ignores epochs={self.given!r}: the run already trains for {self.kept!r} epochs "
                    "(epochs can only be raised)")
        return f"resume ignores {self.name}={self.given!r}: the run keeps its {self.name}={self.kept!r}"


def resume_settings(given: TrainSettings, saved: TrainSettings,
                    explicit: Iterable[str] | None = None) -> tuple[TrainSettings, list[IgnoredSetting]]:
    """The settings of a resumed run, and the given settings it ignores.

    A resumed run keeps the checkpoint's settings (batch size, learning rate, seed, split,
    augmentation, gradient clipping: what makes it reach the same model as an uninterrupted
    run), takes :data:`RESUME_OVERRIDES` from ``given``, and trains for
    ``max(saved.epochs, given.epochs)`` epochs (the checkpoint's epochs when ``explicit`` is
    given without ``"epochs"``).

    Parameters
    ----------
    given : TrainSettings
        What the caller asked for.
    saved : TrainSettings
        The checkpoint's settings.
    explicit : iterable of str, optional
        The fields the caller set on purpose (the command line knows which options were
        typed). By default, the fields whose value differs from :class:`TrainSettings`'
        default.

    Returns
    -------
    settings : TrainSettings
        The resumed run's settings.
    ignored : list of IgnoredSetting
        Each explicit setting whose value differs from what the run uses.
    """
    defaults = TrainSettings()
    epochs = max(saved.epochs, given.epochs)
    if explicit is None:
        explicit = [f.name for f in dataclasses.fields(TrainSettings)
                    if getattr(given, f.name) != getattr(defaults, f.name)]
    else:
        explicit = list(explicit)
        if "epochs" not in explicit:
            epochs = saved.epochs
    merged = dataclasses.replace(saved, epochs=epochs, **{name: getattr(given, name) for name in RESUME_OVERRIDES})
    ignored = [IgnoredSetting(name, getattr(given, name), getattr(merged, name)) for name in explicit
               if name not in RESUME_OVERRIDES and getattr(given, name) != getattr(merged, name)]
    return merged, ignored
