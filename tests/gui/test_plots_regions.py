"""The Plots dock's regions and voxel views in a real napari viewer under Xvfb."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from napari_latent.analysis.regions import region_curves
from napari_latent.gui.invert_widget import add_or_update_layer
from napari_latent.gui.plots_widget import PlotsWidget
from napari_latent.gui.regions import component_curves, labels_from_layer
from napari_latent.gui.regions_view import MASK_FILE
from napari_latent.gui.result_layers import traversal_layer_data
from napari_latent.gui.session import get_session
from napari_latent.volumes import Volume, save_volume
from napari_latent.volumes.orientation import display_geometry

from ._results import make_results

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return make_results(tmp_path_factory.mktemp("regions_results"))


def _viewer_with_traversal(make_napari_viewer, results):
    viewer = make_napari_viewer()
    layer = add_or_update_layer(viewer, traversal_layer_data(results.traversal))
    session = get_session(viewer)
    session.traversal = results.traversal
    session.eigen = results.eigen
    widget = PlotsWidget(viewer)
    return viewer, layer, widget


def _lines(widget, gid):
    found = [ax for ax in widget.figure.axes if ax.get_gid() == gid]
    assert len(found) == 1, ([ax.get_gid() for ax in widget.figure.axes], widget.regions.curves.threshold)
    [ax] = found
    return ax.get_lines()


def _measure(widget) -> None:
    widget.regions.measure()
    widget.regions.runner.wait(60)
    assert widget.regions.runner.last_error is None, widget.regions.runner.last_error
    widget.canvas.wait()


def _check_figure(widget, expected, eigen) -> None:
    """The figure's lines carry exactly the numbers of ``expected`` (a RegionCurves)."""
    assert widget.view.currentText() == "regions"
    curves = widget.regions.curves
    np.testing.assert_array_equal(curves.labels, expected.labels)
    np.testing.assert_array_equal(curves.voxels, expected.voxels)
    mean_lines = _lines(widget, "mean_intensity")
    assert len(mean_lines) == len(expected.labels)
    for r, line in enumerate(mean_lines):
        np.testing.assert_allclose(line.get_xdata(), expected.alphas)
        np.testing.assert_allclose(line.get_ydata(), expected.mean_intensity[r], rtol=1e-12)
    if expected.threshold_mm3 is not None:
        for r, line in enumerate(_lines(widget, "threshold_mm3")):
            np.testing.assert_allclose(line.get_ydata(), expected.threshold_mm3[r], rtol=1e-12)
    if expected.component_means is not None:
        np.testing.assert_allclose(curves.component_means, expected.component_means, rtol=1e-12, equal_nan=True)
        contributions = component_curves(expected, eigen)
        by_gid = {line.get_gid(): line for line in _lines(widget, "components")}
        for r in range(len(expected.labels)):
            for k in range(eigen.n_components):
                if np.isnan(expected.component_means[r, k]):
                    continue
                line = by_gid[f"component {r} {k}"]
                np.testing.assert_allclose(line.get_xdata(), eigen.alphas)
                np.testing.assert_allclose(line.get_ydata(), contributions[r, k], rtol=1e-12)
                np.testing.assert_allclose(line.get_ydata(), expected.component_means[r, k] * eigen.eigenvectors[:, k])


