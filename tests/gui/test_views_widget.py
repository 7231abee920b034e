"""The Views widget in a real napari viewer under Xvfb: the 3D view and the side-by-side mode."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from napari_latent.gui.invert_widget import add_or_update_layer
from napari_latent.gui.layers import META_KEY, volume_layer_data
from napari_latent.gui.result_layers import display_frames, eigen_layer_data
from napari_latent.gui.session import get_session
from napari_latent.gui.traverse_widget import show_traversal
from napari_latent.gui.views_widget import (
    NO_ANATOMY,
    NO_TRAVERSAL,
    NOTHING_TO_OVERLAY,
    RIGHT_DIFFERENCE,
    SESSION_DIFFERENCE,
    ViewsWidget,
)
from napari_latent.latent.traversal import StoredTraversal, Traversal
from napari_latent.latent.traversal.store import write_store
from napari_latent.volumes import Volume
from napari_latent.volumes.grid import Grid

from ._results import make_results

pytestmark = pytest.mark.gui

ALPHAS = [-1.0, -0.5, 0.0, 0.5, 1.0]


def reference_block_mean(array: np.ndarray, factors: tuple[int, ...]) -> np.ndarray:
    """Block means with NaN padding and nanmean (another way than the widget's sums and counts)."""
    padded_shape = [-(-n // f) * f for n, f in zip(array.shape[-3:], factors, strict=True)]
    padded = np.full((*array.shape[:-3], *padded_shape), np.nan)
    padded[(..., *(slice(0, n) for n in array.shape[-3:]))] = array
    blocks = padded.reshape(*array.shape[:-3], *(v for n, f in zip(padded_shape, factors, strict=True)
                                                  for v in (n // f, f)))
    lead = array.ndim - 3
    return np.nanmean(blocks, axis=tuple(lead + 2 * i + 1 for i in range(3)))


def synthetic_traversal() -> tuple[Volume, Traversal]:
    """An anatomy (a bright ellipsoid) and a traversal adding +alpha and -alpha blobs, on an oblique-free LPI grid.

    The grid has anisotropic voxels and is stored in another order than napari's display
    order, so the display reorientation (flips) and the per-axis placement are exercised.
    """
    shape = (22, 26, 19)
    affine = np.array([[-2.0, 0, 0, 30.0], [0, -1.5, 0, 20.0], [0, 0, -3.0, 25.0], [0, 0, 0, 1]])  # LPI
    grid = Grid(shape, affine)
    i, j, k = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    anatomy = np.where(i ** 2 + j ** 2 + k ** 2 < 0.8, 100.0, 5.0).astype(np.float32)
    anatomy += np.float32(20.0) * (i > 0.3)
    plus = np.exp(-((i - 0.3) ** 2 + j ** 2 + k ** 2) / 0.05)
    minus = np.exp(-((i + 0.3) ** 2 + (j + 0.2) ** 2 + k ** 2) / 0.05)
    images = np.stack([anatomy + 60.0 * a * (plus - minus) for a in ALPHAS]).astype(np.float32)
    return Volume(anatomy, affine, name="anatomy"), Traversal(images, np.asarray(ALPHAS), grid)


@pytest.fixture
def traversal_viewer(make_napari_viewer):
    """A viewer with the anatomy, the traversal's layers and the traversal in the session, and the widget."""
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1100, 700)
    volume, traversal = synthetic_traversal()
    add_or_update_layer(viewer, volume_layer_data(volume, colormap="gray", contrast_limits=[0.0, 130.0]))
    show_traversal(viewer, traversal, volume.name)
    widget = ViewsWidget(viewer)
    return viewer, widget, traversal


def _colours(image: np.ndarray) -> tuple[int, int, int]:
    """Numbers of red, blue and grey (bright, unsaturated) pixels of an RGB(A) screenshot."""
    rgb = image[..., :3].astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    red = int(np.count_nonzero((r > g + 50) & (r > b + 50)))
    blue = int(np.count_nonzero((b > r + 50) & (b > g + 20)))
    grey = int(np.count_nonzero((np.abs(r - g) < 12) & (np.abs(g - b) < 12) & (r > 60)))
    return red, blue, grey


def _wait(widget: ViewsWidget) -> None:
    widget.runner.wait(60)
    assert widget.runner.last_error is None, widget.runner.last_error


def test_show_in_3d_renders_downsampled_copies_that_overlay_the_source(traversal_viewer, qtbot) -> None:
    viewer, widget, traversal = traversal_viewer
    source = viewer.layers["anatomy"]
    layer_2d = viewer.layers["anatomy traversal"]
    before = {layer.name: layer.visible for layer in viewer.layers}
    viewer.layers["anatomy traversal difference"].visible = False
    before["anatomy traversal difference"] = False
    assert widget.anatomy.value == "anatomy" and widget.overlay.value == SESSION_DIFFERENCE
    widget.max_size.value = 8
    widget.show_3d()
    _wait(widget)
    assert viewer.dims.ndisplay == 3 and widget.mode == "3d"
    anatomy, overlay = widget.layers_3d
    assert [anatomy.name, overlay.name] == ["anatomy 3D", "anatomy traversal difference 3D"]
    # Only the 3D layers are shown: no lazy 2D layer is rendered (read whole) in 3D.
    assert [layer.name for layer in viewer.layers if layer.visible] == [anatomy.name, overlay.name]
    assert anatomy.rendering == "attenuated_mip" and overlay.rendering == "translucent"
    # Block means of the display-ordered volume: at most 8 voxels per axis.
    frames = display_frames(traversal)
    factors = tuple(-(-n // 8) for n in source.data.shape)
    assert max(anatomy.data.shape) <= 8
    np.testing.assert_allclose(anatomy.data, reference_block_mean(np.asarray(source.data), factors), rtol=1e-5)
    expected = reference_block_mean(np.asarray(frames), factors)
    expected -= expected[traversal.baseline_index]
    assert isinstance(overlay.data, np.ndarray) and overlay.data.dtype == np.float32
    np.testing.assert_allclose(overlay.data, expected, rtol=1e-4, atol=1e-3)
    low, high = overlay.contrast_limits
    assert low == pytest.approx(-high) and high > 0
    # Placement: the copies cover the source (world extent within half a downsampled voxel).
    for layer in (anatomy, overlay):
        half = np.asarray(layer.scale[-3:]) / 2
        offset = np.abs(layer.extent.world[:, -3:] - source.extent.world)
        assert np.all(offset <= half[None] + 1e-9), (offset, half)
    np.testing.assert_allclose(overlay.scale[0], layer_2d.scale[0])
    np.testing.assert_allclose(overlay.translate[0], layer_2d.translate[0])
    # The alpha axis is a slider, not displayed; moving it changes the overlay shown.
    assert 0 not in viewer.dims.displayed and viewer.dims.displayed == (1, 2, 3)
    assert viewer.dims.axis_labels[0] == "alpha"
    assert viewer.dims.current_step[0] != traversal.baseline_index  # started on a change, not on zeros
    viewer.dims.set_current_step(0, 4)
    np.testing.assert_allclose(np.asarray(overlay._slice.image.raw), expected[4], rtol=1e-4, atol=1e-3)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    red, blue, grey = _colours(shot)
    assert red > 50 and blue > 50 and grey > 200, (red, blue, grey)
    viewer.dims.set_current_step(0, 1)
    np.testing.assert_allclose(np.asarray(overlay._slice.image.raw), expected[1], rtol=1e-4, atol=1e-3)
    assert not np.array_equal(viewer.screenshot(canvas_only=True, flash=False), shot)
    # The controls act on the 3D layers.
    widget.opacity.value = 0.5
    widget.rendering.value = "mip"
    assert overlay.opacity == pytest.approx(0.5) and anatomy.rendering == "mip"
    # Back to 2D: the 3D layers go, the display and the visibilities come back.
    widget.back_to_2d()
    assert viewer.dims.ndisplay == 2 and widget.mode == ""
    assert anatomy not in viewer.layers and overlay not in viewer.layers
    assert {layer.name: layer.visible for layer in viewer.layers} == before


def test_show_in_3d_reads_a_stored_traversal_and_leaves_small_volumes_whole(make_napari_viewer, tmp_path: Path,
                                                                           qtbot) -> None:
    viewer = make_napari_viewer()
    volume, traversal = synthetic_traversal()
    stored = StoredTraversal.open(write_store(traversal, tmp_path / "trav.zarr"))
    add_or_update_layer(viewer, volume_layer_data(volume, colormap="gray"))
    show_traversal(viewer, stored, volume.name)
    assert isinstance(viewer.layers["anatomy traversal"].data, da.Array)
    widget = ViewsWidget(viewer)
    widget.show_3d()  # the default max size keeps this small volume whole
    _wait(widget)
    anatomy, overlay = widget.layers_3d
    source = viewer.layers["anatomy"]
    np.testing.assert_allclose(anatomy.scale, source.scale)
    np.testing.assert_allclose(anatomy.translate, source.translate)
    np.testing.assert_array_equal(anatomy.data, source.data)
    frames = display_frames(traversal)
    np.testing.assert_allclose(overlay.data, frames - frames[traversal.baseline_index], atol=1e-4)
    widget.back_to_2d()
    assert viewer.dims.ndisplay == 2


def test_an_eigencomponent_map_in_3d(make_napari_viewer, tmp_path: Path, qtbot) -> None:
    results = make_results(tmp_path / "results")
    viewer = make_napari_viewer()
    source = add_or_update_layer(viewer, volume_layer_data(results.volume, colormap="gray"))
    for layer_data in eigen_layer_data(results.eigen, differences=False):
        add_or_update_layer(viewer, layer_data)
    widget = ViewsWidget(viewer)
    assert SESSION_DIFFERENCE not in widget.overlay.choices  # no traversal in the session
    assert widget.anatomy.choices == (source.name,)  # the maps are overlays, not anatomy
    widget.overlay.value = "eigen component 1"
    widget.max_size.value = 16
    widget.show_3d()
    _wait(widget)
    overlay = widget.layers_3d[1]
    component = viewer.layers["eigen component 1"]
    assert overlay.ndim == 3 and overlay.data.shape == (16, 16, 16)
    np.testing.assert_allclose(overlay.data, reference_block_mean(np.asarray(component.data), (2, 2, 2)),
                               rtol=1e-4, atol=1e-6)
    assert list(overlay.contrast_limits) == pytest.approx(list(component.contrast_limits))
    assert overlay.metadata[META_KEY]["overlay"] == "eigen component 1"
    np.testing.assert_allclose(overlay.extent.world, component.extent.world, atol=component.scale[0])
    assert viewer.dims.ndisplay == 3
    widget.back_to_2d()


def test_side_by_side_shows_alpha_0_and_the_chosen_alpha_in_linked_grid_cells(traversal_viewer, qtbot) -> None:
    viewer, widget, traversal = traversal_viewer
    before = {layer.name: layer.visible for layer in viewer.layers}
    frames = display_frames(traversal)
    base = traversal.baseline_index
    widget.side_alpha.value = 4
    widget.show_side_by_side()
    _wait(widget)
    grid = viewer.canvas.grid
    assert grid.enabled and tuple(grid.shape) == (1, 2) and widget.mode == "side"
    left, right = widget.side_layers
    assert [layer for layer in viewer.layers if layer.visible] == [left, right]
    assert (left.name, right.name) == ("alpha 0 (side by side)", "alpha 1 (side by side)")
    layers = list(viewer.layers)
    assert grid.position(layers.index(left), layers) == (0, 0)
    assert grid.position(layers.index(right), layers) == (0, 1)
    np.testing.assert_array_equal(np.asarray(left.data), frames[base])
    np.testing.assert_array_equal(np.asarray(right.data), frames[4])
    source = viewer.layers["anatomy traversal"]
    for layer in (left, right):
        np.testing.assert_allclose(layer.scale, source.scale[1:])
        np.testing.assert_allclose(layer.translate, source.translate[1:])
        assert list(layer.contrast_limits) == pytest.approx(list(source.contrast_limits))
    # Linked: one dims for both cells, so both show the same plane.
    viewer.dims.set_current_step(1, 7)
    plane = round(float(left.world_to_data(viewer.dims.point)[0]))
    np.testing.assert_array_equal(np.asarray(left._slice.image.raw), frames[base, plane])
    np.testing.assert_array_equal(np.asarray(right._slice.image.raw), frames[4, plane])
    shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
    half = shot.shape[1] // 2
    for panel in (shot[:, :half], shot[:, half:]):
        assert np.count_nonzero(panel.max(axis=-1) > 60) > 500
    # Another alpha: the right layer's data and name change, lazily.
    widget.side_alpha.value = 1
    assert right.name == "alpha -0.5 (side by side)"
    np.testing.assert_array_equal(np.asarray(right.data), frames[1])
    # The difference on the right: diverging colours, symmetric limits.
    widget.side_right.value = RIGHT_DIFFERENCE
    _wait(widget)
    left, right = widget.side_layers
    assert right.name == "difference at alpha -0.5 (side by side)"
    np.testing.assert_allclose(np.asarray(right.data), frames[1] - frames[base], atol=1e-5)
    low, high = right.contrast_limits
    assert low == pytest.approx(-high) and high > 0
    widget.side_alpha.value = 0
    np.testing.assert_allclose(np.asarray(right.data), frames[0] - frames[base], atol=1e-5)
    # Leaving restores the grid and the visibilities.
    widget.end_side_by_side()
    assert not grid.enabled and widget.mode == ""
    assert left not in viewer.layers and right not in viewer.layers
    assert {layer.name: layer.visible for layer in viewer.layers} == before


def test_a_cancelled_build_changes_nothing(traversal_viewer, qtbot, monkeypatch) -> None:
    viewer, widget, _ = traversal_viewer
    before = {layer.name: layer.visible for layer in viewer.layers}
    make = widget._make_3d

    def cancelled(stop):
        operation = make(stop)
        stop.request()  # as Cancel does, before the first slab
        return operation

    monkeypatch.setattr(widget, "_make_3d", cancelled)
    widget.show_3d()
    _wait(widget)
    assert widget.panel.status.value == "3D view cancelled"
    assert widget.mode == "" and viewer.dims.ndisplay == 2 and not widget.layers_3d
    assert {layer.name: layer.visible for layer in viewer.layers} == before


def test_the_modes_replace_each_other(traversal_viewer, qtbot) -> None:
    viewer, widget, _ = traversal_viewer
    before = {layer.name: layer.visible for layer in viewer.layers}
    widget.max_size.value = 8
    widget.show_3d()
    _wait(widget)
    widget.show_side_by_side()  # leaves 3D first
    _wait(widget)
    assert viewer.dims.ndisplay == 2 and viewer.canvas.grid.enabled and not widget.layers_3d
    widget.show_3d()  # leaves side by side first
    _wait(widget)
    assert viewer.dims.ndisplay == 3 and not viewer.canvas.grid.enabled and not widget.side_layers
    widget.back_to_2d()
    assert {layer.name: layer.visible for layer in viewer.layers} == before


def test_clear_messages_without_a_traversal_an_anatomy_or_an_overlay(make_napari_viewer, qtbot) -> None:
    viewer = make_napari_viewer()
    widget = ViewsWidget(viewer)
    assert widget.status.value == NO_ANATOMY
    widget.show_3d()
    assert NO_ANATOMY in widget.panel.status.value and viewer.dims.ndisplay == 2
    widget.show_side_by_side()
    assert NO_TRAVERSAL in widget.panel.status.value and not viewer.canvas.grid.enabled
    volume, traversal = synthetic_traversal()
    viewer.add_image(np.zeros((5, 6, 7), np.float32), name="decoy")
    add_or_update_layer(viewer, volume_layer_data(volume))
    assert widget.status.value == NOTHING_TO_OVERLAY
    widget.show_3d()
    assert NOTHING_TO_OVERLAY in widget.panel.status.value and viewer.dims.ndisplay == 2
    assert widget.mode == "" and len(viewer.layers) == 2
    # The session's traversal arrives: it becomes the overlay, the layer on its grid the anatomy, and its
    # farthest alpha the side-by-side choice.
    get_session(viewer).traversal = traversal
    assert widget.overlay.value == SESSION_DIFFERENCE and widget.side_alpha.value == 4
    assert widget.anatomy.value == "anatomy"
    widget.back_to_2d()
    widget.end_side_by_side()
    assert widget.mode == "" and viewer.dims.ndisplay == 2
