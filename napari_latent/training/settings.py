"""Settings of a training run (what ``napari-latent train`` options map to)."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import UserInputError


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
    amp : bool
        Mixed precision (used on CUDA only).
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
    """

    epochs: int = 20
    batch_size: int = 32
    lr: float | None = None
    seed: int = 0
    val_fraction: float = 0.2
    augment_rotation: float = 5.0
    augment_scale: float = 0.05
    device: str = "auto"
    amp: bool = True
    compile: bool = False
    checkpoint_every: int = 500
    preview_every: int = 0
    grad_clip: float | None = None
    workers: int | None = None

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

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> TrainSettings:
        """Rebuild from :meth:`to_json` output (unknown keys are ignored for forward compatibility)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in obj.items() if k in names})
