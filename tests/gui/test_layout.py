"""The window's layout with our docks open: the canvas keeps the room, the whole slice is in view."""

from __future__ import annotations

import numpy as np
import pytest

from napari_latent.gui.launcher import dock_widgets
from napari_latent.gui.layers import volume_layer_data
from napari_latent.gui.layout import camera, dock_width, fit_view, our_docks, still_fitted, visible_fraction
from napari_latent.volumes import Volume
from napari_latent.volumes.phantoms import PhantomFactors, make_phantom

pytestmark = pytest.mark.gui


def _phantom_layer(viewer):
    from napari.layers import Layer

    phantom = make_phantom(PhantomFactors(), size=64, seed=1)
    data, kwargs, kind = volume_layer_data(Volume(phantom.image, phantom.affine, name="subject"), colormap="gray")
    return viewer.add_layer(Layer.create(data, kwargs, kind))


def _settle(qtbot, viewer, ms: int = 400) -> None:
    qtbot.wait(ms)


def _brain_box(shot: np.ndarray) -> tuple[int, int, int, int]:
    """Rows and columns (first, last) of the pixels brighter than the canvas background."""
    grey = shot[..., :3].astype(np.float32).mean(axis=-1)
    rows = np.flatnonzero((grey > 60).any(axis=1))
    cols = np.flatnonzero((grey > 60).any(axis=0))
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


@pytest.mark.parametrize("size", [(1280, 800), (1920, 1080)])
def test_docks_are_tabbed_narrow_and_the_whole_slice_is_in_view(make_napari_viewer, qtbot, size) -> None:
    width, height = size
    viewer = make_napari_viewer(show=True)
    main = viewer.window._qt_window
    main.resize(width, height)
    layer = _phantom_layer(viewer)
    docked = dock_widgets(viewer)
    _settle(qtbot, viewer)
    # the arrangement runs in the event loop: on a loaded machine give it time
    qtbot.waitUntil(lambda: main.width() == width and main.height() == height
                    and visible_fraction(viewer, layer) > 0.999, timeout=10_000)
    assert (main.width(), main.height()) == (width, height), "docking our widgets enlarged the window"
    docks = our_docks(viewer)
    assert len(docks) == len(docked) >= 8
    tabbed = set(main.tabifiedDockWidgets(docks[0]))
    assert all(dock in tabbed for dock in docks[1:]), "our docks are one tab group"
    shown = next(dock for dock in docks if dock.isVisible() and not dock.visibleRegion().isEmpty())
    # a quarter of the window, unless a tab cannot be that narrow; never more than 30 %
    narrowest = max(dock.widget().minimumSizeHint().width() for dock in docks)
    assert shown.width() <= max(dock_width(width), narrowest) + 20
    assert shown.width() <= 0.3 * width
    _height, canvas_width = viewer.canvas.size
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QDockWidget

    left = [dock.width() for dock in main.findChildren(QDockWidget) if dock.isVisible()
            and main.dockWidgetArea(dock) == Qt.DockWidgetArea.LeftDockWidgetArea]
    assert canvas_width > shown.width() and canvas_width > max(left), "the canvas is the widest pane"
    if width >= 1920:
        assert canvas_width >= 0.5 * width
    assert visible_fraction(viewer, layer) == pytest.approx(1.0)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    top, bottom, left, right = _brain_box(shot)
    assert top > 0 and left > 0 and bottom < shot.shape[0] - 1 and right < shot.shape[1] - 1, \
        "the slice touches the canvas border: it is cut off"
    assert (right - left) > 0.3 * shot.shape[1] or (bottom - top) > 0.6 * shot.shape[0], "the slice is shown large"


def test_the_view_follows_the_canvas_until_the_user_zooms(make_napari_viewer, qtbot) -> None:
    viewer = make_napari_viewer(show=True)
    main = viewer.window._qt_window
    main.resize(1600, 900)
    layer = _phantom_layer(viewer)
    dock_widgets(viewer, ["1 Model", "3 Discover"])
    _settle(qtbot, viewer)
    assert still_fitted(viewer)
    main.resize(1100, 700)  # smaller: refitted, the slice stays whole
    _settle(qtbot, viewer)
    assert visible_fraction(viewer, layer) == pytest.approx(1.0)
    assert still_fitted(viewer)
    camera(viewer).zoom = camera(viewer).zoom * 4  # the user zooms in
    zoom = camera(viewer).zoom
    main.resize(1500, 900)
    _settle(qtbot, viewer)
    assert camera(viewer).zoom == pytest.approx(zoom), "a user's zoom is kept"
    assert visible_fraction(viewer, layer) < 1.0
    fit_view(viewer)
    assert visible_fraction(viewer, layer) == pytest.approx(1.0)