def test_painted_labels_give_the_region_curves(make_napari_viewer, results, tmp_path: Path, qtbot) -> None:
    viewer, layer, widget = _viewer_with_traversal(make_napari_viewer, results)
    widget.view.setCurrentText("regions")
    assert "Paint a Labels layer" in widget.status.text() and widget.figure is None
    # napari's new-labels button with the traversal layer selected: a 4D labels layer on its grid
    viewer.layers.selection.active = layer
    viewer._new_labels()
    labels = viewer.layers[-1]
    assert labels.data.shape == layer.data.shape
    labels.data[2, 10:14, 8:16, 9:15] = 1  # painted at one alpha ...
    labels.data[0, 18:22, 12:20, 10:14] = 2  # ... and another: the union counts
    labels.name = "painted"  # a renamed layer is offered under its new name
    assert "painted" in widget.regions.region.choices
    widget.regions.region.value = labels.name
    widget.regions.threshold.value = "0.2"
    widget.regions.below.value = True
    _measure(widget)
    grid = results.traversal.grid
    expected_labels = display_geometry(grid).from_display(labels.data.max(axis=0)).astype(np.int32)
    np.testing.assert_array_equal(labels_from_layer(labels, results.traversal), expected_labels)
    expected = region_curves(results.traversal, expected_labels, 0.2, True, eigen=results.eigen)
    assert expected.component_means is not None and expected.threshold_mm3 is not None
    assert list(expected.voxels) == [4 * 8 * 6, 4 * 8 * 4]
    _check_figure(widget, expected, results.eigen)
    # the measure choice redraws the same numbers, one panel
    widget.regions.measure_choice.value = "thresholded volume"
    widget.canvas.wait()
    assert [ax.get_gid() for ax in widget.figure.axes] == ["threshold_mm3"]
    np.testing.assert_allclose(_lines(widget, "threshold_mm3")[1].get_ydata(), expected.threshold_mm3[1])
    saved = widget.regions.save_csv(tmp_path / "regions.csv")
    assert saved.read_text().splitlines()[0].startswith("region,label,region_voxels")
    # a labels layer on another grid: a one-line message about the grid, napari carries on
    viewer.add_labels(np.ones((5, 6, 7), np.uint8), name="elsewhere")
    widget.regions.region.value = "elsewhere"
    widget.regions.measure()
    error = widget.regions.runner.last_error
    assert error is not None and "grid" in str(error) and "\n" not in str(error)
    assert not widget.regions.runner.running and widget.regions.curves.labels.tolist() == [1, 2]
    assert "grid" in widget.regions.panel.status.value


def test_a_shapes_rectangle_on_one_slice(make_napari_viewer, results, qtbot) -> None:
    viewer, layer, widget = _viewer_with_traversal(make_napari_viewer, results)
    grid = results.traversal.grid
    geometry = display_geometry(grid)
    # a 3D shapes layer on the traversal's spatial geometry (as napari's new-shapes button over the anatomy)
    shapes = viewer.add_shapes(ndim=3, scale=geometry.scale, translate=geometry.translate, name="drawn")
    plane, rows, cols = 16, (6, 12), (9, 20)
    corners = [[plane, rows[0], cols[0]], [plane, rows[0], cols[1]], [plane, rows[1], cols[1]],
               [plane, rows[1], cols[0]]]
    shapes.add_rectangles(np.array(corners, dtype=float))
    shapes.add_lines(np.array([[plane, 2, 2], [plane, 4, 9]], dtype=float))  # encloses nothing: left out
    widget.regions.region.value = "drawn"
    _measure(widget)
    expected_display = np.zeros(geometry.reorientation.target_shape, np.int32)
    expected_display[plane, rows[0]:rows[1] + 1, cols[0]:cols[1] + 1] = 1
    expected_labels = geometry.from_display(expected_display)
    mask = labels_from_layer(shapes, results.traversal)
    assert int(mask.sum()) == (rows[1] - rows[0] + 1) * (cols[1] - cols[0] + 1) == 7 * 12
    np.testing.assert_array_equal(mask, expected_labels)
    # the same voxels as napari's own rasterisation of the rectangle
    napari_mask = shapes.to_masks(geometry.reorientation.target_shape)[0]
    np.testing.assert_array_equal(napari_mask, expected_display.astype(bool))
    expected = region_curves(results.traversal, expected_labels, eigen=results.eigen)
    _check_figure(widget, expected, results.eigen)
    assert widget.regions.curves.threshold_mm3 is None
    assert "shapes [2] are lines or paths" in widget.regions.panel.status.value
    assert [ax.get_gid() for ax in widget.figure.axes] == ["mean_intensity", "components"]
    # an ellipse on a 4D shapes layer made from the traversal layer (alpha axis first): about napari's own mask
    viewer.layers.selection.active = layer
    shapes4 = viewer.add_shapes(ndim=4, scale=layer.scale, translate=layer.translate, name="ellipse")
    box = np.array([[2, 20, 5, 6], [2, 20, 5, 22], [2, 20, 15, 22], [2, 20, 15, 6]], dtype=float)
    shapes4.add_ellipses(box)
    ours = display_geometry(grid).to_display(labels_from_layer(shapes4, results.traversal)) > 0
    theirs = shapes4.to_masks(layer.data.shape)[0][2]
    assert ours[20].any() and not ours[:20].any() and not ours[21:].any()  # on its plane only
    assert np.count_nonzero(ours != theirs) <= 4, (ours.sum(), theirs.sum())


