"""The docked Plots widget in a real napari viewer under Xvfb."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.backend_bases import MouseEvent

from napari_latent.analysis.eigen import eigencomponents
from napari_latent.gui.layers import META_KEY
from napari_latent.gui.model_widget import ModelWidget
from napari_latent.gui.plots_widget import PlotsWidget
from napari_latent.gui.session import get_session
from napari_latent.latent.traversal import Traversal
from napari_latent.volumes.grid import Grid

pytestmark = pytest.mark.gui


def click(canvas, artist, points) -> None:
    """A left click on the display point of ``artist`` that lies farthest from every other curve."""
    canvas.draw()
    ax = artist.axes
    display = ax.transData.transform(points)
    others = [ax.transData.transform(np.column_stack(line.get_data())) for line in ax.get_lines() if line is not artist]
    distance = [min((np.min(np.hypot(*(o - d).T)) for o in others), default=1e9) for d in display]
    x, y = display[int(np.argmax(distance))]
    canvas.callbacks.process("button_press_event", MouseEvent("button_press_event", canvas, x, y, button=1))


@pytest.fixture
def eigen_result():
    rng = np.random.default_rng(0)
    anatomy = rng.normal(size=(6, 7, 8)) + 5.0
    pattern = rng.normal(size=(6, 7, 8))
    alphas = np.linspace(0.0, 50.0, 15)
    images = anatomy[None] + (alphas / 50.0)[:, None, None, None] * pattern[None]
    traversal = Traversal(images.astype(np.float32), alphas, Grid(anatomy.shape, np.eye(4)))
    return eigencomponents(traversal, mask=np.ones(anatomy.shape, bool), n_components=3)


def test_eigenvectors_and_spectrum_and_picking_selects_the_component_layer(make_napari_viewer, eigen_result) -> None:
    viewer = make_napari_viewer()
    widget = PlotsWidget(viewer)
    assert widget.figure is None and "No training yet" in widget.status.text()
    for k in range(eigen_result.n_components):
        viewer.add_image(eigen_result.maps[k], name=f"component {k + 1}",
                         metadata={META_KEY: {"kind": "eigen_component", "component": k + 1}})
    viewer.add_image(np.zeros((6, 7, 8)), name="anatomy")
    get_session(viewer).eigen = eigen_result
    assert widget.view.currentText() == "eigenvectors"
    lines = widget.figure.axes[0].get_lines()[:eigen_result.n_components]
    np.testing.assert_allclose(lines[1].get_ydata(), eigen_result.eigenvectors[:, 1])
    # A click on the second curve selects the layer of component 2.
    click(widget.canvas, lines[1], np.column_stack(lines[1].get_data()))
    assert viewer.layers.selection.active.name == "component 2"
    widget.view.setCurrentText("spectrum")
    ax = widget.figure.axes[0]
    bars = [p for p in ax.patches if p.get_picker()]
    assert len(bars) >= 2  # the components with a visible share of the variance
    viewer.layers.selection.active = viewer.layers["anatomy"]
    bar = bars[0]
    click(widget.canvas, bar, [(bar.get_x() + bar.get_width() / 2, np.sqrt(ax.get_ylim()[0] * bar.get_height()))])
    assert viewer.layers.selection.active.name == "component 1"
    assert widget.select_component(9) is None and "No layer of component 9" in widget.status.text()


def test_training_losses_are_plotted_live_from_the_model_widget(make_napari_viewer, tiny_cohort: Path,
                                                                 tmp_path: Path, qtbot) -> None:
    viewer = make_napari_viewer()
    plots = PlotsWidget(viewer)
    model_widget = ModelWidget(viewer)
    model_widget.data.value = tiny_cohort
    model_widget.image_size.value = 32
    model_widget.epochs.value = 2
    model_widget.latent_dim.value = 4
    model_widget.batch_size.value = 16
    model_widget.device.value = "cpu"
    model_widget.output.value = tmp_path / "model.safetensors"
    model_widget.train()
    model_widget.runner.wait(timeout=300)
    assert model_widget.runner.last_error is None
    history = get_session(viewer).training_history
    assert len(history) >= 2 and history[-1]["step"] > history[0]["step"]
    qtbot.waitUntil(lambda: plots.figure is not None, timeout=5_000)
    plots.refresh()
    plots.canvas.wait()  # the lines get their data in the render thread
    lines = {line.get_label(): line for line in plots.figure.axes[0].get_lines()}
    assert "loss" in lines
    steps = [row["step"] for row in history if "loss" in row["metrics"]]
    np.testing.assert_array_equal(lines["loss"].get_xdata(), steps)
