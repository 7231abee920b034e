"""Longest GUI-thread blocks of the Plots dock's regions and voxel views on a CT-sized traversal store.

    xvfb-run -a python docs/scripts/measure_region_blocks.py

Writes a synthetic traversal store of a CT's size (512 x 512 x 300 voxels, 15 alphas, 4.7 GB
of float32, a few hundred MB compressed) into a temporary folder, opens it lazily, paints two
regions on a 4D labels layer made from the traversal layer (napari's new-labels button),
measures them, then a shapes rectangle, then clicks three voxels in the "voxel" view; a 10 ms
timer in the GUI thread measures how long the event loop could not respond each time.
Measured 2026-12-06 (2 cores, Xvfb; two runs): labels 7.9-10.1 s with the longest block
104-166 ms, shapes 1.5-4.6 s / 49-95 ms, a voxel 0.3-0.5 s / 33-40 ms. Before region_curves
numbered the regions with a lookup table instead of ``numpy.unique`` the labels took 41 s
with blocks of 1.8 s.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_gui_block import GapMeter

from napari_latent.gui.plots_widget import PlotsWidget
from napari_latent.gui.session import get_session
from napari_latent.latent.traversal.facts import TRAVERSAL_FORMAT, TRAVERSAL_VERSION
from napari_latent.latent.traversal.store import StoredTraversal, StoreWriter
from napari_latent.volumes.grid import Grid
from napari_latent.volumes.orientation import display_geometry


def ct_store(path: Path) -> Path:
    """A smooth synthetic 'CT' (air, a body, a growing blob) at 15 alphas, written one frame at a time."""
    shape = (512, 512, 300)
    affine = np.diag([0.7, 0.7, 1.5, 1.0])
    affine[:3, 3] = [-180.0, -180.0, -200.0]
    grid = Grid(shape, affine)
    alphas = np.linspace(-3.0, 3.0, 15)
    i, j, k = (np.linspace(-1, 1, n, dtype=np.float32) for n in shape)
    r2 = i[:, None, None] ** 2 + j[None, :, None] ** 2 + k[None, None, :] ** 2
    body = np.where(r2 < 0.8, 1000.0 + 200.0 * np.cos(6 * i)[:, None, None] * np.sin(5 * j)[None, :, None],
                    -1000.0).astype(np.float32)
    blob = np.exp(-r2 / 0.05).astype(np.float32) * 50.0
    writer = StoreWriter(path, grid, len(alphas))
    for a, alpha in enumerate(alphas):
        writer.write(a, body + np.float32(alpha) * blob)
    facts = {"format": TRAVERSAL_FORMAT, "format_version": TRAVERSAL_VERSION, "alphas": alphas.tolist(),
             "units": "sd", "alpha_scale": 1.0, "latent_alphas": alphas.tolist(), "baseline_index": 7,
             "direction": None, "model": "synthetic", "model_fingerprint": "", "space": "z", "grid": grid.to_json(),
             "geometry": None, "fill": "window", "source": "", "info": {}}
    return writer.commit(facts, len(alphas))


def measure(name: str, run: Callable[[], None], done: Callable[[], bool]) -> None:
    """Run ``run``, let the event loop turn until ``done()``, print the time and the longest blocks."""
    app = QApplication.instance()
    meter = GapMeter()
    start = time.perf_counter()
    with meter:
        run()
        while not done():
            app.processEvents()
            time.sleep(0.005)
        for _ in range(20):
            app.processEvents()
            time.sleep(0.01)
    blocks = meter.blocks_ms()
    print(f"{name}: {time.perf_counter() - start:.1f} s, longest blocks (ms) {[int(b) for b in sorted(blocks)[-3:]]}",
          flush=True)


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    try:
        store = ct_store(folder / "ct.zarr")
        viewer = napari.Viewer(show=True)
        [layer] = viewer.open(str(store), plugin="napari-latent")
        session = get_session(viewer)
        session.traversal = StoredTraversal.open(store)
        plots: Any = PlotsWidget(viewer)
        viewer.window.add_dock_widget(plots)
        viewer.layers.selection.active = layer
        viewer._new_labels()
        labels = viewer.layers[-1]
        labels.data[7, 140:160, 200:260, 150:220] = 1
        labels.data[7, 100:120, 250:300, 100:180] = 2
        plots.view.setCurrentText("regions")
        plots.regions.region.value = labels.name
        plots.regions.threshold.value = "1050"
        regions = plots.regions
        measure("labels", regions.measure, lambda: not regions.runner.running)
        geometry = display_geometry(session.traversal.grid)
        shapes = viewer.add_shapes(ndim=3, scale=geometry.scale, translate=geometry.translate, name="drawn")
        shapes.add_rectangles(np.array([[150, 200, 150], [150, 200, 300], [150, 300, 300], [150, 300, 150]], float))
        regions.region.value = "drawn"
        measure("shapes", regions.measure, lambda: not regions.runner.running)
        plots.view.setCurrentText("voxel")
        for n in range(3):
            world = np.asarray(layer.data_to_world([7, 150, 250 + 10 * n, 200]))
            def shown(n: int = n) -> bool:
                return plots.voxel.reading is not None and plots.voxel.reading.display_index[1] == 250 + 10 * n

            measure(f"voxel {n}", lambda world=world: plots.voxel.show_position(world), shown)
        viewer.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
