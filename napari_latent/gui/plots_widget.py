"""The Plots widget: matplotlib figures docked in napari.

Five views, each fed by what the session's other widgets (or the user's clicks and regions) produce:

* **training losses**: the losses of the running (or last) training run, live, from the
  Model widget's progress events (the session's ``training_history``), redrawn at most
  once a second, into one persistent figure whose lines get new data (cheap to redraw);
* **eigenvectors**: the eigenvectors of the session's eigen result against alpha (the MS
  paper's "polynomial series" figure);
* **spectrum**: the eigenvalue spectrum;
* **regions**: per-region curves over alpha (mean intensity, volume beyond a threshold in
  mm³, eigencomponent contributions) of a painted Labels layer, a Shapes layer or a mask
  file (:class:`~napari_latent.gui.regions_view.RegionsView`, measured in the background);
* **voxel**: a click in the viewer plots that voxel's value over alpha
  (:class:`~napari_latent.gui.regions_view.VoxelView`, read in the background).

Clicking a component's curve (or its bar in the spectrum) selects that component's layer
in the viewer. The eigen figures are the very figures of :mod:`napari_latent.analysis.plots`
(the report's), drawn on a Qt canvas (:class:`~napari_latent.gui.background_canvas.BackgroundCanvas`)
that renders in a background thread, so a redraw never stalls napari; ``widget.canvas.wait()``
waits for the image of the latest change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QComboBox, QLabel, QSizePolicy, QVBoxLayout, QWidget

from ..analysis.plots import figure_eigenvectors, figure_spectrum
from .background_canvas import BackgroundCanvas
from .layers import layer_entry
from .layout import schedule_arrange
from .regions_view import RegionsView, VoxelView
from .session import get_session

VIEWS = ("training losses", "eigenvectors", "spectrum", "regions", "voxel")
#: Keys of training events that are not losses.
NOT_LOSSES = {"epoch", "step", "images_per_s", "eta_s", "lr"}
#: Shortest time between two redraws of the live training plot (ms).
REDRAW_MS = 1000


def component_layer(viewer: Any, component: int) -> Any:
    """The layer of eigencomponent ``component`` (1-based), or None."""
    for layer in reversed(list(viewer.layers)):
        entry = layer_entry(layer)
        if entry.get("kind") == "eigen_component" and int(entry.get("component", -1)) == component:
            return layer
    return None


def update_training_figure(figure: Figure, history: list[dict[str, Any]]) -> None:
    """Put the losses of a training history (the session's rows) on the training figure's lines."""
    ax = figure.axes[0]
    keys = [k for k in history[-1]["metrics"] if k not in NOT_LOSSES and not k.startswith("val_")]
    lines = {line.get_label(): line for line in ax.get_lines()}
    for key in keys:
        points = np.array([(row["step"], row["metrics"][key]) for row in history if key in row["metrics"]])
        line = lines.get(key)
        if line is None:
            (line,) = ax.plot([], [], linewidth=1.2, label=key)
            ax.legend(fontsize=7, frameon=False, loc="upper right")
        line.set_data(points[:, 0], points[:, 1])
    for label, line in lines.items():
        if label not in keys:
            line.remove()
    positive = all(row["metrics"].get(k, 1.0) > 0 for row in history for k in keys)
    ax.set_yscale("log" if keys and positive else "linear")
    ax.relim()
    ax.autoscale_view()
    last = history[-1]
    ax.set_title(f"training: step {last['step']}" + (f" of {last['total']}" if last.get("total") else ""),
                 fontsize=9)


def _teardown(viewer: Any, regions: RegionsView, voxel: VoxelView) -> Callable[[], None]:
    """What to undo when the dock is deleted: the viewer's callbacks into it, the voxel reader's thread."""
    def teardown() -> None:
        if voxel.on_click in viewer.mouse_drag_callbacks:
            viewer.mouse_drag_callbacks.remove(voxel.on_click)
        viewer.dims.events.current_step.disconnect(voxel.on_dims)
        regions.close()
        voxel.close()

    return teardown


class PlotsWidget(QWidget):
    """Docked plots of training and of the eigen analysis.

    Scriptable: ``widget.view.setCurrentText("spectrum")``; ``widget.select_component(2)``
    selects the layer of component 2; ``widget.figure`` is the figure shown.
    """

    def __init__(self, napari_viewer: Any) -> None:
        schedule_arrange(napari_viewer)  # tab this dock with ours, fit the camera
        super().__init__()
        self.viewer = napari_viewer
        self.session = get_session(napari_viewer)
        self.view = QComboBox()
        self.view.addItems(list(VIEWS))
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self._layout = QVBoxLayout(self)
        self._layout.addWidget(self.view)
        self._layout.addWidget(self.status)
        self.regions = RegionsView(self)
        self.voxel = VoxelView(self)
        self._layout.addWidget(self.regions.controls.native)
        self.canvas: BackgroundCanvas | None = None
        self._training_figure = self._new_training_figure()
        self._training_canvas: BackgroundCanvas | None = None
        self._line_component: dict[Any, int] = {}
        self._redraw_timer = QTimer(self)
        self._redraw_timer.setSingleShot(True)
        self._redraw_timer.setInterval(REDRAW_MS)
        self._redraw_timer.timeout.connect(self.refresh)
        self.view.currentTextChanged.connect(lambda _text: self.refresh())
        events = self.session.events
        events.training_progress.connect(self._on_training_progress)
        events.training_started.connect(self._on_training_started)
        events.eigen.connect(self._on_eigen)
        events.model.connect(self.refresh)
        napari_viewer.mouse_drag_callbacks.append(self.voxel.on_click)
        napari_viewer.dims.events.current_step.connect(self.voxel.on_dims)
        self.destroyed.connect(_teardown(napari_viewer, self.regions, self.voxel))
        if not self.session.training_history and self.session.eigen is not None:
            self.view.setCurrentText("eigenvectors")  # docked after an eigen analysis (or the demo sample)
        self.refresh()

    @property
    def figure(self) -> Figure | None:
        """The figure on display."""
        return None if self.canvas is None else self.canvas.figure

    # -- drawing ------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Redraw the chosen view from the session's current results."""
        view = self.view.currentText()
        self.regions.controls.visible = view == "regions"
        if view == "training losses":
            self._show_training()
        elif view == "regions":
            self.regions.show()
        elif view == "voxel":
            self.voxel.show()
        else:
            figure, message = self._eigen_figure(view)
            self.status.setText(message)
            self._show(figure)

    def _show(self, figure: Figure | None, prepare: Callable[[], None] | None = None) -> None:
        """Show ``figure``; ``prepare`` (changes to it) runs in the render thread before it is drawn."""
        if self.canvas is not None and self.canvas.figure is figure:
            self.canvas.render(prepare)
            return
        if self.canvas is not None:
            self._layout.removeWidget(self.canvas)
            self.canvas.setParent(None)
            if self.canvas is not self._training_canvas:
                self.canvas.close_renderer()
                self.canvas.deleteLater()
            self.canvas = None
        if figure is None:
            return
        if figure is self._training_figure:
            if self._training_canvas is None:
                self._training_canvas = self._new_canvas(figure)
            self.canvas = self._training_canvas
        else:
            self.canvas = self._new_canvas(figure)
        self._layout.addWidget(self.canvas)
        self.canvas.show()
        self.canvas.render(prepare)

    def _new_canvas(self, figure: Figure) -> BackgroundCanvas:
        canvas = BackgroundCanvas(figure)
        canvas.setMinimumHeight(260)
        canvas.setMinimumWidth(260)
        # the dock decides the width (the figure follows), not the figure's inches
        canvas.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Expanding)
        canvas.mpl_connect("pick_event", self._on_pick)
        return canvas

    def _show_training(self) -> None:
        """The live loss plot: one persistent figure whose lines get new data (cheap to redraw).

        The lines are updated and drawn in the canvas's render thread, from a copy of the history.
        """
        history = list(self.session.training_history)
        if not history:
            self.status.setText("No training yet: train a model in the Model widget to see its losses here.")
            self._show(None)
            return
        self.status.setText("")
        figure = self._training_figure
        self._show(figure, prepare=lambda: update_training_figure(figure, history))

    def _new_training_figure(self) -> Figure:
        figure = Figure(figsize=(5.0, 3.2))
        figure.subplots_adjust(left=0.16, right=0.97, bottom=0.15, top=0.9)
        ax = figure.add_subplot()
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(True, color="0.92")
        return figure

    def _eigen_figure(self, view: str) -> tuple[Figure | None, str]:
        eigen = self.session.eigen
        if eigen is None:
            return None, "No eigen analysis yet: analyse a traversal in the Eigen widget to see it here."
        figure = figure_eigenvectors(eigen) if view == "eigenvectors" else figure_spectrum(eigen)
        self._line_component = {}
        ax = figure.axes[0]
        if view == "eigenvectors":
            for k, line in enumerate(ax.get_lines()[:eigen.n_components]):
                line.set_picker(6)
                self._line_component[line] = k + 1
        else:
            # Picks go to the topmost axes only: lift the bars above the cumulative twin axis.
            for twin in figure.axes[1:]:
                ax.set_zorder(max(ax.get_zorder(), twin.get_zorder() + 1))
                ax.patch.set_visible(False)
            for patch in ax.patches:
                component = round(patch.get_x() + patch.get_width() / 2)
                if 1 <= component <= eigen.n_components and patch.get_height() > 0:
                    patch.set_picker(True)
                    self._line_component[patch] = component
        return figure, "Click a component to select its layer."

    # -- interaction --------------------------------------------------------------------------
    def _on_pick(self, event: Any) -> None:
        component = self._line_component.get(event.artist)
        if component is not None:
            self.select_component(component)

    def select_component(self, component: int) -> Any:
        """Select the layer of eigencomponent ``component`` (1-based); returns it, or None."""
        layer = component_layer(self.viewer, component)
        if layer is None:
            self.status.setText(f"No layer of component {component} in the viewer.")
            return None
        self.viewer.layers.selection.active = layer
        layer.visible = True
        self.status.setText(f"Selected {layer.name}.")
        return layer

    def _on_training_progress(self) -> None:
        if self.view.currentText() == "training losses" and not self._redraw_timer.isActive():
            self._redraw_timer.start()

    def _on_training_started(self) -> None:
        self.view.setCurrentText("training losses")
        self.refresh()

    def _on_eigen(self, eigen: Any) -> None:
        if eigen is not None and self.view.currentText() == "training losses":
            self.view.setCurrentText("eigenvectors")  # refreshes
        else:
            self.refresh()
