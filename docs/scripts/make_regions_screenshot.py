"""Screenshot of the Plots dock's region curves beside the anatomy, on the bundled demo result.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/scripts/make_regions_screenshot.py

Opens the "Demo result" sample (its traversal is recomputed in the background), paints two
regions on a labels layer made from the subject (as napari's new-labels button does: the
ventricles and a patch of frontal white matter), measures them in the Plots dock's
"regions" view with the dark (CSF-like) voxels below 0.35 counted, and saves
``docs/images/napari_regions.png``.
"""

from __future__ import annotations

import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from napari_latent.gui.layers import META_KEY
from napari_latent.gui.plots_widget import PlotsWidget
from napari_latent.gui.session import get_session

IMAGES = Path(__file__).resolve().parents[1] / "images"


def ellipsoid(shape: tuple[int, ...], centre: tuple[float, ...], radii: tuple[float, ...]) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii, strict=True)) <= 1.0


def main() -> Path:
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1280, 800)
    viewer.open_sample("napari-latent", "demo_result")
    session = get_session(viewer)
    deadline = time.monotonic() + 300
    while session.traversal is None and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.02)
    anatomy = next(layer for layer in viewer.layers if layer.metadata.get(META_KEY, {}).get("kind") == "volume")
    for layer in viewer.layers:
        layer.visible = layer is anatomy
    viewer.layers.selection.active = anatomy
    viewer._new_labels()  # what napari's new-labels button does with the subject selected: its grid
    labels = viewer.layers[-1]
    labels.name = "painted regions"
    painted = np.zeros(labels.data.shape, np.uint8)
    painted[ellipsoid(painted.shape, (32, 31, 32), (4, 9, 7))] = 1  # the lateral ventricles
    painted[ellipsoid(painted.shape, (32, 15, 24), (3, 3, 4))] = 2  # frontal white matter
    labels.data = painted
    labels.opacity = 0.55

    plots = PlotsWidget(viewer)
    viewer.window.add_dock_widget(plots, name="Plots (napari-latent)", area="right")
    plots.view.setCurrentText("regions")
    plots.regions.region.value = labels.name
    plots.regions.threshold.value = "0.35"
    plots.regions.below.value = True
    plots.regions.measure()
    plots.regions.runner.wait(120)
    plots.canvas.wait()
    viewer.dims.set_point(viewer.dims.ndim - 3, 32 * anatomy.scale[0] + anatomy.translate[0])
    viewer.reset_view()
    viewer.camera.zoom *= 1.25
    qt_viewer = viewer.window._qt_viewer
    qt_viewer.dockLayerControls.setVisible(False)  # room for the anatomy: the layer list stays
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for widget in QApplication.allWidgets():
        if isinstance(widget, NapariQtNotification):
            widget.close()  # the PyQt5 deprecation toast
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.02)
    plots.canvas.wait()
    QApplication.processEvents()
    path = IMAGES / "napari_regions.png"
    viewer.screenshot(str(path), canvas_only=False)
    viewer.close()
    return path


if __name__ == "__main__":
    print(main())
