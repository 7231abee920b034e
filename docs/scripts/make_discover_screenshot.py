"""Take the screenshot of the Discover widget used in docs/gui.md (run under Xvfb).

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/scripts/make_discover_screenshot.py

A healthy phantom from the sample data, the demo model in the session, and the Discover
widget after a SeFa run of 8 directions, with the third one renamed and selected.
"""

from __future__ import annotations

from pathlib import Path

import napari

from napari_latent.gui.discover_widget import DiscoverWidget
from napari_latent.gui.session import get_session
from napari_latent.models.checkpoint import load_model

IMAGES = Path(__file__).resolve().parents[1] / "images"


def discover_screenshot() -> Path:
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 950)
    viewer.open_sample("napari-latent", "healthy_phantom")
    for layer in list(viewer.layers):
        if "label" in layer.name:
            viewer.layers.remove(layer)
    get_session(viewer).set_model(load_model("demo", device="cpu"), "demo")
    widget = DiscoverWidget(viewer)
    viewer.window.add_dock_widget(widget, name="3 Discover", area="right")
    widget.method.value = "sefa"
    widget.count.value = 8
    widget.run()
    widget.runner.wait(300)
    widget.rename(2, "head size?")
    widget.select(2)
    napari.qt.get_qapp().processEvents()
    path = IMAGES / "napari_discover_widget.png"
    viewer.screenshot(str(path), canvas_only=False)
    viewer.close()
    return path


if __name__ == "__main__":
    print(discover_screenshot())
