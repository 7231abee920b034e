"""The window's layout: the canvas keeps most of the window and the whole slice stays in view.

napari docks every plugin widget at the width its widest label asks for, side by side, and
fits the camera once, when the first layer arrives. With a few of our widgets open the
canvas became a strip and the brain was cut off at both sides. :func:`arrange` fixes that:

* our docks (every dock whose widget comes from :mod:`napari_latent.gui`) scroll
  vertically (:func:`scroll_in_dock`) and are tabbed together in the right dock area, at
  :func:`dock_width` of the window (a quarter, 320 to 520 pixels); their labels wrap and
  their drop-downs elide instead of widening the dock;
* napari's layer list and layer controls get :func:`side_width` (a sixth, 200 to 280; their
  own controls need about 380);
* the camera is fitted to the layers (:func:`fit_view`), and fitted again whenever the
  canvas changes size while the camera is still where a fit left it (a user who zoomed or
  panned keeps the view).

Each of our widgets calls :func:`schedule_arrange` when it is made, so docking any of them,
from the Plugins menu or a script, arranges the window once the dock is in place; our
widgets call :func:`fit_view` after they add layers.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

#: Our docks' width: this fraction of the window, within :data:`DOCK_LIMITS` pixels.
DOCK_FRACTION = 0.25
DOCK_LIMITS = (320, 520)
#: napari's layer list and controls: this fraction of the window, within :data:`SIDE_LIMITS`.
SIDE_FRACTION = 1 / 6
SIDE_LIMITS = (200, 280)
#: Drop-downs are at least this many characters wide (longer entries are elided).
COMBO_CHARS = 12
#: Object name of the scroll areas :func:`scroll_in_dock` puts our widgets in.
SCROLL_NAME = "napari-latent scroll"
#: The narrowest a label or drop-down is squeezed to (pixels).
MIN_FIELD = 120

_FITTED: weakref.WeakKeyDictionary[Any, tuple[float, tuple[float, ...]]] = weakref.WeakKeyDictionary()
_WATCHED: weakref.WeakSet[Any] = weakref.WeakSet()
#: The window's size before our latest docks arrived (docking may have enlarged the window),
#: kept while arrangements are pending.
_SIZE_BEFORE: weakref.WeakKeyDictionary[Any, tuple[int, int]] = weakref.WeakKeyDictionary()
_PENDING: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def unwrap(viewer: Any) -> Any:
    """The viewer itself, not the proxy napari hands to plugin widgets (whose Qt objects Qt refuses)."""
    return getattr(viewer, "__wrapped__", viewer)


def _clamp(value: float, limits: tuple[int, int]) -> int:
    return int(min(max(round(value), limits[0]), limits[1]))


def dock_width(window_width: int) -> int:
    """The width of our tabbed docks for a window ``window_width`` pixels wide."""
    return _clamp(DOCK_FRACTION * window_width, DOCK_LIMITS)


def side_width(window_width: int) -> int:
    """The width of napari's layer list and layer controls for a window ``window_width`` pixels wide."""
    return _clamp(SIDE_FRACTION * window_width, SIDE_LIMITS)


def is_ours(widget: Any) -> bool:
    """Whether a dock's inner widget (a magicgui widget or a QWidget) is one of napari-latent's."""
    return type(widget).__module__.startswith("napari_latent.gui")


def our_docks(viewer: Any) -> list[Any]:
    """The dock widgets (``QDockWidget``) holding napari-latent widgets, in the order they were docked."""
    window = getattr(unwrap(viewer), "window", None)
    docks = getattr(window, "_wrapped_dock_widgets", None)
    if docks is None:
        return []
    return [dock for dock in list(docks.values()) if is_ours(dock.inner_widget())]


