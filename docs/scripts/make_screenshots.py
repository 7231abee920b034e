"""Take the napari screenshots used in README.md and docs/ (run under Xvfb).

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/scripts/make_screenshots.py
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import napari
import numpy as np

IMAGES = Path(__file__).resolve().parents[1] / "images"


def sample_data_screenshot() -> Path:
    """The disease phantom from the sample data, in a 2x2 grid of axial/coronal/sagittal/3D."""
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1400, 900)
    viewer.open_sample("napari-latent", "disease_phantom")
    labels = viewer.layers["disease phantom tissue labels"]
    labels.visible = True
    labels.opacity = 0.25
    viewer.dims.current_step = (64, 64, 64)
    path = IMAGES / "napari_sample_phantom.png"
    viewer.screenshot(str(path), canvas_only=False)
    viewer.close()
    return path


def model_widget_screenshot() -> Path:
    """The Model widget docked next to a phantom, with the demo model loaded."""
    from napari_latent.gui.model_widget import ModelWidget

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 950)
    viewer.open_sample("napari-latent", "healthy_phantom")
    viewer.layers["healthy phantom tissue labels"].visible = False
    viewer.layers.selection.active = viewer.layers["healthy phantom"]
    widget = ModelWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Model (napari-latent)", area="right")
    widget.load_demo()
    widget.data.value = Path("cohort")
    widget.output.value = Path("cohort_vae.safetensors")
    widget.epochs.value = 30
    viewer.dims.current_step = (64, 64, 64)
    return _shoot(viewer, "napari_model_widget.png")


def invert_widget_screenshot() -> Path:
    """The Invert widget after inverting the disease phantom with the demo model (grid view)."""
    from napari_latent.gui.invert_widget import InvertWidget
    from napari_latent.gui.session import get_session
    from napari_latent.models.checkpoint import load_model

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 950)
    viewer.open_sample("napari-latent", "disease_phantom")
    viewer.layers["disease phantom tissue labels"].visible = False
    viewer.layers.selection.active = viewer.layers["disease phantom"]
    get_session(viewer).set_model(load_model("demo", device="cpu"), "demo")
    widget = InvertWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Invert (napari-latent)", area="right")
    widget.layer.value = "disease phantom"
    widget.method.value = "hybrid"
    widget.steps.value = 20
    widget.run()
    widget.runner.wait(timeout=1800)
    viewer.grid.enabled = True
    viewer.dims.current_step = (70, 64, 64)
    return _shoot(viewer, "napari_invert_widget.png")


def demo_result_screenshot() -> Path:
    """The "Demo result" sample: component 2 on the subject, the Plots dock with the eigenvectors."""
    from qtpy.QtWidgets import QApplication

    from napari_latent.gui.session import get_session

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 950)
    viewer.open_sample("napari-latent", "demo_result")
    session = get_session(viewer)
    while session.background_workers:  # the traversal, computed in the background
        QApplication.processEvents()
    _, plots = viewer.window.add_plugin_dock_widget("napari-latent", "8 Plots")
    subject = next(layer for layer in viewer.layers if layer.name.endswith("(healthy)"))
    component = viewer.layers["demo eigen component 2"]
    viewer.layers.selection.active = component
    for layer in viewer.layers:  # component 2 (the paper's dynamic component) on the anatomy
        layer.visible = layer in (subject, component)
    step = list(viewer.dims.current_step)
    # an axial slice in the middle of the supervised direction's slice band (ventricle level)
    low, high = session.directions.info["slices"]
    modelled = np.flatnonzero(np.abs(np.asarray(component.data)).sum(axis=(1, 2)) > 0)
    middle = int(modelled[int(len(modelled) * (low + high) / 2)])
    step[0], step[1] = len(session.traversal.alphas) - 1, middle
    viewer.dims.current_step = tuple(step)
    # the plot renders in a background thread, again after the dock's final layout
    return _shoot(viewer, "napari_sample_demo_result.png", settle=plots.canvas.wait)


def _shoot(viewer: napari.Viewer, name: str, settle: Callable[[], None] | None = None) -> Path:
    """Fit the view into the canvas left beside the docks, save the window as ``docs/images/<name>``, close.

    ``settle`` is called after the layout (e.g. to wait for a plot that renders in the background).
    """
    _process_events()  # lay out the docks first
    viewer.reset_view()
    _process_events()
    if settle is not None:
        settle()
        _process_events()
    path = IMAGES / name
    viewer.screenshot(str(path), canvas_only=False)
    viewer.close()
    return path


def _process_events() -> None:
    """Let Qt draw the docked widgets and close notification toasts before a screenshot."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification
    from qtpy.QtWidgets import QApplication

    for toast in QApplication.allWidgets():
        if isinstance(toast, NapariQtNotification):
            toast.close()

    for _ in range(5):
        QApplication.processEvents()


if __name__ == "__main__":
    import sys
    import warnings

    # keep napari's PyQt5 deprecation toast out of the pictures
    warnings.filterwarnings("ignore", message="napari support for the PyQt5 backend")

    shots = {"sample": sample_data_screenshot, "model": model_widget_screenshot, "invert": invert_widget_screenshot,
             "demo_result": demo_result_screenshot}
    for name in sys.argv[1:] or list(shots):
        print(shots[name]())
