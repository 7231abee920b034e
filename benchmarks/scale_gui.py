"""The CT-sized traversal and eigen analysis from the napari widgets, and a stored traversal opened lazily (issue 16).

    xvfb-run -a python benchmarks/scale_gui.py [--workdir DIR] [--quick] [--no-baseline] [--shape 512 512 300]

The volume is the scale benchmark's (``scale_traversal.py``): nibabel's real T1 scan, clipped
at 0, resampled (linear) into the central 62% of a 512 x 512 x 300 float32 grid of zeros
(``--quick``: 96 x 96 x 60, seconds, to check that the benchmark works; ``--shape`` another
grid). Each flow runs in a
fresh process (its own peak RSS, ``VmHWM``) with a shown viewer (under Xvfb here):

* **widgets**: the volume opened with the reader, every napari-latent widget docked as
  ``napari-latent view`` does (the Explore widget then previews the new codes after the
  inversion, the Plots widget draws the eigen result), the bundled demo model (Model widget)
  and its SeFa directions in the session, then the Invert widget (method ``auto``), the
  Traverse widget (direction 0, alphas ``-3:3:15``, latent units; ours streams into a store,
  "save to" the work folder) and the Eigen widget (5 components, the session's traversal),
  run as a user would. Per stage: wall time, the longest time the GUI thread was blocked
  (a 10 ms ``QTimer``'s largest gap minus 10 ms, the method of ``bench_gui_block.py``), where
  it was blocked (:class:`BlockSampler`: napari's code or ours) and the
  stage's own peak RSS (the high-water mark is reset between stages through
  ``/proc/self/clear_refs`` where the kernel allows it); the process's peak RSS. Targets:
  peak RSS <= 2.5 GB, no block > 250 ms.
* **open**: an empty viewer is shown (napari's one-time set-up of a first layer done with a
  tiny image, removed; ``napari_latent.gui.launcher`` imported, as ``napari-latent view`` has
  before its window opens), then ``napari_latent.gui.show(traversal=...)`` opens the
  traversal: the time to the first paint of its layer (target <= 2 s), then the alpha slider
  is moved over every alpha and the slice slider over 40 planes (each step waits for its
  paint): the slowest step, the longest GUI-thread block and the process's peak RSS (target
  < 1.5 GB: the 4.7 GB array is never loaded whole).

Today's path, in the same run: the same flows with the code of commit :data:`BASELINE_COMMIT`
(extracted with ``git archive`` into the work folder), whose widgets compute the traversal in
memory with its difference volumes and whose ``show`` reads a 4D NIfTI whole (the store of the
widgets flow exported with ``StoredTraversal.export``). ``--no-baseline`` skips them (at full
size they need about 10 GB and several minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import baseline_source, ct_sized_volume

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ALPHAS = "-3:3:15"
COMPONENTS = 5
SCRUB_PLANES = 40
GB = 1024 ** 3
TIMEOUT_S = 4 * 3600


# -- setup (parent process) ---------------------------------------------------------------------

def child(flow: str, arguments: list[str], workdir: Path, tree: Path | None) -> dict[str, Any]:
    """Run one flow of this script in a fresh process (under Xvfb when there is no display)."""
    env = dict(os.environ)
    env["NAPARI_LATENT_TRAVERSALS"] = str(workdir / "stores")  # the GUI's temporary stores: not the user's cache
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    with tempfile.NamedTemporaryFile(suffix=".json", dir=workdir, delete=False) as handle:
        result = Path(handle.name)
    command = [sys.executable, str(Path(__file__).resolve()), "--flow", flow, "--result", str(result), *arguments]
    if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY") and shutil.which("xvfb-run"):
        command = ["xvfb-run", "-a", *command]
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"flow {flow} failed ({done.returncode}): {done.stderr[-3000:]}")
    out = json.loads(result.read_text())
    result.unlink()
    return out


# -- measuring (child process) ------------------------------------------------------------------

def _status(key: str) -> int:
    """A ``/proc/self/status`` entry in bytes (0 where there is none)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def peak_rss() -> int:
    """This process's peak RSS in bytes (``VmHWM``, else ``ru_maxrss``)."""
    peak = _status("VmHWM")
    if peak:
        return peak
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def reset_peak() -> bool:
    """Reset the peak RSS to the current RSS (Linux ``clear_refs`` 5); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class Paints:
    """Counts the canvas's paints (the vispy draw event of napari's canvas)."""

    def __init__(self, viewer: Any) -> None:
        self.count = 0
        canvas = viewer.window._qt_viewer.canvas._scene_canvas  # napari 0.5-0.9
        canvas.events.draw.connect(self._on_draw)

    def _on_draw(self, _event: Any) -> None:
        self.count += 1

    def wait_after(self, count: int, timeout: float = 600.0) -> None:
        """Serve the event loop until a paint after ``count`` paints happened."""
        from qtpy.QtWidgets import QApplication

        app = QApplication.instance()
        deadline = time.perf_counter() + timeout
        while self.count <= count and time.perf_counter() < deadline:
            app.processEvents()
            time.sleep(0.001)


class BlockSampler:
    """Where the GUI thread is while it is blocked: its stack, sampled from another thread.

    Every 20 ms, when the GUI thread's 10 ms timer has not ticked for 100 ms, the thread's
    innermost napari-latent frame and innermost frame are counted; :meth:`top` gives the most
    frequent places (each sample is 20 ms of blocked time), which tells our code from napari's.
    ``longest_ours`` is the longest run of consecutive blocked samples with a napari-latent
    frame on the stack.
    """

    def __init__(self, meter: Any) -> None:
        import threading

        self.meter = meter
        self.counts: dict[str, int] = {}
        self.main = threading.main_thread().ident
        self.running = False
        self.thread: Any = None

    def __enter__(self) -> BlockSampler:
        import threading

        self.counts = {}
        self.run_ours = 0  # consecutive blocked samples with a napari-latent frame on the stack
        self.longest_ours = 0
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.running = False
        self.thread.join()

    def _run(self) -> None:
        import traceback

        while self.running:
            time.sleep(0.02)
            ticks = self.meter.ticks
            if not ticks or time.perf_counter() - ticks[-1] < 0.1:
                self.run_ours = 0
                continue
            frame = sys._current_frames().get(self.main)
            if frame is None:
                continue
            stack = traceback.extract_stack(frame)
            ours = [f for f in stack if "napari_latent" in f.filename and "benchmarks" not in f.filename]
            place = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in (stack[-1], *ours[-1:]))
            self.counts[place] = self.counts.get(place, 0) + 1
            self.run_ours = self.run_ours + 1 if ours else 0
            self.longest_ours = max(self.longest_ours, self.run_ours)

    def top(self, count: int = 3) -> list[str]:
        """The most frequent blocked places, ``"<ms> ms: innermost <- innermost napari-latent frame"``."""
        ranked = sorted(self.counts.items(), key=lambda item: -item[1])[:count]
        return [f"{20 * n} ms: {place}" for place, n in ranked]


def _blocks(meter: Any) -> dict[str, float]:
    blocks = meter.blocks_ms()
    if not len(blocks):
        return {"max_block_ms": 0.0, "p99_block_ms": 0.0, "blocks_over_250ms": 0}
    return {"max_block_ms": float(blocks.max()), "p99_block_ms": float(np.percentile(blocks, 99)),
            "blocks_over_250ms": int((blocks > 250).sum())}


def _stage(meter: Any, name: str, start: Any, wait: Any, out: dict[str, Any]) -> None:
    """Run one widget stage with the gap meter on; its time, blocks and own peak."""
    resettable = reset_peak()
    t0 = time.perf_counter()
    sampler = BlockSampler(meter)
    with meter, sampler:
        start()
        wait()
    out[name] = {"seconds": time.perf_counter() - t0, **_blocks(meter), "blocked_at": sampler.top(),
                 "peak_rss_bytes": peak_rss() if resettable else None, "rss_after_bytes": _status("VmRSS")}


def flow_widgets(volume: str, workdir: Path) -> dict[str, Any]:
    """Invert, traverse and eigen from the docked widgets; see the module docstring."""
    import napari
    from bench_gui_block import GapMeter
    from qtpy.QtWidgets import QApplication

    import napari_latent as nl
    from napari_latent.gui.eigen_widget import EigenWidget
    from napari_latent.gui.invert_widget import InvertWidget
    from napari_latent.gui.model_widget import ModelWidget
    from napari_latent.gui.session import get_session
    from napari_latent.gui.traverse_widget import TraverseWidget

    app = QApplication.instance() or QApplication([])
    viewer = napari.Viewer(show=True)
    [layer] = viewer.open(volume, plugin="napari-latent")
    session = get_session(viewer)
    try:  # every widget docked, as 'napari-latent view' does (the Plots widget redraws on results)
        from napari_latent.gui.launcher import dock_widgets

        docked = dock_widgets(viewer)
        widgets = {"model": docked["1 Model"], "invert": docked["2 Invert"], "traverse": docked["4 Traverse"],
                   "eigen": docked["5 Eigen"]}
    except (ImportError, KeyError):
        widgets = {"model": ModelWidget(viewer), "invert": InvertWidget(viewer), "traverse": TraverseWidget(viewer),
                   "eigen": EigenWidget(viewer)}
        for widget in widgets.values():
            viewer.window.add_dock_widget(widget, tabify=True)
    widgets["model"].load_demo()
    session.directions = nl.discover(session.model, "sefa")
    session.selected_direction = 0
    del widgets["model"]
    app.processEvents()
    meter = GapMeter()
    stages: dict[str, Any] = {}
    timeout = TIMEOUT_S

    invert = widgets["invert"]
    invert.layer.value = layer.name
    invert.method.value = "auto"
    _stage(meter, "invert", invert.run, lambda: invert.runner.wait(timeout), stages)

    traverse = widgets["traverse"]
    traverse.codes.value = layer.name
    traverse.direction.value = 0
    traverse.alphas.value = ALPHAS
    traverse.units.value = "latent"
    store = workdir / "gui_traversal.zarr"
    if hasattr(traverse, "save_to"):  # ours: kept in the work folder for the open flow
        shutil.rmtree(store, ignore_errors=True)
        traverse.save_to.value = str(store)
    _stage(meter, "traverse", traverse.run, lambda: traverse.runner.wait(timeout), stages)

    eigen = widgets["eigen"]
    eigen.components.value = COMPONENTS
    _stage(meter, "eigen", eigen.run, lambda: eigen.runner.wait(timeout), stages)
    errors = {name: repr(widget.runner.last_error) for name, widget in widgets.items()
              if widget.runner.last_error is not None}
    traversal = session.traversal
    result = {"stages": stages, "peak_rss_bytes": peak_rss(), "errors": errors,
              "alphas": 0 if traversal is None else len(traversal),
              "store": str(getattr(traversal, "path", "")) if traversal is not None else "",
              "components": 0 if session.eigen is None else int(session.eigen.n_components)}
    viewer.close()
    return result


def flow_open(traversal: str) -> dict[str, Any]:
    """Open a saved traversal with ``show`` on a shown viewer; first paint, then scrub alpha and slice."""
    import napari
    from bench_gui_block import GapMeter
    from qtpy.QtWidgets import QApplication

    from napari_latent.gui.launcher import show

    app = QApplication.instance() or QApplication([])
    viewer = napari.Viewer(show=True)
    paints = Paints(viewer)
    paints.wait_after(0)  # the empty canvas
    # napari's own one-time set-up of its first layer (units registry, shaders) is not the traversal's
    warm = viewer.add_image(np.zeros((8, 8), np.float32))
    paints.wait_after(paints.count, timeout=10)
    viewer.layers.remove(warm)
    paints.wait_after(paints.count, timeout=10)
    rss_before = _status("VmRSS")
    count = paints.count
    t0 = time.perf_counter()
    show(traversal=traversal, viewer=viewer, widgets=False)
    shown = time.perf_counter() - t0
    paints.wait_after(count)
    first_paint = time.perf_counter() - t0
    [layer] = [item for item in viewer.layers if item.ndim == 4]
    alphas, planes = int(layer.data.shape[0]), int(layer.data.shape[1])
    positions = [(0, a) for a in range(alphas)]
    positions += [(1, int(p)) for p in np.linspace(0, planes - 1, min(SCRUB_PLANES, planes)).round()]
    meter = GapMeter()
    steps = []
    with meter:
        for axis, index in positions:
            count = paints.count
            t = time.perf_counter()
            viewer.dims.set_current_step(axis, index)
            paints.wait_after(count)
            steps.append(time.perf_counter() - t)
        app.processEvents()
    result = {"show_s": shown, "first_paint_s": first_paint, "steps": len(steps),
              "slowest_step_s": float(max(steps)), "median_step_s": float(np.median(steps)),
              **_blocks(meter), "rss_before_bytes": rss_before, "rss_after_bytes": _status("VmRSS"),
              "peak_rss_bytes": peak_rss(), "lazy": type(layer.data).__module__.startswith("dask"),
              "array_bytes": int(np.prod(layer.data.shape)) * 4}
    viewer.close()
    return result


# -- the benchmark --------------------------------------------------------------------------------

def _row(name: str, ours: float, baseline: float | None, unit: str, target: str | None = None,
         lower_is_better: bool = True, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"name": name, "ours": ours, "unit": unit}
    if baseline is not None:
        row["baseline"] = baseline
        row["ratio"] = (baseline / ours if lower_is_better else ours / baseline) if ours else float("inf")
    if target is not None:
        row["target"] = target
    row.update(extra)
    return row


def run(workdir: Path, quick: bool = False, baseline: bool = True,
        shape: tuple[int, int, int] | None = None) -> list[dict[str, Any]]:
    """The scale benchmark's GUI lines (rows: name, ours, baseline, ratio, unit, target).

    ``shape`` overrides the volume's grid (default 512 x 512 x 300, ``quick`` 96 x 96 x 60).
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    shape = shape or ((96, 96, 60) if quick else (512, 512, 300))
    volume = ct_sized_volume(workdir / f"ct_{'x'.join(map(str, shape))}.nii.gz", shape)
    tree = baseline_source(workdir) if baseline else None

    ours = child("widgets", ["--volume", str(volume), "--workdir", str(workdir)], workdir, None)
    if ours["errors"]:
        raise RuntimeError(f"the widgets flow failed: {ours['errors']}")
    theirs = child("widgets", ["--volume", str(volume), "--workdir", str(workdir)], workdir, tree) if tree else None
    store = Path(ours["store"])
    opened = child("open", ["--traversal", str(store)], workdir, None)
    opened_theirs = None
    if tree is not None:
        from napari_latent.latent.traversal import StoredTraversal

        nifti = StoredTraversal.open(store).export(workdir / "gui_traversal.nii.gz")
        opened_theirs = child("open", ["--traversal", str(nifti)], workdir, tree)

    def stage_max(result: dict[str, Any] | None, key: str) -> float | None:
        return None if result is None else max(stage[key] for stage in result["stages"].values())

    size = "x".join(map(str, shape))
    rows = [
        _row(f"GUI widgets invert + traverse + eigen ({size}, 15 alphas, 5 components): peak RSS",
             ours["peak_rss_bytes"] / GB, None if theirs is None else theirs["peak_rss_bytes"] / GB, "GB",
             "<= 2.5 GB", stage_peak_gb={k: (v["peak_rss_bytes"] or 0) / GB for k, v in ours["stages"].items()}),
        _row("GUI widgets: longest GUI-thread block", stage_max(ours, "max_block_ms"),
             stage_max(theirs, "max_block_ms"), "ms", "<= 250 ms",
             stage_block_ms={k: v["max_block_ms"] for k, v in ours["stages"].items()},
             blocked_at={k: v["blocked_at"] for k, v in ours["stages"].items()},
             baseline_stage_block_ms=None if theirs is None else
             {k: v["max_block_ms"] for k, v in theirs["stages"].items()}),
    ]
    for stage in ("invert", "traverse", "eigen"):
        rows.append(_row(f"GUI {stage} widget: wall time", ours["stages"][stage]["seconds"],
                         None if theirs is None else theirs["stages"][stage]["seconds"], "s"))
    rows += [
        _row(f"napari opens a stored {ours['alphas']}x{size} traversal: first paint", opened["first_paint_s"],
             None if opened_theirs is None else opened_theirs["first_paint_s"], "s", "<= 2 s",
             show_s=opened["show_s"], lazy=opened["lazy"], baseline_opens="4D NIfTI, read whole"),
        _row("napari scrubbing alpha and slice: peak RSS", opened["peak_rss_bytes"] / GB,
             None if opened_theirs is None else opened_theirs["peak_rss_bytes"] / GB, "GB", "< 1.5 GB",
             traversal_gb=opened["array_bytes"] / GB, rss_before_open_gb=opened["rss_before_bytes"] / GB),
        _row("napari scrubbing: slowest step (slider move to paint)", opened["slowest_step_s"] * 1000,
             None if opened_theirs is None else opened_theirs["slowest_step_s"] * 1000, "ms",
             median_step_ms=opened["median_step_s"] * 1000, max_block_ms=opened["max_block_ms"], steps=opened["steps"]),
    ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--shape", type=int, nargs=3, default=None, help="another volume grid (e.g. 256 256 150)")
    parser.add_argument("--flow", choices=("widgets", "open"), help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--volume", help=argparse.SUPPRESS)
    parser.add_argument("--traversal", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flow is not None:  # a child process: one flow, its result as JSON
        result = flow_widgets(args.volume, args.workdir) if args.flow == "widgets" else flow_open(args.traversal)
        args.result.write_text(json.dumps(result))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="napari-latent-scale-gui-"))
    for row in run(workdir, args.quick, not args.no_baseline, tuple(args.shape) if args.shape else None):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
