"""How much slower training runs from the napari Model widget than from the CLI/library.

    xvfb-run -a python benchmarks/bench_gui_training.py [--epochs 3]

Runs the same training twice on the same data: once with ``train_model`` in the main
thread (what the CLI does, without the terminal bar), once from the Model widget in a
napari viewer (a background worker with throttled progress updates). Prints both wall
times and the ratio (target: the widget within 1.2x of the CLI).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import napari
from _common import machine, phantom_cohort
from qtpy.QtWidgets import QApplication

from napari_latent.gui.model_widget import ModelWidget
from napari_latent.training import TrainSettings, train_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    cohort = phantom_cohort(10, 64)
    folder = Path(tempfile.mkdtemp())

    # warm-up (imports, allocator, oneDNN kernels) so that neither timed run pays for it
    train_model(cohort, "vae", settings=TrainSettings(epochs=1, batch_size=32, device="cpu"), image_size=64)
    start = time.perf_counter()
    train_model(cohort, "vae", out=folder / "cli.safetensors",
                settings=TrainSettings(epochs=args.epochs, batch_size=32, device="cpu"), image_size=64)
    cli_seconds = time.perf_counter() - start

    viewer = napari.Viewer(show=True)
    widget = ModelWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.data.value = cohort
    widget.output.value = folder / "gui.safetensors"
    widget.epochs.value = args.epochs
    widget.image_size.value = 64
    widget.device.value = "cpu"
    QApplication.processEvents()
    start = time.perf_counter()
    widget.train()
    widget.runner.wait(timeout=3600)
    gui_seconds = time.perf_counter() - start
    viewer.close()
    print(f"machine: {machine()}; VAE 64 px, {args.epochs} epochs on 10 phantom subjects")
    print(f"training wall time: CLI {cli_seconds:.2f} s, widget {gui_seconds:.2f} s, "
          f"widget/CLI ratio {gui_seconds / cli_seconds:.3f} (target <= 1.2)")


if __name__ == "__main__":
    main()
