"""Screenshot of the whole napari-latent workflow, docked as ``napari -w napari-latent`` docks it.

    xvfb-run -a -s "-screen 0 1700x1000x24" python docs/scripts/make_workflow_screenshot.py

A healthy brain phantom (64 cubed) is inverted with the bundled demo model, SeFa directions
are discovered, the volume is traversed along the first one and the traversal is split into
eigencomponents, each through its widget's real worker. The window shows the traversal at
its last alpha with the component most correlated with alpha over it, the Plots widget
showing the eigenvectors against alpha. Written to ``docs/images/napari_workflow.png``.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import napari
import numpy as np
from napari.settings import get_settings
from qtpy.QtWidgets import QApplication

from napari_latent.gui.layers import META_KEY
from napari_latent.gui.layout import raise_dock
from napari_latent.volumes.phantoms import PhantomFactors, make_phantom

IMAGES = Path(__file__).resolve().parents[1] / "images"


warnings.filterwarnings("ignore", message="napari support for the PyQt5 backend")  # not a user's toast
get_settings().application.gui_notification_level = "error"  # no toasts over the canvas


def main() -> Path:
    folder = Path(tempfile.mkdtemp())
    phantom = make_phantom(PhantomFactors(), size=64, seed=2)
    import nibabel as nib

    nib.save(nib.Nifti1Image(phantom.image, phantom.affine), folder / "healthy.nii.gz")
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1700, 980)
    [source] = viewer.open(str(folder / "healthy.nii.gz"), plugin="napari-latent")
    widgets = {}
    for name in ("1 Model", "2 Invert", "3 Discover", "4 Traverse", "5 Eigen", "8 Plots"):
        _dock, widget = viewer.window.add_plugin_dock_widget("napari-latent", name, tabify=name != "8 Plots")
        widgets[name] = widget
    widgets["1 Model"].load_demo()
    invert = widgets["2 Invert"]
    invert.layer.value = source.name
    invert.method.value = "encoder"
    invert.run()
    invert.runner.wait(600)
    discover = widgets["3 Discover"]
    discover.method.value = "sefa"
    discover.count.value = 5
    discover.run()
    discover.runner.wait(600)
    traverse = widgets["4 Traverse"]
    traverse.codes.value = source.name
    traverse.direction.value = 0
    traverse.alphas.value = "0:3:15"
    traverse.units.value = "latent"
    traverse.run()
    traverse.runner.wait(600)
    eigen = widgets["5 Eigen"]
    eigen.run()
    eigen.runner.wait(600)
    for name in (f"{source.name} reconstruction",):
        if name in viewer.layers:
            viewer.layers[name].visible = False
    traversal_layer = viewer.layers[f"{source.name} traversal"]
    viewer.dims.set_current_step(0, traversal_layer.data.shape[0] - 1)
    viewer.dims.set_current_step(1, traversal_layer.data.shape[1] // 2)
    components = [layer for layer in viewer.layers if (layer.metadata.get(META_KEY) or {}).get("kind")
                  == "eigen_component"]
    result = eigen.session.eigen
    best = int(np.nanargmax(np.abs(np.nan_to_num(result.alpha_correlation())))) + 1
    for layer in components:
        layer.visible = (layer.metadata[META_KEY].get("component") == best)
    widgets["8 Plots"].view.setCurrentText("eigenvectors")
    widgets["8 Plots"].select_component(best)
    raise_dock(viewer, widgets["8 Plots"])  # our docks are one tab group: show the Plots tab
    for _ in range(10):
        QApplication.processEvents()
    widgets["8 Plots"].refresh()
    widgets["8 Plots"].canvas.wait()  # drawn in a background thread
    for _ in range(10):
        QApplication.processEvents()
    out = IMAGES / "napari_workflow.png"
    viewer.screenshot(str(out), canvas_only=False, flash=False)
    viewer.close()
    return out


if __name__ == "__main__":
    print(main())
