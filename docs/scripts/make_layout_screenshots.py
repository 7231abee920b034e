"""The window at 1280 x 800 and 1920 x 1080 with every napari-latent widget docked (run under Xvfb).

    xvfb-run -a -s "-screen 0 2000x1200x24" python docs/scripts/make_layout_screenshots.py

The demo result sample (a healthy phantom, its traversal and eigencomponents) is opened, every
widget is docked as ``napari -w napari-latent`` docks it, and the window is arranged
(:mod:`napari_latent.gui.layout`). Prints the canvas size, the widths of our dock and of
napari's docks, and how much of the slice is in view; writes
``docs/images/napari_layout_<width>.png``.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import napari
from napari.layers import Layer
from napari.settings import get_settings
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QApplication, QDockWidget

from napari_latent.gui.launcher import dock_widgets
from napari_latent.gui.layout import our_docks, visible_fraction
from napari_latent.gui.sample_data import demo_result

IMAGES = Path(__file__).resolve().parents[1] / "images"
warnings.filterwarnings("ignore", message="napari support for the PyQt5 backend")  # not a user's toast
get_settings().application.gui_notification_level = "error"  # no toasts over the canvas


def _settle(seconds: float = 1.0) -> None:
    app = QApplication.instance()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.02)


def layout_screenshot(width: int, height: int) -> Path:
    viewer = napari.Viewer(show=True)
    main = viewer.window._qt_window
    main.resize(width, height)
    for data in demo_result():
        viewer.add_layer(Layer.create(*data))
    dock_widgets(viewer)
    _settle(3.0)  # the demo's traversal arrives from a background worker
    anatomy = next(layer for layer in viewer.layers if layer.ndim == 3)
    ours = next(dock for dock in our_docks(viewer) if not dock.visibleRegion().isEmpty())
    left = [dock for dock in main.findChildren(QDockWidget) if dock.isVisible()
            and main.dockWidgetArea(dock) == Qt.DockWidgetArea.LeftDockWidgetArea]
    canvas_height, canvas_width = viewer.canvas.size
    print(f"window {main.width()} x {main.height()}: canvas {canvas_width} x {canvas_height} "
          f"({100 * canvas_width / main.width():.0f}% of the width), our dock {ours.width()}, "
          f"napari's docks {max(d.width() for d in left)}, "
          f"slice in view {100 * visible_fraction(viewer, anatomy):.0f}%")
    path = IMAGES / f"napari_layout_{width}.png"
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    viewer.close()
    return path


if __name__ == "__main__":
    sizes = [(1280, 800), (1920, 1080)] if len(sys.argv) < 3 else [(int(sys.argv[1]), int(sys.argv[2]))]
    for size in sizes:
        print(layout_screenshot(*size))
