"""The longest time napari's GUI thread is blocked while a model trains from the Model widget.

    xvfb-run -a python benchmarks/bench_gui_block.py [--epochs 2]

A 10 ms ``QTimer`` runs in the GUI thread during training; the longest gap between two
of its ticks, minus the interval, is how long the event loop could not respond (a mouse
click, a slider drag or a repaint waits that long). Compared in the same run with the plain
baseline: the same training driven on the GUI thread (what a widget that simply calls
``train_model`` does), with the event loop served at every progress event. Target for ours:
no block longer than 100 ms. Prints both, and the ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from _common import machine, phantom_cohort
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication

from napari_latent.gui.model_widget import ModelWidget
from napari_latent.gui.plots_widget import PlotsWidget
from napari_latent.training import TrainSettings, train_model

TICK_MS = 10


class GapMeter:
    """Records the gaps between ticks of a fast timer in the GUI thread."""

    def __init__(self) -> None:
        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def __enter__(self) -> GapMeter:
        self.ticks.clear()
        self.timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timer.stop()

    def blocks_ms(self) -> np.ndarray:
        """Blocked time per gap (gap minus the timer interval), ms."""
        return np.maximum(np.diff(self.ticks) * 1000.0 - TICK_MS, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    cohort = phantom_cohort(10, 64)
    folder = Path(tempfile.mkdtemp())
    settings = TrainSettings(epochs=args.epochs, batch_size=32, device="cpu")

    viewer = napari.Viewer(show=True)
    viewer.open(str(cohort / "sub-001.nii.gz"), plugin="napari-latent")
    widget = ModelWidget(viewer)
    viewer.window.add_dock_widget(widget)
    viewer.window.add_dock_widget(PlotsWidget(viewer))  # the live loss plot redraws during training
    widget.data.value = cohort
    widget.output.value = folder / "gui.safetensors"
    widget.epochs.value = args.epochs
    widget.image_size.value = 64
    widget.device.value = "cpu"
    app = QApplication.instance()
    app.processEvents()
    train_model(cohort, "vae", settings=TrainSettings(epochs=1, batch_size=32, device="cpu"), image_size=64)  # warm-up

    meter = GapMeter()
    with meter:
        widget.train()
        widget.runner.wait(timeout=3600)
    ours = meter.blocks_ms()

    with meter:
        # Baseline: the training runs on the GUI thread; the loop is served at every event.
        train_model(cohort, "vae", out=folder / "plain.safetensors", settings=settings, image_size=64,
                    progress=lambda event: app.processEvents())
        app.processEvents()
    plain = meter.blocks_ms()
    viewer.close()

    print(f"machine: {machine()}; VAE 64 px, {args.epochs} epochs on 10 phantom subjects, viewer shown")
    for name, blocks in (("widget (worker)", ours), ("plain (GUI thread)", plain)):
        print(f"{name}: longest GUI-thread block {blocks.max():.1f} ms, 99th percentile "
              f"{np.percentile(blocks, 99):.1f} ms, blocks over 100 ms: {int((blocks > 100).sum())}")
    print(f"longest block: ours {ours.max():.1f} ms (target <= 100), baseline {plain.max():.1f} ms, "
          f"ratio {plain.max() / max(ours.max(), 1e-3):.2f}x shorter")


if __name__ == "__main__":
    main()
