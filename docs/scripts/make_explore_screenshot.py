"""Screenshot of the Explore widget acting on a phantom with the demo model (run under Xvfb).

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/scripts/make_explore_screenshot.py

Writes ``docs/images/napari_explore_widget.png``: a disease phantom (96 cubed), inverted with
the bundled demo VAE, 8 PCA directions, the first slider at +2.5 standard deviations; the
preview layer shows the shifted slice and the difference overlay what changed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtWidgets import QApplication

import napari_latent as nl
from napari_latent.gui import show
from napari_latent.volumes.phantoms import PhantomFactors

IMAGES = Path(__file__).resolve().parents[1] / "images"


def main() -> Path:
    phantom = nl.make_phantom(PhantomFactors(ventricle_enlargement=0.8, lesion_load=0.6), size=96, seed=1)
    volume = nl.Volume(phantom.image, phantom.affine, name="disease phantom")
    model = nl.load_model("demo", device="cpu")
    codes = nl.invert(model, volume, method="encoder")
    directions = nl.discover(model, "pca", count=8)
    viewer = show(volume=volume, model=model, codes=codes, directions=directions, return_viewer=True,
                  widgets=False)
    viewer.window._qt_window.resize(1500, 950)
    viewer.window._qt_window.show()
    _, explore = viewer.window.add_plugin_dock_widget("napari-latent", "6 Explore")
    axis, plane_of = explore.plane_axis()
    middle = int(codes.indices[len(codes) // 2])
    step = list(viewer.dims.current_step)
    step[axis] = int(np.nonzero(plane_of == middle)[0][0])
    viewer.dims.current_step = tuple(step)
    explore.set_values({0: 2.5, 1: -1.5})
    viewer.layers["disease phantom"].visible = False
    viewer.layers.selection.active = explore.preview_layer
    for _ in range(5):  # lay out the dock, then fit the view into the canvas that is left
        QApplication.processEvents()
    viewer.reset_view()
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in QApplication.allWidgets():  # notification toasts
        if isinstance(toast, NapariQtNotification):
            toast.close()
    for _ in range(5):
        QApplication.processEvents()
    path = IMAGES / "napari_explore_widget.png"
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(path, explore.status.value)
    viewer.close()
    return path


if __name__ == "__main__":
    import warnings

    # keep napari's PyQt5 deprecation toast out of the picture
    warnings.filterwarnings("ignore", message="napari support for the PyQt5 backend")
    main()