def let_shrink(widget: Any) -> None:
    """Let ``widget``'s labels wrap and its drop-downs elide, so that long text never widens its dock.

    """
    from qtpy.QtWidgets import QComboBox, QLabel

    for combo in widget.findChildren(QComboBox):
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(COMBO_CHARS)
        combo.setMinimumWidth(min(combo.minimumSizeHint().width(), MIN_FIELD))  # overrides the hint
    for label in widget.findChildren(QLabel):
        if not label.wordWrap():
            label.setWordWrap(True)
        # a wrapped label still asks for a wide minimum (Qt keeps its lines long): narrower is fine
        label.setMinimumWidth(min(label.minimumSizeHint().width(), MIN_FIELD))


def scroll_in_dock(dock: Any) -> Any:
    """Put a dock's widget in a vertical scroll area (once), so that a tall widget never makes the window taller.

    napari docks a widget as it is: a tall one (the Discover widget with its gallery) set the
    window's minimum height. The scroll area keeps napari's view of the dock: its
    ``inner_widget()`` is still our widget.

    Returns
    -------
    QScrollArea
        The scroll area now holding the dock's widget.
    """
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QFrame, QScrollArea

    content = dock.widget()
    if isinstance(content, QScrollArea) and content.objectName() == SCROLL_NAME:
        return content
    inner = dock.inner_widget()
    area = QScrollArea()
    area.setObjectName(SCROLL_NAME)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area._magic_widget = inner  # napari's QtViewerDockWidget.inner_widget() returns it
    area.setWidget(content)
    dock.setWidget(area)
    content.show()
    return area


def arrange(viewer: Any, width: int | None = None) -> None:
    """Tab our docks together at a sensible width, narrow napari's own docks, and fit the camera.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer whose window is arranged (a viewer without a window is left alone).
    width : int, optional
        The window's width in pixels; its current width when omitted.
    """
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QDockWidget

    viewer = unwrap(viewer)
    window = getattr(viewer, "window", None)
    main = getattr(window, "_qt_window", None)
    if main is None:
        return
    docks = [dock for dock in our_docks(viewer) if not dock.isFloating()]
    if docks:
        area = main.dockWidgetArea(docks[0])  # the right area, unless the user moved them
        group = [dock for dock in docks if main.dockWidgetArea(dock) == area]
        first = group[0]
        for dock in group[1:]:
            if dock not in main.tabifiedDockWidgets(first):
                main.tabifyDockWidget(first, dock)
        for dock in group:
            scroll_in_dock(dock)
            let_shrink(dock.widget())
            # a hidden tab keeps the minimum size its content had when it was shown: recompute it
            dock.setMinimumSize(0, 0)
            dock.layout().invalidate()
    before = _SIZE_BEFORE.get(viewer)
    if before is not None and (main.width() > before[0] or main.height() > before[1]) \
            and not (main.isMaximized() or main.isFullScreen()):
        # docking our widgets widened or heightened the window; they wrap and scroll now, so it
        # can have its size back
        main.layout().invalidate()
        main.layout().activate()
        main.resize(min(main.width(), before[0]), min(main.height(), before[1]))
    width = int(width or (before[0] if before else main.width()))
    if docks:
        visible = [dock for dock in group if dock.isVisible()] or group
        main.resizeDocks([visible[0]], [dock_width(width)], Qt.Orientation.Horizontal)
    left = Qt.DockWidgetArea.LeftDockWidgetArea
    napari_docks = [dock for dock in main.findChildren(QDockWidget) if dock not in docks and dock.isVisible()
                    and not dock.isFloating() and main.dockWidgetArea(dock) == left]
    if napari_docks:  # the layer list and layer controls
        main.resizeDocks(napari_docks[:1], [side_width(width)], Qt.Orientation.Horizontal)
    watch_canvas(viewer)
    fit_view(viewer)