def test_a_mask_file_and_one_on_another_grid(make_napari_viewer, results, tmp_path: Path, qtbot) -> None:
    viewer, _layer, widget = _viewer_with_traversal(make_napari_viewer, results)
    grid = results.traversal.grid
    mask = np.zeros(grid.shape, np.uint8)
    mask[8:20, 10:22, 12:18] = 3
    mask[20:26, 10:22, 12:18] = 5
    path = save_volume(Volume(mask, grid.affine), tmp_path / "roi.nii.gz")
    widget.regions.mask_file.value = path
    assert widget.regions.region.value == MASK_FILE
    widget.regions.threshold.value = "0.3"
    _measure(widget)
    expected = region_curves(results.traversal, path, 0.3, False, eigen=results.eigen)
    np.testing.assert_array_equal(expected.labels, [3, 5])
    _check_figure(widget, expected, results.eigen)
    shown = viewer.layers["regions roi"]  # the mask is shown on the anatomy
    np.testing.assert_allclose(shown.scale, display_geometry(grid).scale)
    # a mask on another grid: a one-line message
    other = save_volume(Volume(np.ones((4, 4, 4), np.uint8), np.eye(4)), tmp_path / "small.nii.gz")
    widget.regions.mask_file.value = other
    widget.regions.measure()
    widget.regions.runner.wait(60)
    error = widget.regions.runner.last_error
    assert error is not None and "grid" in str(error) and "\n" not in str(error)


def test_a_click_plots_the_voxel_over_alpha(make_napari_viewer, results, qtbot) -> None:
    viewer, layer, widget = _viewer_with_traversal(make_napari_viewer, results)
    traversal = results.traversal
    widget.view.setCurrentText("voxel")
    assert "Click a voxel" in widget.status.text()
    display_index = (16, 12, 14)
    viewer.dims.set_point(0, float(layer.data_to_world([3, 0, 0, 0])[0]))  # the viewer shows alpha number 3
    world = np.asarray(layer.data_to_world([3, *display_index]))
    event = SimpleNamespace(type="mouse_press", position=tuple(world), modifiers=(), button=1, handled=False,
                            pos=np.zeros(2), is_dragging=False)
    assert widget.voxel.on_click in viewer.mouse_drag_callbacks
    from napari.utils.interactions import mouse_press_callbacks

    mouse_press_callbacks(viewer, event)  # what napari does on a press in the canvas
    widget.voxel.wait()
    qtbot.waitUntil(lambda: widget.voxel.reading is not None)
    widget.voxel.wait()
    reading = widget.voxel.reading
    source = reading.source_index
    expected = traversal.images[(slice(None), *source)]
    np.testing.assert_array_equal(display_geometry(traversal.grid).to_display(traversal.images)[:, 16, 12, 14],
                                  expected)
    lines = {line.get_gid(): line for line in widget.figure.axes[0].get_lines()}
    np.testing.assert_allclose(lines["value"].get_xdata(), traversal.alphas)
    np.testing.assert_array_equal(lines["value"].get_ydata(), expected.astype(np.float64))
    np.testing.assert_allclose(lines["current"].get_xdata(), [traversal.alphas[3]])
    np.testing.assert_allclose(lines["current"].get_ydata(), [expected[3]])
    title = widget.figure.axes[0].get_title()
    assert f"[{source[0]}, {source[1]}, {source[2]}]" in title and "mm" in title
    position = traversal.grid.affine @ np.array([*source, 1.0])
    np.testing.assert_allclose(reading.position_mm, position[:3])
    if results.eigen.mask[source]:
        assert "reconstruction" in lines
    # moving the alpha slider moves the marker
    viewer.dims.set_point(0, float(layer.data_to_world([1, 0, 0, 0])[0]))
    widget.canvas.wait()
    np.testing.assert_allclose(lines["current"].get_ydata(), [expected[1]])
    # outside the volume: a status message, nothing read
    widget.voxel.on_click(viewer, SimpleNamespace(type="mouse_press", position=(0.0, -1e4, -1e4, -1e4)))
    assert "outside the volume" in widget.status.text()
    # another view: clicks are not for the plot
    widget.view.setCurrentText("spectrum")
    assert widget.voxel.show_position is not None
    widget.voxel.on_click(viewer, event)
    assert widget.voxel.future is not None and widget.voxel.reading is reading
    # a deleted dock leaves no callback behind
    from qtpy.QtCore import QCoreApplication, QEvent

    on_click = widget.voxel.on_click
    widget.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    assert on_click not in viewer.mouse_drag_callbacks
    viewer.dims.set_point(0, float(layer.data_to_world([2, 0, 0, 0])[0]))
    viewer.add_labels(np.zeros((4, 4, 4), np.uint8), name="after")


