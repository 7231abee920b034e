"""The Plots dock's "regions" and "voxel" views: region curves over alpha, and a clicked voxel's values.

:class:`RegionsView` holds the controls of the regions view (the region layer or mask file,
an optional threshold, the measure to plot, Measure and Save CSV) and measures in the
background: the region layer's labels are made (:mod:`napari_latent.gui.regions`) and
:func:`~napari_latent.analysis.regions.region_curves` reads the traversal slab by slab in
an :class:`~napari_latent.gui.runner.OperationRunner` worker. Only references to the
layer's data and the shapes' vertices are taken in the GUI thread.

:class:`VoxelView` reads a clicked voxel at every alpha in a background thread (a newer
click drops an older result) and plots it, with a marker at the viewer's current alpha.

Both draw on the Plots dock's canvas, whose figure is changed and rendered in its render
thread (``prepare`` functions of :meth:`BackgroundCanvas.render`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, LineEdit, PushButton
from matplotlib.figure import Figure
from qtpy.QtCore import QObject, Signal

from ..analysis.regions import RegionCurves, region_curves, resolve_regions
from ..errors import UserInputError
from ..progress import Operation, ProgressEvent, StopFlag
from ..volumes.io import open_volume, volume_name
from .layers import grid_layer_data, layer_entry, layer_grid
from .regions import (
    MEASURES,
    VoxelReading,
    check_layer_on_grid,
    draw_regions,
    draw_voxel,
    labels_from_data,
    labels_from_shapes,
    read_voxel,
    set_current_alpha,
    shape_polygons,
)

if TYPE_CHECKING:
    from .plots_widget import PlotsWidget

#: The files the "mask file" field offers (those :func:`~napari_latent.volumes.open_volume` reads).
MASK_FILTER = "*.nii *.nii.gz *.mgz *.mgh *.nrrd *.nhdr *.mha *.mhd"
#: The region choice that measures the mask file of the "mask file" field.
MASK_FILE = "(mask file)"
NO_TRAVERSAL = ("No traversal yet: traverse a volume in the Traverse widget, or open a saved traversal, to "
                "measure regions over alpha.")
NO_REGION = ("Paint a Labels layer (select the traversal layer, then napari's new-labels button), draw a Shapes "
             "layer on a slice, or choose a mask file; then Measure.")


def traversal_layer_for(viewer: Any, traversal: Any) -> Any:
    """The 4D traversal layer that shows ``traversal`` (its store, or its images), else the first one, else None."""
    from .eigen_widget import traversal_layers
    from .stores import layer_showing

    shown = layer_showing(viewer, traversal) if traversal is not None else None
    if shown is not None:
        return shown
    layers = traversal_layers(viewer)
    return layers[0] if layers else None


class RegionsView:
    """Region curves in the Plots dock.

    Scriptable: ``view.region.value = "Labels"`` (a Labels or Shapes layer, or
    ``"(mask file)"`` with ``view.mask_file.value = path``), ``view.threshold.value = "0.3"``
    (empty: none), ``view.below.value = True``, ``view.measure_choice.value = "all"``,
    ``view.measure()``, ``view.runner.wait()``; the numbers are ``view.curves``
    (:class:`~napari_latent.analysis.regions.RegionCurves`), ``view.save_csv(path)`` writes them.
    """

    def __init__(self, plots: PlotsWidget) -> None:
        from .runner import OperationRunner, ProgressPanel

        self.plots = plots
        self.viewer = plots.viewer
        self.session = plots.session
        self.region = ComboBox(label="region", choices=self._region_choices)
        self.mask_file = FileEdit(label="mask file", mode="r", filter=MASK_FILTER)
        self.threshold = LineEdit(label="threshold", value="")
        self.threshold.native.setPlaceholderText("none (intensity units)")
        self.below = CheckBox(text="count voxels below the threshold", value=False)
        self.measure_choice = ComboBox(label="plot", choices=list(MEASURES), value="all")
        self.measure_button = PushButton(text="Measure")
        self.save_button = PushButton(text="Save CSV…", enabled=False)
        self.panel = ProgressPanel()
        self.runner = OperationRunner(self.panel, lambda busy: setattr(self.measure_button, "enabled", not busy))
        buttons = Container(widgets=[self.measure_button, self.save_button], layout="horizontal", labels=False)
        buttons.margins = (0, 0, 0, 0)
        self.controls = Container(widgets=[self.region, self.mask_file, self.threshold, self.below,
                                           self.measure_choice, buttons, self.panel])
        self.figure = Figure(figsize=(5.0, 6.0), layout="constrained")
        self.curves: RegionCurves | None = None
        self.eigen: Any = None
        self._region_name, self._note = "", ""
        self.measure_button.changed.connect(lambda: self.measure())
        self.save_button.changed.connect(lambda: self._save_dialog())
        self.measure_choice.changed.connect(lambda _value: self.plots.refresh())
        self.mask_file.changed.connect(self._on_mask_file)
        self._connections: list[tuple[Any, Callable[[Any], None]]] = []
        self._connect(self.viewer.layers.events.inserted, self._on_inserted)
        self._connect(self.viewer.layers.events.removed, self._reset_choices)
        for layer in self.viewer.layers:
            self._connect(layer.events.name, self._reset_choices)

    def _connect(self, emitter: Any, callback: Callable[[Any], None]) -> None:
        emitter.connect(callback)
        self._connections.append((emitter, callback))

    def close(self) -> None:
        """Disconnect from the viewer's events (the dock is gone)."""
        for emitter, callback in self._connections:
            emitter.disconnect(callback)
        self._connections = []

    def _reset_choices(self, _event: Any = None) -> None:
        self.region.reset_choices()

    def _on_inserted(self, event: Any) -> None:
        self._connect(event.value.events.name, self._reset_choices)  # a renamed layer is offered by its new name
        self._reset_choices()

    # -- choices ------------------------------------------------------------------------------
    def _region_choices(self, _widget: Any = None) -> list[str]:
        from napari.layers import Labels, Shapes

        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Labels | Shapes)]
        return [*names, MASK_FILE]

    def _on_mask_file(self, value: Any) -> None:
        if value and Path(value).is_file():
            self.region.value = MASK_FILE

    # -- drawing ------------------------------------------------------------------------------
    def show(self) -> None:
        """Show the last curves (or what to do) in the Plots dock."""
        if self.curves is None:
            has_traversal = self.session.traversal is not None or traversal_layer_for(self.viewer, None) is not None
            self.plots.status.setText(NO_REGION if has_traversal else NO_TRAVERSAL)
            self.plots._show(None)
            return
        curves, eigen, measure = self.curves, self.eigen, str(self.measure_choice.value)
        figure = self.figure
        self.plots.status.setText(curves.summary())
        self.plots._show(figure, prepare=lambda: draw_regions(figure, curves, measure, eigen))
        canvas = self.plots.canvas
        if canvas is not None:
            panels = 1 if measure != "all" else 1 + (curves.threshold_mm3 is not None) + (
                curves.component_means is not None)
            canvas.setMinimumHeight(max(260, 140 * panels))

    # -- measuring ----------------------------------------------------------------------------
    def measure(self) -> None:
        """Measure the chosen region over the traversal's alphas in the background."""
        self.runner.start(self._make_operation, self._on_result, "Measure regions")

    def _traversal(self) -> tuple[Any, Any]:
        """``(traversal or None, layer or None)``: the session's traversal, else the first traversal layer's."""
        traversal = self.session.traversal
        if traversal is not None:
            return traversal, None
        layer = traversal_layer_for(self.viewer, None)
        if layer is None:
            raise UserInputError(NO_TRAVERSAL)
        return None, layer

    def _make_operation(self, stop: StopFlag) -> Operation[tuple[RegionCurves, Any, Any]]:
        """In the GUI thread: check the choices and take references (no voxel is read here)."""
        traversal, traversal_layer = self._traversal()
        if traversal is not None:
            grid = traversal.grid
        else:
            grid = layer_grid(traversal_layer.data, traversal_layer.metadata, tuple(traversal_layer.scale)[1:],
                              tuple(traversal_layer.translate)[1:])
        threshold = self._threshold()
        below = bool(self.below.value)
        choice = self.region.value
        regions: Callable[[], Any]
        self._note = ""
        if choice == MASK_FILE:
            path = self.mask_file.value
            if not path or not Path(path).is_file():
                raise UserInputError("choose a mask / label NIfTI in the 'mask file' field")
            source = Path(path)
            regions = lambda: self._mask_file_labels(source, grid)  # noqa: E731
            name = f"regions {volume_name(source)}"
        else:
            layer = next((item for item in self.viewer.layers if item.name == choice), None)
            if layer is None:
                raise UserInputError(NO_REGION)
            from napari.layers import Shapes

            if isinstance(layer, Shapes):
                polygons, skipped = shape_polygons(layer, grid)
                if skipped:
                    self._note = f"; shapes {skipped} are lines or paths (no area), left out"
                regions = lambda: (labels_from_shapes(polygons, grid), None)  # noqa: E731
            else:
                geometry = check_layer_on_grid(layer, grid)
                data = layer.data
                regions = lambda: (labels_from_data(data, geometry), None)  # noqa: E731
            name = layer.name
        eigen = self.session.eigen
        if eigen is not None and eigen.grid != grid:
            eigen = None
        self._region_name = name
        return self._operation(traversal, traversal_layer, regions, threshold, below, eigen)

    def _mask_file_labels(self, path: Path, grid: Any) -> tuple[np.ndarray, Any]:
        """In the worker: a mask file's labels on the traversal's grid, and a labels layer to show them."""
        volume = open_volume(path)
        grid.check_same(volume.grid, f"the mask file {path.name}")
        labels, _info = resolve_regions(_GridOnly(grid), volume)
        layer = grid_layer_data(labels, grid, f"regions {volume_name(path)}", layer_type="labels",
                                extra={"kind": "regions", "path": str(path)}, opacity=0.45)
        return labels, layer

    def _operation(self, traversal: Any, traversal_layer: Any, regions: Callable[[], Any], threshold: float | None,
                   below: bool, eigen: Any) -> Operation[tuple[RegionCurves, Any, Any]]:
        """In the worker: the labels, the traversal (from a layer, lazily), the curves."""
        yield ProgressEvent(0, None, "making the regions", stage="regions")
        if traversal is None:
            from .eigen_widget import traversal_from_layer

            traversal = traversal_from_layer(traversal_layer)
        labels, layer = regions()
        yield ProgressEvent(0, None, f"reading {len(traversal)} alphas", stage="measure")
        curves = region_curves(traversal, labels, threshold, below, eigen=eigen)
        return curves, eigen, layer

    def _threshold(self) -> float | None:
        text = str(self.threshold.value or "").strip()
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            raise UserInputError(f"the threshold {text!r} is not a number (leave it empty for none)") from None

    def _on_result(self, result: tuple[RegionCurves, Any, Any]) -> Iterator[None]:
        curves, eigen, layer = result
        self.curves, self.eigen = curves, eigen
        self.save_button.enabled = True
        if self.plots.view.currentText() != "regions":
            self.plots.view.setCurrentText("regions")  # refreshes
        else:
            self.show()
        yield
        if layer is not None:
            from .invert_widget import add_or_update_layer

            add_or_update_layer(self.viewer, layer)
        count = len(curves.labels)
        note = "" if eigen is not None or self.session.eigen is None else \
            " (the eigen analysis is on another grid: no component curves)"
        return f"{count} region{'s' if count != 1 else ''} of {self._region_name!r} measured{note}{self._note}"

    # -- saving -------------------------------------------------------------------------------
    def save_csv(self, path: str | Path) -> Path:
        """Write the last curves as CSV (:meth:`RegionCurves.to_csv`)."""
        if self.curves is None:
            raise UserInputError("nothing measured yet")
        return self.curves.to_csv(path)

    def _save_dialog(self) -> None:  # pragma: no cover - a modal dialog
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(self.plots, "Save region curves", "regions.csv", "CSV (*.csv)")
        if path:
            saved = self.save_csv(path)
            self.plots.status.setText(f"Saved {saved}")


