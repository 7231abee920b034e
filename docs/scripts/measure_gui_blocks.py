"""Longest GUI-thread blocks during Invert, Discover, Traverse and Eigen runs from the widgets.

    xvfb-run -a python docs/scripts/measure_gui_blocks.py

The demo model on the 128-cube healthy sample phantom, with the Plots dock open; a 10 ms
timer in the GUI thread measures how long the event loop could not respond during each run
(from the click to the last layer added). See docs/performance.md for what the blocks are.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_gui_block import GapMeter

from napari_latent.gui.discover_widget import DiscoverWidget
from napari_latent.gui.eigen_widget import EigenWidget
from napari_latent.gui.invert_widget import InvertWidget
from napari_latent.gui.model_widget import ModelWidget
from napari_latent.gui.plots_widget import PlotsWidget
from napari_latent.gui.traverse_widget import TraverseWidget


def measure(viewer: Any, name: str, widget: Any, setup: Callable[[Any], None]) -> None:
    """Dock ``widget``, set it up, run it and print its longest GUI-thread blocks."""
    app = QApplication.instance()
    viewer.window.add_dock_widget(widget, name=name)
    setup(widget)
    app.processEvents()
    meter = GapMeter()
    start = time.perf_counter()
    with meter:
        widget.run()
        widget.runner.wait(600)
        for _ in range(20):  # what napari does after the last layer (drawing it)
            app.processEvents()
            time.sleep(0.01)
    blocks = meter.blocks_ms()
    ticks = np.array(meter.ticks)
    top = [(round(float(blocks[i])), round(float(ticks[i] - ticks[0]), 2)) for i in np.argsort(blocks)[-3:]]
    print(f"{name}: {time.perf_counter() - start:.1f} s, longest blocks (ms, at s) {top}, "
          f"error {widget.runner.last_error}", flush=True)


def main() -> None:
    viewer = napari.Viewer(show=True)
    viewer.open_sample("napari-latent", "healthy_phantom")
    QApplication.instance().processEvents()
    ModelWidget(viewer).load_demo()
    viewer.window.add_dock_widget(PlotsWidget(viewer))
    source = "healthy phantom"

    def invert(w: Any) -> None:
        w.layer.value, w.method.value = source, "encoder"

    def discover(w: Any) -> None:
        w.method.value, w.count.value = "sefa", 5

    def traverse(w: Any) -> None:
        w.codes.value, w.direction.value = source, 0

    def eigen(w: Any) -> None:
        w.components.value = 5

    measure(viewer, "invert", InvertWidget(viewer), invert)
    measure(viewer, "discover", DiscoverWidget(viewer), discover)
    measure(viewer, "traverse", TraverseWidget(viewer), traverse)
    measure(viewer, "eigen", EigenWidget(viewer), eigen)
    viewer.close()


if __name__ == "__main__":
    main()
