"""The Plots widget: matplotlib figures docked in napari.

Three views, each fed by what the session's other widgets produce:

* **training losses**: the losses of the running (or last) training run, live, from the
  Model widget's progress events (the session's ``training_history``), redrawn at most
  twice a second so that the plot never slows training down;
* **eigenvectors**: the eigenvectors of the session's eigen result against alpha (the MS
  paper's "polynomial series" figure);
* **spectrum**: the eigenvalue spectrum.

Clicking a component's curve (or its bar in the spectrum) selects that component's layer
in the viewer. The eigen figures are the very figures of :mod:`napari_latent.analysis.plots`
(the report's), drawn on a Qt canvas.
"""

from __future__ import annotations

from typing import Any

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QComboBox, QLabel, QVBoxLayout, QWidget

from ..analysis.plots import figure_eigenvectors, figure_spectrum
from .layers import META_KEY
from .session import get_session

VIEWS = ("training losses", "eigenvectors", "spectrum")
#: Keys of training events that are not losses.
NOT_LOSSES = {"epoch", "step", "images_per_s", "eta_s", "lr"}
#: Shortest time between two redraws of the live training plot (ms).
REDRAW_MS = 500


def component_layer(viewer: Any, component: int) -> Any:
    """The layer of eigencomponent ``component`` (1-based), or None."""
    for layer in reversed(list(viewer.layers)):
        entry = layer.metadata.get(META_KEY, {}) if isinstance(layer.metadata, dict) else {}
        if entry.get("kind") == "component" and int(entry.get("component", -1)) == component:
            return layer
    return None


class PlotsWidget(QWidget):
    """Docked plots of training and of the eigen analysis.

    Scriptable: ``widget.view.setCurrentText("spectrum")``; ``widget.select_component(2)``
    selects the layer of component 2; ``widget.figure`` is the figure shown.
    """

    def __init__(self, napari_viewer: Any) -> None:
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
        self.canvas: FigureCanvasQTAgg | None = None
        self._line_component: dict[Any, int] = {}
        self._redraw_timer = QTimer(self)
        self._redraw_timer.setSingleShot(True)
        self._redraw_timer.setInterval(REDRAW_MS)
        self._redraw_timer.timeout.connect(self.refresh)
        self.view.currentTextChanged.connect(lambda _text: self.refresh())
        self.session.changed.connect(self._on_session_changed)
        self.refresh()

    @property
    def figure(self) -> Figure | None:
        """The figure on display."""
        return None if self.canvas is None else self.canvas.figure

    # -- drawing ------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Redraw the chosen view from the session's current results."""
        view = self.view.currentText()
        if view == "training losses":
            figure, message = self._training_figure()
        else:
            figure, message = self._eigen_figure(view)
        self.status.setText(message)
        self._show(figure)

    def _show(self, figure: Figure | None) -> None:
        if self.canvas is not None:
            self._layout.removeWidget(self.canvas)
            self.canvas.setParent(None)
            self.canvas.deleteLater()
            self.canvas = None
        if figure is None:
            return
        self.canvas = FigureCanvasQTAgg(figure)
        self.canvas.setMinimumHeight(260)
        self.canvas.mpl_connect("pick_event", self._on_pick)
        self._layout.addWidget(self.canvas)
        self.canvas.draw_idle()

    def _training_figure(self) -> tuple[Figure | None, str]:
        history = self.session.training_history
        if not history:
            return None, "No training yet: train a model in the Model widget to see its losses here."
        figure = Figure(figsize=(5.0, 3.2), layout="constrained")
        ax = figure.add_subplot()
        keys = [k for k in history[-1]["metrics"] if k not in NOT_LOSSES and not k.startswith("val_")]
        for key in keys:
            points = [(row["step"], row["metrics"][key]) for row in history if key in row["metrics"]]
            ax.plot([p[0] for p in points], [p[1] for p in points], linewidth=1.2, label=key)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        if keys and all(row["metrics"].get(k, 1.0) > 0 for row in history for k in keys):
            ax.set_yscale("log")
        ax.grid(True, color="0.92")
        ax.legend(fontsize=7, frameon=False)
        last = history[-1]
        ax.set_title(f"training: step {last['step']}" + (f" of {last['total']}" if last.get("total") else ""),
                     fontsize=9)
        return figure, ""

    def _eigen_figure(self, view: str) -> tuple[Figure | None, str]:
        eigen = self.session.results.get("eigen")
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

    def _on_session_changed(self, what: str) -> None:
        if what == "training_progress":
            if self.view.currentText() == "training losses" and not self._redraw_timer.isActive():
                self._redraw_timer.start()
        elif what == "training_started":
            self.view.setCurrentText("training losses")
            self.refresh()
        elif what in ("eigen", "model"):
            if what == "eigen" and self.view.currentText() == "training losses":
                self.view.setCurrentText("eigenvectors")  # refreshes
            else:
                self.refresh()
