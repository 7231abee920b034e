"""TensorBoard logging: what a run writes, at which steps, and that a stopped or failed run closes its log."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from napari_latent.progress import ProgressEvent, StopFlag
from napari_latent.training import TrainSettings, iter_train, train_model
from napari_latent.training.tensorboard_log import TensorBoardLog

TINY = {"image_size": 32, "latent_dim": 8, "base_channels": 8, "max_channels": 32}
FAST = {"batch_size": 16, "device": "cpu", "augment_rotation": 0.0, "augment_scale": 0.0, "lr": 2e-3}


def read_log(folder: Path) -> EventAccumulator:
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def steps_of(events: EventAccumulator, tag: str) -> list[int]:
    return [e.step for e in events.Scalars(tag)]


def test_one_epoch_logs_losses_rates_validation_and_a_preview(tiny_cohort: Path, tmp_path: Path) -> None:
    logs = tmp_path / "tb"
    settings = TrainSettings(epochs=1, tensorboard=str(logs), log_every=2, **FAST)
    seen: list[ProgressEvent] = []
    result = train_model(tiny_cohort, "vae", settings=settings, progress=seen.append, **TINY)
    events = read_log(logs)
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/mse", "train/kl", "train/images_per_s", "lr/adam", "val/mse", "val/psnr",
            "epoch/loss", "epoch/mse", "epoch/kl"} <= scalars
    steps = result.steps
    assert steps_of(events, "train/loss") == list(range(2, steps + 1, 2))
    assert steps_of(events, "lr/adam") == steps_of(events, "train/images_per_s") == list(range(2, steps + 1, 2))
    losses = {e.step: e.metrics["loss"] for e in seen if e.stage == "train"}
    for point in events.Scalars("train/loss"):  # the mean of the steps since the previous point
        assert point.value == pytest.approx((losses[point.step - 1] + losses[point.step]) / 2, rel=1e-6)
    assert all(point.value == pytest.approx(2e-3) for point in events.Scalars("lr/adam"))
    assert all(point.value > 0 for point in events.Scalars("train/images_per_s"))
    (val,) = events.Scalars("val/mse")
    assert val.step == steps and val.value == pytest.approx(result.history[-1]["val_mse"], rel=1e-6)
    (epoch_loss,) = events.Scalars("epoch/loss")
    assert epoch_loss.step == steps and epoch_loss.value == pytest.approx(result.history[-1]["loss"], rel=1e-6)
    (image,) = events.Images("reconstructions")
    assert image.step == steps and (image.width, image.height) == (8 * 32, 2 * 32)  # originals over reconstructions
    assert "run/text_summary" in events.Tags()["tensors"]  # add_text("run", ...)


def test_a_stopped_or_failed_run_closes_its_log(tiny_cohort: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[TensorBoardLog] = []
    real_close = TensorBoardLog.close

    def close(log: TensorBoardLog) -> None:  # the real close, counted
        closed.append(log)
        real_close(log)

    monkeypatch.setattr(TensorBoardLog, "close", close)
    stop = StopFlag()

    def stop_at_three(event: ProgressEvent) -> None:
        if event.stage == "train" and event.step == 3:
            stop.request()

    logs = tmp_path / "stopped"
    result = train_model(tiny_cohort, "vae", settings=TrainSettings(epochs=1, tensorboard=str(logs), log_every=1,
                                                                    **FAST), progress=stop_at_three, stop=stop, **TINY)
    assert result.stopped and len(closed) == 1
    assert steps_of(read_log(logs), "train/loss") == [1, 2, 3]

    logs = tmp_path / "failed"
    operation = iter_train(tiny_cohort, "vae", settings=TrainSettings(epochs=1, tensorboard=str(logs), log_every=1,
                                                                      **FAST), **TINY)
    for event in operation:
        if event.stage == "train" and event.step == 3:
            break
    assert len(closed) == 1
    with pytest.raises(RuntimeError, match="disk full"):
        operation.throw(RuntimeError("disk full"))  # an error at the step: the generator's finally runs
    assert len(closed) == 2
    events = read_log(logs)
    assert steps_of(events, "train/loss") == [1, 2, 3] and steps_of(events, "lr/adam") == [1, 2, 3]


def test_preview_grids_are_grey_images_from_minus_one_to_one(tmp_path: Path) -> None:
    from PIL import Image

    log = TensorBoardLog(tmp_path, every=1)
    grid = np.array([[-1.0, 0.0], [1.0, 3.0]], np.float32)  # values outside [-1, 1] are clipped
    log.add_preview(7, grid, "samples")
    log.close()
    (image,) = read_log(tmp_path).Images("samples")
    pixels = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("L"))
    assert image.step == 7
    np.testing.assert_array_equal(pixels, [[0, 127], [255, 255]])  # 0.5 * 255, truncated