@pytest.mark.parametrize("center", [True, "baseline", False])
def test_the_eigen_reconstruction_of_a_voxel_is_exact_with_every_component(center) -> None:
    from napari_latent.analysis.eigen import eigencomponents
    from napari_latent.gui.regions import read_voxel
    from napari_latent.latent.traversal import Traversal
    from napari_latent.volumes.grid import Grid

    rng = np.random.default_rng(3)
    alphas = np.linspace(-1.0, 1.0, 5)
    images = (rng.normal(size=(6, 7, 8)) + 4.0)[None] + alphas[:, None, None, None] * rng.normal(size=(6, 7, 8))
    images += 0.05 * rng.normal(size=images.shape)
    grid = Grid((6, 7, 8), np.diag([1.0, 2.0, 1.5, 1.0]))
    traversal = Traversal(images.astype(np.float32), alphas, grid)
    eigen = eigencomponents(traversal, mask=np.ones(grid.shape, bool), n_components=5, center=center)
    display = display_geometry(grid).to_display(traversal.images)
    reading = read_voxel(display, (3, 4, 2), alphas, grid, eigen=eigen)
    np.testing.assert_array_equal(reading.values, traversal.images[(slice(None), *reading.source_index)])
    np.testing.assert_allclose(reading.reconstruction, reading.values, atol=1e-4)
    assert reading.components == 5
    # the component curves of a region add up to its mean of what the analysis decomposed
    labels = np.zeros(grid.shape, np.int32)
    labels[1:4, 2:6, 3:7] = 1
    labels[4:6, :, :3] = 2
    curves = region_curves(traversal, labels, eigen=eigen)
    total = component_curves(curves, eigen).sum(axis=1)
    if center == "baseline":
        decomposed = curves.mean_intensity - curves.mean_intensity[:, [traversal.baseline_index]]
    elif center:
        decomposed = curves.mean_intensity - eigen.means[None, :]
    else:
        decomposed = curves.mean_intensity
    np.testing.assert_allclose(total, decomposed, atol=1e-4)


def test_region_numbers_from_the_lookup_table_and_from_sorting_agree() -> None:
    from napari_latent.analysis.regions import TABLE_LABELS, _region_index

    rng = np.random.default_rng(0)
    small = rng.choice([0, 2, 7, 9], size=(5, 6, 7)).astype(np.int32)
    large = np.where(small == 9, TABLE_LABELS + 5, small).astype(np.int64)
    no_background = small + 1
    for labels in (small, large, no_background):
        values, index = _region_index(labels)
        expected_values = np.unique(labels[labels != 0])
        np.testing.assert_array_equal(values, expected_values)
        assert index.dtype == np.int32 and index.shape == labels.shape
        np.testing.assert_array_equal(index == 0, labels == 0)
        np.testing.assert_array_equal(expected_values[index[labels != 0] - 1], labels[labels != 0])
