"""Take the screenshot of the Discover widget and its gallery used in docs/gui.md (run under Xvfb).

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/scripts/make_discover_screenshot.py

A healthy phantom from the sample data, inverted with the demo model (the session's codes),
and the Discover widget after a SeFa run of 8 directions: the gallery of the slice in view,
sorted by the visible change, with the third direction renamed and selected by a click on
its gallery row. The window is 1500 x 950, arranged as napari-latent arranges it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import napari
from napari.settings import get_settings
from qtpy.QtWidgets import QScrollArea

from napari_latent.gui.discover_widget import DiscoverWidget
from napari_latent.gui.layers import volume_from_layer
from napari_latent.gui.layout import arrange
from napari_latent.gui.session import get_session
from napari_latent.latent.inversion import invert
from napari_latent.models.checkpoint import load_model

IMAGES = Path(__file__).resolve().parents[1] / "images"
warnings.filterwarnings("ignore", message="napari support for the PyQt5 backend")  # not a user's toast
get_settings().application.gui_notification_level = "error"  # no toasts over the canvas


def discover_screenshot() -> Path:
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 950)
    viewer.open_sample("napari-latent", "healthy_phantom")
    for layer in list(viewer.layers):
        if "label" in layer.name:
            viewer.layers.remove(layer)
    source = viewer.layers[0]
    session = get_session(viewer)
    model = load_model("demo", device="cpu")
    session.set_model(model, "demo")
    codes = invert(model, volume_from_layer(source.data, source.metadata, source.scale, source.translate),
                   method="encoder")
    session.codes = {source.name: codes}
    session.last_codes = (source.name, codes)
    widget = DiscoverWidget(viewer)
    viewer.window.add_dock_widget(widget, name="3 Discover", area="right")
    widget.method.value = "sefa"
    widget.count.value = 8
    widget.run()
    widget.runner.wait(300)
    widget.rename(2, "head size?")
    widget.gallery.sort.value = "visible change"
    row = widget.gallery.table.rows.index(2)
    widget.gallery.table.native.cellClicked.emit(row, 2)  # a click on its thumbnails selects it
    arrange(viewer)
    app = napari.qt.get_qapp()
    for _ in range(20):
        app.processEvents()
    scroll = widget.native.parentWidget()
    while scroll is not None and not isinstance(scroll, QScrollArea):
        scroll = scroll.parentWidget()
    if scroll is not None:  # the dock's scroll area: show the gallery, below the table
        scroll.verticalScrollBar().setValue(scroll.verticalScrollBar().maximum())
    for _ in range(20):
        app.processEvents()
    path = IMAGES / "napari_discover_widget.png"
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    viewer.close()
    return path


if __name__ == "__main__":
    print(discover_screenshot())
