"""Take the Views widget's screenshots (3D view, side by side) of the demo sample (run under Xvfb).

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/scripts/make_views_screenshots.py

Writes docs/images/napari_3d_view.png and docs/images/napari_side_by_side.png: the demo result
(a healthy phantom and its healthy-to-disease traversal), shown in 3D with the traversal's
difference at a large alpha, and alpha 0 beside alpha 3 (the layer docks closed, for room).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_latent.gui.session import get_session
from napari_latent.gui.views_widget import RIGHT_ALPHA, ViewsWidget

IMAGES = Path(__file__).resolve().parents[1] / "images"


def _settle(rounds: int = 10) -> None:
    """Let Qt lay out and draw, and close notification toasts."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in QApplication.allWidgets():
        if isinstance(toast, NapariQtNotification):
            toast.close()
    for _ in range(rounds):
        QApplication.processEvents()
        time.sleep(0.02)


def main() -> list[Path]:
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1280, 800)
    viewer.open_sample("napari-latent", "demo_result")
    session = get_session(viewer)
    start = time.monotonic()
    while session.traversal is None and time.monotonic() - start < 300:  # computed in the background
        QApplication.processEvents()
        time.sleep(0.02)
    _settle()
    widget = ViewsWidget(viewer)
    viewer.window.add_dock_widget(widget, name="9 Views")
    _settle()
    widget.show_3d()
    widget.runner.wait(300)
    viewer.dims.set_current_step(0, 12)  # alpha 2.6 of 0 .. 3: a large change
    viewer.layers.selection.active = widget.layers_3d[1]
    _settle()
    paths = [IMAGES / "napari_3d_view.png", IMAGES / "napari_side_by_side.png"]
    viewer.screenshot(str(paths[0]), canvas_only=False, flash=False)
    print(paths[0], widget.panel.status.value)
    widget.back_to_2d()
    widget.side_alpha.value = len(session.traversal.alphas) - 1
    widget.side_right.value = RIGHT_ALPHA
    widget.show_side_by_side()
    widget.runner.wait(300)
    qt_viewer = viewer.window._qt_viewer  # room for the two cells: the layer docks are closed for this one
    qt_viewer.dockLayerControls.setVisible(False)
    qt_viewer.dockLayerList.setVisible(False)
    _settle()
    viewer.reset_view()
    _settle()
    viewer.screenshot(str(paths[1]), canvas_only=False, flash=False)
    print(paths[1], widget.panel.status.value)
    viewer.close()
    return paths


if __name__ == "__main__":
    warnings.filterwarnings("ignore", message="napari support for the PyQt5 backend")
    main()
