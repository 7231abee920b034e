"""Screenshot of the Traverse and Eigen widgets in napari, on the output of ``napari-latent demo``.

    napari-latent demo --out demo/
    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/scripts/make_analysis_screenshot.py demo/

The demo's healthy subject, its codes and the supervised directions go into the session;
the Traverse widget traverses along the healthy-to-disease direction and the Eigen widget
analyses the traversal, both through their real workers. The viewer shows the traversal at
its last alpha with component 2 (the change) over it; the picture goes to
``docs/images/napari_traverse_eigen.png``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from napari_latent.gui.eigen_widget import SESSION_TRAVERSAL, EigenWidget
from napari_latent.gui.session import get_session
from napari_latent.gui.traverse_widget import TraverseWidget
from napari_latent.latent.codes import LatentCodes
from napari_latent.latent.directions import Directions
from napari_latent.models.checkpoint import load_model

IMAGES = Path(__file__).resolve().parents[1] / "images"


def main(demo: Path) -> Path:
    summary = json.loads((demo / "demo.json").read_text())
    subject = summary["traversed_subject"]
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1600, 980)
    [source] = viewer.open(str(demo / "cohort" / f"{subject}.nii.gz"), plugin="napari-latent")
    session = get_session(viewer)
    session.set_model(load_model("demo", device="cpu"), "demo")
    session.codes = {source.name: LatentCodes.load(demo / f"codes_{subject}.safetensors")}
    session.last_codes = (source.name, session.codes[source.name])
    session.directions = Directions.load(demo / "directions_supervised.safetensors")
    session.selected_direction = 0

    traverse = TraverseWidget(viewer)
    viewer.window.add_dock_widget(traverse, name="4 Traverse (napari-latent)", area="right")
    traverse.alphas.value = "0:3:15"
    traverse.units.value = "direction_std"
    traverse.run()
    traverse.runner.wait(600)
    eigen = EigenWidget(viewer)
    viewer.window.add_dock_widget(eigen, name="5 Eigen (napari-latent)", area="right")
    eigen.traversal.value = SESSION_TRAVERSAL
    eigen.components.value = 3
    eigen.run()
    eigen.runner.wait(600)

    # Show the last alpha of the traversal with component 2 (the change) on it.
    for layer in viewer.layers:
        layer.visible = False
    shown = [f"{source.name} traversal", f"{source.name} traversal eigen component 2"]
    for name in shown:
        viewer.layers[name].visible = True
    viewer.layers.selection.active = viewer.layers[shown[-1]]
    viewer.dims.set_current_step(0, 14)
    viewer.dims.set_current_step(1, int(np.asarray(source.data).shape[0] * 0.55))
    for _ in range(10):
        QApplication.processEvents()
    path = IMAGES / "napari_traverse_eigen.png"
    viewer.screenshot(str(path), canvas_only=False)
    viewer.close()
    return path


if __name__ == "__main__":
    print(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("demo")))