def schedule_arrange(viewer: Any) -> None:
    """Arrange the window (:func:`arrange`) once the Qt event loop runs, when a new dock is in place."""
    from qtpy.QtCore import QTimer

    viewer = unwrap(viewer)
    main = getattr(getattr(viewer, "window", None), "_qt_window", None)
    if main is not None:
        _SIZE_BEFORE.setdefault(viewer, (int(main.width()), int(main.height())))
    _PENDING[viewer] = _PENDING.get(viewer, 0) + 1
    ref = weakref.ref(viewer)

    def later() -> None:
        target = ref()
        if target is None:
            return
        if getattr(getattr(target, "window", None), "_qt_window", None) is not None:
            arrange(target)
        _PENDING[target] = _PENDING.get(target, 1) - 1
        if _PENDING[target] <= 0:  # the last arrangement: a later resize by the user is the user's
            _PENDING.pop(target, None)
            _SIZE_BEFORE.pop(target, None)

    QTimer.singleShot(0, later)


def camera(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def _camera_state(viewer: Any) -> tuple[float, tuple[float, ...]]:
    camera_ = camera(viewer)
    return float(camera_.zoom), tuple(float(c) for c in camera_.center)


def fit_view(viewer: Any) -> None:
    """Fit the camera to every layer (the whole slice in view) and remember the fit.

    The canvas is refitted while it changes size (docks appear, the window is resized) as
    long as the camera stays where this fit left it.
    """
    viewer = unwrap(viewer)
    if not len(viewer.layers):
        return
    viewer.reset_view()
    _FITTED[viewer] = _camera_state(viewer)


def still_fitted(viewer: Any) -> bool:
    """Whether the camera is where the last :func:`fit_view` left it (the user has not zoomed or panned)."""
    viewer = unwrap(viewer)
    fitted = _FITTED.get(viewer)
    if fitted is None:
        return False
    zoom, center = _camera_state(viewer)
    return bool(np.isclose(zoom, fitted[0], rtol=1e-3)) and len(center) == len(fitted[1]) and bool(
        np.allclose(center, fitted[1], rtol=1e-3, atol=1e-3))


def watch_canvas(viewer: Any) -> None:
    """Refit the camera when the canvas changes size while it is still fitted (once per viewer)."""
    viewer = unwrap(viewer)
    if viewer in _WATCHED:
        return
    _WATCHED.add(viewer)
    ref = weakref.ref(viewer)

    def on_size(_event: Any = None) -> None:
        target = ref()
        if target is not None and still_fitted(target):
            fit_view(target)

    viewer.canvas.events.size.connect(on_size)


def visible_fraction(viewer: Any, layer: Any) -> float:
    """How much of ``layer``'s current slice is inside the canvas (1.0: all of it; 2D view).

    The slice's world extent along the displayed axes is compared with the rectangle the
    camera shows (its center, zoom and the canvas size in pixels).
    """
    offset = viewer.dims.ndim - layer.ndim  # a layer's axes are the viewer's last ones
    displayed = [axis - offset for axis in viewer.dims.displayed]
    extent = np.asarray(layer.extent.world)[:, displayed]
    size = np.asarray(viewer.canvas.size, dtype=float)  # (height, width) in pixels
    center = np.asarray(camera(viewer).center)[-len(displayed):]
    half = size / (2.0 * float(camera(viewer).zoom))
    low, high = np.minimum(extent[0], extent[1]), np.maximum(extent[0], extent[1])
    shown_low, shown_high = center - half, center + half
    inside = np.clip(np.minimum(high, shown_high) - np.maximum(low, shown_low), 0, None)
    span = np.maximum(high - low, 1e-9)
    return float(np.prod(inside / span))


def raise_dock(viewer: Any, widget: Any) -> bool:
    """Bring the tab of the dock holding ``widget`` (one of ours) to the front; False when it is not docked."""
    for dock in our_docks(viewer):
        if dock.inner_widget() is widget:
            dock.show()
            dock.raise_()
            return True
    return False


def span_full_width(widget: Any) -> None:
    """Let a magicgui widget in a labelled container use the whole row (its empty label column hidden).

    For wide content (tables, galleries) in a narrow dock.
    """
    row = widget._labeled_widget() if hasattr(widget, "_labeled_widget") else None
    label = getattr(row, "_label_widget", None)
    if label is not None:
        label.visible = False
