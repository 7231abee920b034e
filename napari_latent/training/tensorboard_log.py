"""TensorBoard logging of a training run (``TrainSettings.tensorboard``; ``train --tensorboard DIR``).

What a run writes, by the global step (the step counter of the progress events and the
checkpoint, continued on resume):

* ``train/<metric>``: the mean of each training metric of the objective (``loss``, ``mse``,
  ``kl``, ``loss_d``, ...) over the last ``log_every`` steps, every ``log_every`` steps;
* ``train/images_per_s`` (over all processes) and ``lr/<optimiser>``, at the same steps;
* ``val/<metric>`` (``val/mse``, ``val/psnr``) and ``epoch/<metric>`` (the epoch's mean
  training metrics) at each epoch's last step;
* an image ``reconstructions`` (validation originals over their reconstructions) or
  ``samples`` (a GAN's samples from fixed codes), at each epoch's end and every
  ``preview_every`` steps when previews are asked for;
* a text ``run``: the model, its config and the training settings.

Only the main process (rank 0) logs. A resumed run appends to the same folder and purges
whatever the interrupted run logged after its last checkpoint.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import UserInputError

__all__ = ["TensorBoardLog", "require_tensorboard"]


def require_tensorboard() -> type:
    """The :class:`torch.utils.tensorboard.SummaryWriter` class.

    Raises
    ------
    UserInputError
        One line when the ``tensorboard`` package is missing.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserInputError("TensorBoard logging needs the tensorboard package: "
                             "pip install 'napari-latent[tensorboard]' (or pip install tensorboard)") from None
    return SummaryWriter


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool)


class TensorBoardLog:
    """One run's TensorBoard event files.

    Parameters
    ----------
    log_dir : path-like
        The folder (created if needed).
    every : int
        Steps between loss points.
    start_step : int
        The step the run starts from (a resumed run's): events the interrupted run wrote
        from this step on are purged.
    """

    def __init__(self, log_dir: str | os.PathLike[str], every: int = 10, start_step: int = 0) -> None:
        writer_class = require_tensorboard()
        self.every = max(1, int(every))
        self.writer = writer_class(log_dir=str(log_dir), purge_step=start_step if start_step > 0 else None)
        self._rows: list[Mapping[str, float]] = []

    def add_run(self, description: Mapping[str, Any], step: int = 0) -> None:
        """The run's description (model, config, settings) as a text entry ``run``."""
        text = json.dumps(description, indent=2, sort_keys=True, default=str)
        self.writer.add_text("run", "```\n" + text + "\n```", step)

    def add_step(self, step: int, metrics: Mapping[str, float], learning_rates: Mapping[str, float],
                 images_per_s: float) -> None:
        """Record a training step; every ``every`` steps write the means since the last point."""
        self._rows.append(metrics)
        if step % self.every:
            return
        keys = sorted({k for row in self._rows for k in row if _is_number(row[k])})
        for key in keys:
            values = [float(row[key]) for row in self._rows if key in row]
            self.writer.add_scalar(f"train/{key}", float(np.mean(values)), step)
        self.writer.add_scalar("train/images_per_s", float(images_per_s), step)
        for name, lr in learning_rates.items():
            self.writer.add_scalar(f"lr/{name}", float(lr), step)
        self._rows = []

    def add_epoch(self, step: int, training: Mapping[str, float], validation: Mapping[str, float]) -> None:
        """An epoch's mean training metrics (``epoch/...``) and validation metrics (``val/...``)."""
        for key, value in sorted(validation.items()):
            if _is_number(value):
                self.writer.add_scalar(f"val/{key.removeprefix('val_')}", float(value), step)
        for key, value in sorted(training.items()):
            if _is_number(value) and key not in validation and key not in ("epoch", "step"):
                self.writer.add_scalar(f"epoch/{key}", float(value), step)
        self.writer.flush()

    def add_preview(self, step: int, grid: np.ndarray, tag: str) -> None:
        """A preview grid in [-1, 1] (``(H, W)``) as a grey image."""
        image = np.clip((np.asarray(grid, np.float32) + 1.0) / 2.0, 0.0, 1.0)
        self.writer.add_image(tag, image, step, dataformats="HW")

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()