class _GridOnly:
    """The one attribute of a traversal that :func:`resolve_regions` uses (its grid)."""

    def __init__(self, grid: Any) -> None:
        self.grid = grid


class _Relay(QObject):
    """Carries a worker thread's result to the GUI thread (a queued signal)."""

    done = Signal(object)


class VoxelView:
    """A clicked voxel's value over alpha, read in a background thread (stale readings are dropped).

    Scriptable: ``view.show_position(world_position)`` (what a click in the viewer does in
    the "voxel" view), ``view.wait()``; the last reading is ``view.reading``
    (:class:`~napari_latent.gui.regions.VoxelReading`).
    """

    def __init__(self, plots: PlotsWidget) -> None:
        self.plots = plots
        self.viewer = plots.viewer
        self.session = plots.session
        self.figure = Figure(figsize=(5.0, 3.2), layout="constrained")
        self.reading: VoxelReading | None = None
        self.future: Future[Any] | None = None
        self._layer: Any = None
        self._requests = itertools.count(1)
        self._latest = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-latent-voxel")
        self._relay = _Relay()
        self._relay.done.connect(self._on_read)

    def show(self) -> None:
        """Show the last reading (or what to do)."""
        if self.reading is None:
            self.plots.status.setText("Click a voxel in the viewer (2D view) to plot its value over alpha.")
            self.plots._show(None)
            return
        reading, figure, index = self.reading, self.figure, self._alpha_index()
        self.plots._show(figure, prepare=lambda: draw_voxel(figure, reading, index))

    def on_click(self, viewer: Any, event: Any) -> None:
        """A ``viewer.mouse_drag_callbacks`` callback (called on the press): plot the voxel under the mouse."""
        if self.plots.view.currentText() != "voxel" or getattr(event, "type", "mouse_press") != "mouse_press":
            return
        if viewer.dims.ndisplay != 2:
            self.plots.status.setText("Voxel curves: switch to the 2D view and click a voxel.")
            return
        self.show_position(event.position)

    def show_position(self, position: Any) -> Future[Any] | None:
        """Read the voxel at a world position (the viewer's coordinates) at every alpha, in the background."""
        target = self._target()
        if target is None:
            self.plots.status.setText("No traversal to read: traverse a volume or open a saved traversal first.")
            return None
        layer, data, alphas, grid, units = target
        if layer is not None:
            index = np.asarray(layer.world_to_data(np.asarray(position, dtype=np.float64)), dtype=np.float64)[-3:]
        else:
            from ..volumes.orientation import display_geometry

            geometry = display_geometry(grid)
            index = (np.asarray(position, dtype=np.float64)[-3:] - geometry.translate) / geometry.scale
        voxel = tuple(int(v) for v in np.floor(index + 0.5))
        shape = tuple(np.shape(data)[-3:])
        if not all(0 <= v < n for v, n in zip(voxel, shape, strict=True)):
            self.plots.status.setText("Voxel curves: that point is outside the volume; click on the anatomy.")
            return None
        self._layer = layer
        request = self._latest = next(self._requests)
        eigen = self.session.eigen
        self.plots.status.setText(f"Reading voxel {voxel} at {len(alphas)} alphas ...")

        def work() -> None:
            if request != self._latest:
                return  # a newer click came first
            try:
                reading: Any = read_voxel(data, voxel, alphas, grid, units, eigen)  # type: ignore[arg-type]
            except Exception as exc:
                reading = exc
            self._relay.done.emit((request, reading))

        self.future = self._executor.submit(work)
        return self.future

    def _target(self) -> tuple[Any, Any, np.ndarray, Any, str] | None:
        """``(layer or None, display-ordered 4D data, alphas, grid, units)`` of the traversal to read."""
        traversal = self.session.traversal
        layer = traversal_layer_for(self.viewer, traversal)
        if layer is not None:
            entry = layer_entry(layer)
            alphas = np.asarray(entry.get("alphas", []), dtype=np.float64)
            grid = layer_grid(layer.data, layer.metadata, tuple(layer.scale)[1:], tuple(layer.translate)[1:])
            return layer, layer.data, alphas, grid, str(entry.get("units", "latent"))
        if traversal is None:
            return None
        from .result_layers import display_frames

        return None, display_frames(traversal), np.asarray(traversal.alphas), traversal.grid, str(traversal.units)

    def _on_read(self, result: tuple[int, Any]) -> None:
        request, reading = result
        if request != self._latest:
            return  # stale
        if isinstance(reading, Exception):
            self.plots.status.setText(f"Voxel curves: could not read the voxel ({reading})")
            return
        self.reading = reading
        extra = "" if reading.reconstruction is None else \
            f"; dashed: the eigen reconstruction from {reading.components} components"
        self.plots.status.setText(f"Voxel {list(reading.source_index)} (file order){extra}. Click another voxel.")
        if self.plots.view.currentText() == "voxel":
            self.show()

    def _alpha_index(self) -> int | None:
        """The alpha number the viewer shows (from the traversal layer's alpha axis), or the baseline's."""
        if self.reading is None:
            return None
        layer = self._layer
        if layer is None or layer not in self.viewer.layers:
            return None
        point = np.asarray(self.viewer.dims.point, dtype=np.float64)
        if len(point) < layer.ndim:
            return None
        index = int(np.floor(float(layer.world_to_data(point)[0]) + 0.5))
        return index if 0 <= index < len(self.reading.values) else None

    def on_dims(self, _event: Any = None) -> None:
        """The viewer's alpha changed: move the marker."""
        if self.reading is None or self.plots.view.currentText() != "voxel" or self.plots.figure is not self.figure:
            return
        reading, figure, index = self.reading, self.figure, self._alpha_index()
        self.plots._show(figure, prepare=lambda: set_current_alpha(figure, reading, index))

    def wait(self, timeout: float = 10.0) -> None:
        """Wait for the last reading and its drawing (for tests and scripts)."""
        from qtpy.QtCore import QCoreApplication

        if self.future is not None:
            self.future.result(timeout)
        QCoreApplication.processEvents()
        if self.plots.canvas is not None:
            self.plots.canvas.wait(timeout)

    def close(self) -> None:
        """Stop the reading thread."""
        self._executor.shutdown(wait=False)
