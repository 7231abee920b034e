"""Point-and-click inspection of a DICOM series, start to end, through the widgets as a user drives them.

A phantom written as a classic CT DICOM series (with patient identifiers in every slice) is
opened with the reader, inverted, its directions discovered (the gallery of the slice in view
follows), traversed into a store, measured in a painted region and at a clicked voxel, shown
in 3D and side by side. Every step's numbers are checked against the library's, and no
patient identifier appears in a layer, a status line or a plot title.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_latent.analysis.regions import region_curves
from napari_latent.gui.discover_widget import DiscoverWidget
from napari_latent.gui.gallery_panel import current_slice
from napari_latent.gui.invert_widget import InvertWidget
from napari_latent.gui.layout import our_docks
from napari_latent.gui.plots_widget import PlotsWidget
from napari_latent.gui.regions import labels_from_layer
from napari_latent.gui.result_layers import display_frames
from napari_latent.gui.session import get_session
from napari_latent.gui.traverse_widget import TraverseWidget
from napari_latent.gui.views_widget import ViewsWidget
from napari_latent.latent.traversal import StoredTraversal
from napari_latent.volumes import Volume
from napari_latent.volumes.phantoms import PhantomFactors, make_phantom
from tests.gui._results import tiny_model
from tests.volumes._series import PATIENT, write_dicom_series

pytestmark = pytest.mark.gui


def _ok(runner, timeout: float = 120) -> None:
    runner.wait(timeout)
    assert runner.last_error is None, runner.last_error


def _texts(*widgets) -> str:
    """Every label, status and title text the widgets show."""
    from qtpy.QtWidgets import QLabel

    out = []
    for widget in widgets:
        native = getattr(widget, "native", widget)
        out += [label.text() for label in native.findChildren(QLabel)]
    return "\n".join(out)


def _step_of(viewer, session, plane: int) -> int:
    """The viewer's step along the slicing axis that shows the model slice ``plane``."""
    for step in range(viewer.dims.nsteps[0]):
        viewer.dims.set_current_step(0, step)
        if current_slice(viewer, session)[1] == plane:
            return step
    raise AssertionError(f"no step shows plane {plane}")


def test_a_dicom_series_from_opening_to_3d(make_napari_viewer, tmp_path: Path, qtbot) -> None:
    phantom = make_phantom(PhantomFactors(), size=32, seed=4)
    folder = tmp_path / "exam"
    # CT-like numbers: the phantom's [0, 1] intensities as 0..1000, stored with slope 0.5
    write_dicom_series(Volume(phantom.image * 1000.0, phantom.affine, name="ct"), folder, slope=0.5, intercept=0.0)
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1280, 800)
    [source] = viewer.open(str(folder), plugin="napari-latent")
    assert source.ndim == 3 and source.data.shape == (32, 32, 32)
    session = get_session(viewer)
    model = tiny_model()
    session.set_model(model, "test")
    invert, discover, traverse = InvertWidget(viewer), DiscoverWidget(viewer), TraverseWidget(viewer)
    plots, views = PlotsWidget(viewer), ViewsWidget(viewer)
    for name, widget in [("2 Invert", invert), ("3 Discover", discover), ("4 Traverse", traverse),
                         ("8 Plots", plots), ("9 Views", views)]:
        viewer.window.add_dock_widget(widget, name=name, area="right")
    qtbot.wait(300)
    assert len(our_docks(viewer)) == 5
    # invert the DICOM layer, discover, and the gallery of the slice in view
    invert.layer.value = source.name
    invert.method.value = "encoder"
    invert.run()
    _ok(invert.runner)
    codes = session.last_codes[1]
    plane = int(codes.indices[len(codes) // 2 + 2])
    viewer.dims.set_current_step(0, _step_of(viewer, session, plane))
    discover.method.value = "sefa"
    discover.count.value = 3
    discover.run()
    _ok(discover.runner)
    gallery = discover.gallery.gallery
    assert gallery is not None and gallery.start.startswith(f"slice {plane} of")
    assert discover.gallery.table.native.rowCount() == 3
    discover.gallery.table.native.cellClicked.emit(discover.gallery.table.rows.index(1), 1)
    assert session.selected_direction == 1 and traverse.direction.value == 1
    # traverse into a store
    traverse.codes.value = source.name
    traverse.alphas.value = "0:3:5"
    traverse.units.value = "direction_std"
    traverse.run()
    _ok(traverse.runner)
    traversal = session.traversal
    assert isinstance(traversal, StoredTraversal) and len(traversal) == 5
    # a painted region: napari's new labels on the source layer, measured in the Plots dock
    viewer.layers.selection.active = source
    viewer._new_labels()
    labels = viewer.layers[-1]
    labels.data[..., 12:20, 10:22, 12:20] = 1
    plots.view.setCurrentText("regions")
    plots.regions.region.value = labels.name
    plots.regions.threshold.value = "300"
    plots.regions.below.value = True
    plots.regions.measure()
    _ok(plots.regions.runner)
    plots.canvas.wait()
    expected = region_curves(traversal, labels_from_layer(labels, traversal), 300.0, True)
    np.testing.assert_allclose(plots.regions.curves.mean_intensity, expected.mean_intensity, rtol=1e-6)
    np.testing.assert_allclose(plots.regions.curves.threshold_mm3, expected.threshold_mm3)
    mean_lines = [line for ax in plots.figure.axes if ax.get_gid() == "mean_intensity" for line in ax.get_lines()]
    np.testing.assert_allclose(mean_lines[0].get_ydata(), expected.mean_intensity[0], rtol=1e-6)
    # a clicked voxel over alpha
    plots.view.setCurrentText("voxel")
    frames = display_frames(traversal)
    traversal_layer = next(layer for layer in viewer.layers if layer.name.endswith("traversal"))
    voxel = (16, 14, 18)
    world = traversal_layer.data_to_world((2, *voxel))
    plots.voxel.show_position(world)
    plots.voxel.wait()
    line = plots.figure.axes[0].get_lines()[0]
    np.testing.assert_allclose(line.get_ydata(), np.asarray(frames[:, voxel[0], voxel[1], voxel[2]]), rtol=1e-6)
    # 3D, then side by side
    views.max_size.value = 16
    views.show_3d()
    _ok(views.runner)
    assert viewer.dims.ndisplay == 3 and max(views.layers_3d[1].data.shape[1:]) <= 16
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert np.count_nonzero(shot[..., :3].max(axis=-1) > 60) > 200
    views.back_to_2d()
    views.side_alpha.value = 4
    views.show_side_by_side()
    _ok(views.runner)
    left, right = views.side_layers
    np.testing.assert_array_equal(np.asarray(left.data), np.asarray(frames[traversal.baseline_index]))
    np.testing.assert_array_equal(np.asarray(right.data), np.asarray(frames[4]))
    views.end_side_by_side()
    # no identifier anywhere
    secrets = [str(v) for v in PATIENT.values()] + ["Doe", "Jane"]
    shown = _texts(invert, discover, traverse, plots, views) + "\n".join(
        [layer.name + repr(layer.metadata) for layer in viewer.layers]) + plots.figure.axes[0].get_title()
    for secret in secrets:
        assert secret not in shown
