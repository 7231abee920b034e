"""How long the Views widget holds napari's GUI thread on a CT-sized traversal (run under Xvfb).

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/scripts/measure_views_blocks.py [MAX_SIZE]

Writes a synthetic 512 x 512 x 300 traversal store of 15 alphas (smooth frames, ~290 MB) in
a temporary folder, shows it lazily as the Traverse widget does, then times "Show in 3D":
the background build, each of the widget's steps in the GUI thread (what our code does
there) and the napari events after each step (napari drawing, mostly the 3D rendering),
then alpha changes in 3D (the slicing of the in-memory copy, and the redraw) and the
side-by-side mode. Under Xvfb the drawing is software OpenGL: seconds per 3D frame, where a
GPU takes milliseconds.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from napari_latent.gui.traverse_widget import show_traversal
from napari_latent.gui.views_widget import ViewsWidget
from napari_latent.latent.traversal import StoredTraversal, Traversal
from napari_latent.latent.traversal.store import StoreWriter
from napari_latent.volumes import Volume, save_volume
from napari_latent.volumes.grid import Grid

SHAPE = (512, 512, 300)
ALPHAS = np.linspace(-3, 3, 15)


def write_ct(folder: Path) -> tuple[Path, Path]:
    """A CT-like volume (NIfTI) and a traversal store over it: +/- blobs growing with alpha."""
    affine = np.diag([0.7, 0.7, 2.5, 1.0])
    affine[:3, 3] = (-180.0, -180.0, -375.0)
    grid = Grid(SHAPE, affine)
    x, y, z = (np.linspace(-1, 1, n, dtype=np.float32).reshape([-1 if i == a else 1 for i in range(3)])
               for a, n in enumerate(SHAPE))
    r2 = x * x + y * y + z * z
    anatomy = np.where(r2 < 0.7, 1000.0, -1000.0).astype(np.float32) + np.float32(300.0) * (r2 < 0.2)
    blob = (np.exp(-((x - 0.3) ** 2 + y * y + z * z) / 0.02)
            - np.exp(-((x + 0.3) ** 2 + y * y + z * z) / 0.02)).astype(np.float32)
    volume_path = save_volume(Volume(anatomy, affine, name="ct"), folder / "ct.nii.gz")
    facts = Traversal(np.broadcast_to(anatomy, (len(ALPHAS), *SHAPE)), ALPHAS, grid).to_json()
    writer = StoreWriter(folder / "traversal.zarr", grid, len(ALPHAS))
    for index, alpha in enumerate(ALPHAS):
        writer.write(index, anatomy + np.float32(200.0 * alpha) * blob)
    return volume_path, writer.commit(facts, len(ALPHAS))


def events_ms(rounds: int = 10) -> float:
    """Milliseconds spent in the event loop (napari drawing) over a few rounds."""
    start = time.perf_counter()
    for _ in range(rounds):
        QApplication.processEvents()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    max_size = int(sys.argv[1]) if len(sys.argv) > 1 else 192
    with tempfile.TemporaryDirectory() as tmp:
        volume_path, store = write_ct(Path(tmp))
        viewer = napari.Viewer(show=True)
        viewer.window._qt_window.resize(1280, 800)
        [source] = viewer.open(str(volume_path), plugin="napari-latent")
        show_traversal(viewer, StoredTraversal.open(store), source.name)
        widget = ViewsWidget(viewer)
        viewer.window.add_dock_widget(widget)
        events_ms()
        widget.max_size.value = max_size
        enter = widget._enter_3d

        def timed(*parts):  # each GUI-thread step of the widget, then the events napari handles after it
            steps = enter(*parts)
            while True:
                start = time.perf_counter()
                try:
                    next(steps)
                except StopIteration as done:
                    print(f"  last step {(time.perf_counter() - start) * 1000:.0f} ms, then events "
                          f"{events_ms():.0f} ms")
                    return done.value
                print(f"  step {(time.perf_counter() - start) * 1000:.0f} ms, then events {events_ms():.0f} ms")
                yield

        widget._enter_3d = timed
        start = time.perf_counter()
        widget.show_3d()
        widget.runner.wait(900)
        print(f"Show in 3D (max size {max_size}): {time.perf_counter() - start:.1f} s in all; "
              f"{widget.panel.status.value}")
        for step in (3, 12):
            start = time.perf_counter()
            viewer.dims.set_current_step(0, step)
            sliced = (time.perf_counter() - start) * 1000
            print(f"alpha step {step}: slicing {sliced:.0f} ms, then events {events_ms():.0f} ms")
        widget.back_to_2d()
        events_ms()
        start = time.perf_counter()
        widget.show_side_by_side()
        widget.runner.wait(900)
        print(f"Side by side: {time.perf_counter() - start:.2f} s in all, then events {events_ms():.0f} ms")
        start = time.perf_counter()
        widget.side_alpha.value = 2
        print(f"another alpha: {(time.perf_counter() - start) * 1000:.0f} ms, then events {events_ms():.0f} ms")
        widget.end_side_by_side()
        viewer.close()


if __name__ == "__main__":
    main()
