"""The Views widget: the anatomy and an overlay as a 3D rendering in one click, and a side-by-side mode.

**Show in 3D** renders the anatomy (a 3D image layer, by default the traversal's source
volume) as a grey ``attenuated_mip`` (or ``mip``, ``iso``) volume and an overlay as a
translucent diverging volume (blue negative, transparent around zero, red positive): either
the session traversal's difference to alpha 0, one volume per alpha (the alpha slider stays
and moves it), or an eigencomponent map layer. The 3D layers are in-memory, block-mean
downsampled copies (at most ``max size`` voxels per axis, see
:mod:`~napari_latent.gui.view_modes`), built in a background thread: napari renders a 3D
layer from its whole volume, and for a lazy CT-sized traversal it would read a whole frame
from disk in the GUI thread at every move of the alpha slider. While in 3D the other layers
are hidden; **Back to 2D** removes the 3D layers and restores the view and visibilities.

**Side by side** shows alpha 0 (the baseline) and a chosen alpha, or the difference at that
alpha, next to each other in napari's grid mode: the two cells share the dims and the
camera, so they always show the same slice. The two layers are lazy views of the session
traversal's frames (nothing is read but the planes napari shows). The other layers are
hidden while the mode is on; **End side by side** restores them and the grid settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSlider, Label, PushButton, SpinBox

from ..errors import UserInputError
from ..latent.traversal import StoredTraversal, Traversal
from ..progress import Operation, ProgressEvent, StopFlag
from ..volumes.orientation import display_geometry
from .layers import META_KEY, LayerDataTuple, grid_layer_data, layer_entry
from .layout import schedule_arrange
from .result_layers import (
    TRAVERSAL_AXIS_LABELS,
    difference_data,
    difference_limits,
    display_frames,
    diverging_colormap,
    evenly_spaced,
    frame_limits,
)
from .session import get_session
from .view_modes import FrameSequence, block_factors, downsampled_placement, iter_block_mean, volume_colormap

AnyTraversal = Traversal | StoredTraversal

SESSION_DIFFERENCE = "(traversal: difference to alpha 0)"
RENDERINGS = ("attenuated_mip", "mip", "iso")
RIGHT_ALPHA = "the chosen alpha"
RIGHT_DIFFERENCE = "the difference to alpha 0"
#: Default of "max size": voxels per axis of the 3D copies.
DEFAULT_MAX_SIZE = 192
#: The 3D camera's view and up directions in the display axes (S, P, L): from the front, the
#: patient's left and above, superior up.
VIEW_DIRECTION = (-0.5, 1.0, -1.0)
UP_DIRECTION = (1.0, 0.0, 0.0)

NO_TRAVERSAL = ("No traversal yet: traverse a volume in the Traverse widget first, or open a saved traversal "
                "(a .zarr store, or a .nii.gz with its .json sidecar).")
NO_ANATOMY = "No anatomy to show: open a volume (a 3D image layer) first."
NOTHING_TO_OVERLAY = ("Nothing to overlay: traverse a volume in the Traverse widget (its difference to alpha 0) "
                      "or add eigencomponent maps with the Eigen widget first.")

#: ``metadata["napari_latent"]["kind"]`` of the layers this widget adds.
KIND_3D = "view_3d"
KIND_SIDE = "side_by_side"
#: Signed 3D maps that can be overlaid in 3D.
OVERLAY_KINDS = ("eigen_component", "eigen_difference")


def _kind(layer: Any) -> str:
    return str(layer_entry(layer).get("kind", ""))


def _is_volume_image(layer: Any) -> bool:
    from napari.layers import Image

    return isinstance(layer, Image) and layer.ndim == 3 and not layer.rgb


def anatomy_layers(viewer: Any) -> list[Any]:
    """3D grey image layers that can be the anatomy (not overlays, not this widget's own)."""
    return [layer for layer in viewer.layers if _is_volume_image(layer)
            and _kind(layer) not in (*OVERLAY_KINDS, KIND_3D, KIND_SIDE)]


def overlay_layers(viewer: Any) -> list[Any]:
    """Eigencomponent (and eigen difference) map layers, in the viewer's order."""
    return [layer for layer in viewer.layers if _is_volume_image(layer) and _kind(layer) in OVERLAY_KINDS]


def alpha_placement(alphas: np.ndarray) -> tuple[float, float]:
    """napari scale and translate of the alpha axis (as the traversal layer's: alpha values when evenly spaced)."""
    alphas = np.asarray(alphas, dtype=np.float64)
    if evenly_spaced(alphas):
        return float(alphas[1] - alphas[0]), float(alphas[0])
    return 1.0, 0.0


def farthest_index(traversal: AnyTraversal) -> int:
    """The alpha number farthest from the baseline (the largest change; the last one on a tie)."""
    alphas = np.asarray(traversal.alphas, dtype=np.float64)
    distance = np.abs(alphas - alphas[int(traversal.baseline_index)])
    return int(len(alphas) - 1 - np.argmax(distance[::-1]))


@dataclass
class _Source:
    """What the worker needs of a layer (references: its data is read in the worker)."""

    name: str
    data: Any
    scale: tuple[float, ...]
    translate: tuple[float, ...]
    contrast_limits: list[float]
    extra: dict[str, Any] = field(default_factory=dict)
    linear: np.ndarray | None = None
    units: tuple[str, ...] = ()

    @classmethod
    def from_layer(cls, layer: Any) -> _Source:
        """The layer's parts; its rotation, shear and affine are kept for the copy."""
        extra: dict[str, Any] = {}
        rotate, shear = np.asarray(layer.rotate), np.asarray(layer.shear)
        linear = None
        if not (np.allclose(rotate, np.eye(len(rotate))) and np.allclose(shear, 0)):
            from napari.utils.transforms import Affine

            linear = Affine(rotate=rotate, shear=shear, ndim=layer.ndim).linear_matrix
            extra.update(rotate=rotate, shear=shear)
        affine = np.asarray(layer.affine.affine_matrix)
        if not np.allclose(affine, np.eye(len(affine))):
            extra["affine"] = affine
        data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data  # the full resolution
        return cls(layer.name, data, tuple(layer.scale), tuple(layer.translate),
                   [float(v) for v in layer.contrast_limits], extra, linear, tuple(str(u) for u in layer.units))


@dataclass
class _Saved:
    """The view before a mode: visibilities, dims, camera and grid, restored on leaving it."""

    visible: list[tuple[Any, bool]]
    ndisplay: int
    order: tuple[int, ...]
    center: tuple[float, ...]
    zoom: float
    angles: tuple[float, ...]
    grid: tuple[bool, tuple[int, int], int]

    @classmethod
    def take(cls, viewer: Any) -> _Saved:
        """The viewer's current view."""
        grid = viewer.canvas.grid
        camera = viewer.camera
        return cls([(layer, bool(layer.visible)) for layer in viewer.layers], int(viewer.dims.ndisplay),
                   tuple(viewer.dims.order), tuple(camera.center), float(camera.zoom), tuple(camera.angles),
                   (bool(grid.enabled), tuple(grid.shape), int(grid.stride)))


class ViewsWidget(Container):
    """One-click 3D rendering of the anatomy with an overlay, and a side-by-side mode.

    Scriptable: ``widget.anatomy.value = "subject"``, ``widget.overlay.value = SESSION_DIFFERENCE``
    (or a map layer's name), ``widget.max_size.value = 192``, ``widget.show_3d()``,
    ``widget.runner.wait()``, ``widget.back_to_2d()``; ``widget.side_alpha.value = 4`` (an
    alpha number), ``widget.side_right.value = RIGHT_DIFFERENCE``, ``widget.show_side_by_side()``,
    ``widget.runner.wait()``, ``widget.end_side_by_side()``. ``widget.mode`` is ``""``,
    ``"3d"`` or ``"side"``; ``widget.layers_3d`` and ``widget.side_layers`` are the added layers.
    """

    def __init__(self, napari_viewer: Any) -> None:
        schedule_arrange(napari_viewer)  # tab this dock with ours, fit the camera
        from .runner import OperationRunner, ProgressPanel

        self.viewer = napari_viewer
        self.session = get_session(napari_viewer)
        self.mode = ""
        self.layers_3d: list[Any] = []
        self.side_layers: list[Any] = []
        self._saved: _Saved | None = None
        self._side_traversal: AnyTraversal | None = None
        self.status = Label(value="")
        self.title_3d = Label(value="<b>3D view</b>")
        self.anatomy = ComboBox(label="anatomy", choices=self._anatomy_choices,
                                tooltip="The 3D image layer rendered in grey (the traversal's source by default)")
        self.overlay = ComboBox(label="overlay", choices=self._overlay_choices,
                                tooltip="The session traversal's difference to alpha 0 (one volume per alpha: the "
                                "alpha slider moves it), or an eigencomponent map layer")
        self.rendering = ComboBox(label="rendering", choices=list(RENDERINGS), value="attenuated_mip",
                                  tooltip="How the anatomy is rendered")
        self.max_size = SpinBox(label="max size", min=4, max=1024, value=DEFAULT_MAX_SIZE,
                                tooltip="Voxels per axis of the 3D copies at most (block means of the source): "
                                "napari renders a 3D layer from its whole volume, in memory")
        self.opacity = FloatSlider(label="overlay opacity", min=0.0, max=1.0, step=0.05, value=0.9)
        self.attenuation = FloatSlider(label="attenuation", min=0.0, max=0.5, step=0.005, value=0.05,
                                       tooltip="Attenuation of the anatomy's attenuated_mip rendering")
        self.show_3d_button = PushButton(text="Show in 3D")
        self.back_button = PushButton(text="Back to 2D", enabled=False)
        self.title_side = Label(value="<b>Side by side</b>")
        self.side_alpha = ComboBox(label="alpha", choices=self._alpha_choices,
                                   tooltip="The alpha shown on the right (alpha 0 is on the left)")
        self.side_right = ComboBox(label="right shows", choices=[RIGHT_ALPHA, RIGHT_DIFFERENCE], value=RIGHT_ALPHA)
        self.side_button = PushButton(text="Side by side")
        self.end_side_button = PushButton(text="End side by side", enabled=False)
        self.panel = ProgressPanel()
        self.runner = OperationRunner(self.panel, self._on_busy)
        super().__init__(widgets=[self.status, self.title_3d, self.anatomy, self.overlay, self.rendering,
                                  self.max_size, self.opacity, self.attenuation, self.show_3d_button,
                                  self.back_button, self.title_side, self.side_alpha, self.side_right,
                                  self.side_button, self.end_side_button, self.panel])
        self.status.native.setWordWrap(True)
        self.show_3d_button.changed.connect(lambda: self.show_3d())
        self.back_button.changed.connect(lambda: self.back_to_2d())
        self.side_button.changed.connect(lambda: self.show_side_by_side())
        self.end_side_button.changed.connect(lambda: self.end_side_by_side())
        self.opacity.changed.connect(self._on_opacity)
        self.attenuation.changed.connect(self._on_attenuation)
        self.rendering.changed.connect(self._on_rendering)
        self.side_alpha.changed.connect(self._on_side_alpha)
        self.side_right.changed.connect(self._on_side_right)
        self.session.events.traversal.connect(self._on_traversal)
        for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            event.connect(lambda _event: self._refresh())
        self._on_traversal()

    # -- choices --------------------------------------------------------------------------------
    def _traversal(self) -> AnyTraversal | None:
        traversal = self.session.traversal
        return traversal if isinstance(traversal, AnyTraversal) else None

    def _shown_layer(self, traversal: AnyTraversal, kind: str) -> Any:
        """The 4D layer of ``kind`` (``"traversal"`` or ``"traversal_difference"``) showing ``traversal``, or None.

        (:func:`~napari_latent.gui.stores.layer_showing`).
        """
        from .stores import layer_showing

        return layer_showing(self.viewer, traversal, kind)

    def _anatomy_choices(self, _widget: Any = None) -> list[str]:
        return [layer.name for layer in anatomy_layers(self.viewer)]

    def _overlay_choices(self, _widget: Any = None) -> list[str]:
        names = [SESSION_DIFFERENCE] if self._traversal() is not None else []
        return names + [layer.name for layer in overlay_layers(self.viewer)]

    def _alpha_choices(self, _widget: Any = None) -> list[tuple[str, int]]:
        traversal = self._traversal()
        if traversal is None:
            return []
        return [(f"{alpha:g}", k) for k, alpha in enumerate(traversal.alphas)]

    def default_anatomy(self) -> str | None:
        """The session traversal's source layer (else a 3D image layer on its grid, else the first), or None."""
        choices = self._anatomy_choices()
        if not choices:
            return None

        def source_of(layer: Any) -> str | None:
            entry = layer.metadata.get(META_KEY, {}) if isinstance(layer.metadata, dict) else {}
            if entry.get("kind") == "traversal_difference" and entry.get("source_layer"):
                return str(entry["source_layer"])
            if entry.get("kind") == "traversal" and layer.name.endswith(" traversal"):
                return layer.name[:-len(" traversal")]
            return None

        named: list[str | None] = []
        traversal = self._traversal()
        if traversal is not None:
            named += [source_of(layer) for layer in (self._shown_layer(traversal, "traversal_difference"),
                                                      self._shown_layer(traversal, "traversal")) if layer is not None]
            shape = display_geometry(traversal.grid).reorientation.target_shape
            named += [layer.name for layer in anatomy_layers(self.viewer) if tuple(layer.data.shape) == shape]
        named += [source_of(layer) for layer in self.viewer.layers]
        return next((name for name in named if name in choices), choices[0])

    def _default_overlay(self) -> str | None:
        choices = self._overlay_choices()
        if SESSION_DIFFERENCE in choices:
            return SESSION_DIFFERENCE
        shown = [layer.name for layer in overlay_layers(self.viewer) if layer.visible]
        return shown[0] if shown else (choices[0] if choices else None)

    def _refresh(self) -> None:
        """New choices (layers or the traversal changed); a chosen value stays while it is still there."""
        for combo, default in ((self.anatomy, self.default_anatomy), (self.overlay, self._default_overlay)):
            previous = combo.value
            combo.reset_choices()
            if previous not in combo.choices or previous is None:
                value = default()
                if value is not None:
                    combo.value = value
        self._update_status()

    def _on_traversal(self) -> None:
        if self.mode == "side" and self.session.traversal is not self._side_traversal:
            self.end_side_by_side("the traversal changed: side by side ended")
        self.side_alpha.reset_choices()
        traversal = self._traversal()
        if traversal is not None:
            self.side_alpha.value = farthest_index(traversal)
        self._refresh()
        for combo, default in ((self.anatomy, self.default_anatomy), (self.overlay, self._default_overlay)):
            value = default()
            if value is not None:
                combo.value = value

    def _update_status(self) -> None:
        if self.mode == "3d":
            return
        if not self._anatomy_choices():
            self.status.value = NO_ANATOMY
        elif not self._overlay_choices():
            self.status.value = NOTHING_TO_OVERLAY
        else:
            self.status.value = "Show the anatomy and an overlay in 3D, or alpha 0 and another alpha side by side."

    def _on_busy(self, busy: bool) -> None:
        for button in (self.show_3d_button, self.side_button):
            button.enabled = not busy

    # -- 3D -------------------------------------------------------------------------------------
    def show_3d(self) -> None:
        """Build the downsampled 3D layers in a background thread, then show them in 3D."""
        self.runner.start(self._make_3d, self._on_3d_built, "3D view")

    def _anatomy_source(self) -> _Source:
        name = self.anatomy.value
        layer = next((item for item in anatomy_layers(self.viewer) if item.name == name), None)
        if not name or layer is None:
            if not self._anatomy_choices():
                raise UserInputError(NO_ANATOMY)
            raise UserInputError(f"the anatomy layer {name!r} is gone; choose another")
        return _Source.from_layer(layer)

    def _make_3d(self, stop: StopFlag) -> Operation[tuple[LayerDataTuple, LayerDataTuple] | None]:
        anatomy = self._anatomy_source()
        choice = self.overlay.value
        if not choice:
            raise UserInputError(NOTHING_TO_OVERLAY)
        max_size = int(self.max_size.value)
        look = (str(self.rendering.value), float(self.attenuation.value), float(self.opacity.value))
        if choice == SESSION_DIFFERENCE:
            traversal = self._traversal()
            if traversal is None:
                raise UserInputError(NO_TRAVERSAL)
            overlay: _Source | AnyTraversal = traversal
            store = traversal.path if isinstance(traversal, StoredTraversal) else None
            shown = self._shown_layer(traversal, "traversal_difference")
            direction = traversal.direction.name if traversal.direction is not None else "traversal"
            name = f"{shown.name} 3D" if shown is not None else f"{direction} difference 3D"
        else:
            layer = next((item for item in overlay_layers(self.viewer) if item.name == choice), None)
            if layer is None:
                raise UserInputError(f"the overlay layer {choice!r} is gone; choose another")
            overlay, store, name = _Source.from_layer(layer), None, f"{layer.name} 3D"
        return self._build_3d(anatomy, (overlay, name), max_size, look, store, stop)

    def _build_3d(self, anatomy: _Source, overlay_named: tuple[_Source | AnyTraversal, str], max_size: int,
                  look: tuple[str, float, float], store: Any,
                  stop: StopFlag) -> Operation[tuple[LayerDataTuple, LayerDataTuple] | None]:
        """In the worker: the block-mean copies of the anatomy and of the overlay, as layer data."""
        rendering, attenuation, opacity = look
        overlay, name = overlay_named
        factors = block_factors(np.shape(anatomy.data), max_size)
        volume = yield from iter_block_mean([anatomy.data], factors, stop, f"downsampling {anatomy.name}")
        if volume is None:
            return None
        scale, translate = downsampled_placement(anatomy.scale, anatomy.translate, factors, anatomy.linear)
        low, high = anatomy.contrast_limits
        anatomy_kwargs: dict[str, Any] = {
            "name": f"{anatomy.name} 3D", "scale": scale, "translate": translate, "colormap": "gray",
            "contrast_limits": [low, high], "rendering": rendering, "attenuation": attenuation,
            "iso_threshold": low + 0.4 * (high - low), "blending": "translucent", "units": anatomy.units,
            **anatomy.extra,
            "metadata": {META_KEY: {"kind": KIND_3D, "source_layer": anatomy.name, "factors": list(factors)}}}
        anatomy_data = (volume[0], anatomy_kwargs, "image")
        if isinstance(overlay, AnyTraversal):
            overlay_data = yield from self._difference_3d(overlay, name, max_size, opacity, store, stop)
        else:
            overlay_data = yield from self._map_3d(overlay, name, max_size, opacity, stop)
        if overlay_data is None:
            return None
        return anatomy_data, overlay_data

    def _difference_3d(self, traversal: AnyTraversal, name: str, max_size: int, opacity: float, store: Any,
                       stop: StopFlag) -> Operation[LayerDataTuple | None]:
        """Every alpha's block-mean frame minus the baseline's: a 4D in-memory overlay (the slider moves it)."""
        with self.session.stores.hold(store):  # never collected while it is read
            frames = traversal.frames if isinstance(traversal, StoredTraversal) else display_frames(traversal)
            factors = block_factors(frames.shape[1:], max_size)
            volumes = yield from iter_block_mean(FrameSequence(frames), factors, stop, "downsampling the traversal")
            if volumes is None:
                return None
            yield ProgressEvent(0, None, "contrast limits", stage="limits")
            limits = difference_limits(traversal)
        volumes -= volumes[int(traversal.baseline_index)].copy()
        geometry = display_geometry(traversal.grid)
        alpha_scale, alpha_translate = alpha_placement(traversal.alphas)
        scale, translate = downsampled_placement((alpha_scale, *geometry.scale), (alpha_translate, *geometry.translate),
                                                 factors)
        kwargs = {"name": name, "scale": scale, "translate": translate,
                  "colormap": volume_colormap(), "contrast_limits": limits, "rendering": "translucent",
                  "blending": "translucent", "opacity": opacity, "axis_labels": TRAVERSAL_AXIS_LABELS,
                  "units": ("dimensionless", "mm", "mm", "mm"),
                  "metadata": {META_KEY: {"kind": KIND_3D, "overlay": "traversal_difference",
                                          "alphas": [float(a) for a in traversal.alphas],
                                          "baseline_index": int(traversal.baseline_index),
                                          "factors": list(factors)}}}
        return volumes, kwargs, "image"

    def _map_3d(self, source: _Source, name: str, max_size: int, opacity: float,
                stop: StopFlag) -> Operation[LayerDataTuple | None]:
        """The block-mean copy of a 3D map layer, with its (symmetric) contrast limits."""
        factors = block_factors(np.shape(source.data), max_size)
        volumes = yield from iter_block_mean([source.data], factors, stop, f"downsampling {source.name}")
        if volumes is None:
            return None
        scale, translate = downsampled_placement(source.scale, source.translate, factors, source.linear)
        limit = max(abs(v) for v in source.contrast_limits) or 1.0
        kwargs = {"name": name, "scale": scale, "translate": translate, "units": source.units,
                  **source.extra,
                  "colormap": volume_colormap(), "contrast_limits": [-limit, limit], "rendering": "translucent",
                  "blending": "translucent", "opacity": opacity,
                  "metadata": {META_KEY: {"kind": KIND_3D, "overlay": source.name, "factors": list(factors)}}}
        return volumes[0], kwargs, "image"

    def _on_3d_built(self, built: tuple[LayerDataTuple, LayerDataTuple] | None) -> Iterator[None] | str:
        if built is None:
            return "3D view cancelled"
        return self._enter_3d(*built)

    def _enter_3d(self, anatomy: LayerDataTuple, overlay: LayerDataTuple) -> Iterator[None]:
        """In the GUI thread, one napari change per turn of the event loop."""
        from napari.layers import Layer

        from .traverse_widget import label_alpha_axis

        if self.mode == "side":
            self.end_side_by_side()
            yield
        if self.mode == "3d":
            self._remove(self.layers_3d)
        else:
            self._saved = _Saved.take(self.viewer)
        for layer in self.viewer.layers:  # hidden first: a lazy layer is never rendered (read whole) in 3D
            layer.visible = False
        self.mode = "3d"
        self._set_buttons()
        yield
        self.layers_3d = []
        for data, kwargs, kind in (anatomy, overlay):
            layer = Layer.create(data, kwargs, kind)
            self.viewer.add_layer(layer)
            self.layers_3d.append(layer)
            yield
        dims = self.viewer.dims
        dims.order = tuple(range(dims.ndim))  # the alpha axis (0) stays a slider
        note = ""
        if np.ndim(overlay[0]) == 4:
            label_alpha_axis(self.viewer)
            baseline = int(overlay[1]["metadata"][META_KEY]["baseline_index"])
            if dims.current_step[0] == baseline:  # nothing to see at alpha 0: the largest change
                alphas = np.asarray(overlay[1]["metadata"][META_KEY]["alphas"])
                far = int(len(alphas) - 1 - np.argmax(np.abs(alphas - alphas[baseline])[::-1]))
                dims.set_current_step(0, far)
            note = "; move the alpha slider to see the overlay change"
        dims.ndisplay = 3
        yield
        self.viewer.reset_view()
        self.viewer.camera.set_view_direction(VIEW_DIRECTION, UP_DIRECTION)
        shape = tuple(np.shape(anatomy[0]))
        return (f"3D view: {anatomy[1]['name']} ({'x'.join(map(str, shape))} voxels) and "
                f"{overlay[1]['name']}{note}. Back to 2D restores the view.")

    def back_to_2d(self) -> None:
        """Remove the 3D layers; restore the 2D display, the camera and the layers' visibilities."""
        if self.mode != "3d":
            self.panel.status.value = "Not in the 3D view."
            return
        self._remove(self.layers_3d)
        self.layers_3d = []
        self._restore()
        self.panel.status.value = "Back in 2D."

    def _on_opacity(self, value: float) -> None:
        if len(self.layers_3d) == 2 and self.layers_3d[1] in self.viewer.layers:
            self.layers_3d[1].opacity = float(value)

    def _on_attenuation(self, value: float) -> None:
        if self.layers_3d and self.layers_3d[0] in self.viewer.layers:
            self.layers_3d[0].attenuation = float(value)

    def _on_rendering(self, value: str) -> None:
        if self.layers_3d and self.layers_3d[0] in self.viewer.layers:
            self.layers_3d[0].rendering = str(value)

    # -- side by side ---------------------------------------------------------------------------
    def show_side_by_side(self) -> None:
        """Alpha 0 on the left, the chosen alpha (or its difference) on the right, in napari's grid mode."""
        self.runner.start(self._make_side, self._on_side_ready, "Side by side")

    def _chosen_alpha(self, traversal: AnyTraversal) -> int:
        index = self.side_alpha.value
        if index is None or not 0 <= int(index) < len(traversal):
            raise UserInputError("choose an alpha of the traversal")
        return int(index)

    def _make_side(self, stop: StopFlag) -> Operation[tuple[AnyTraversal, LayerDataTuple, LayerDataTuple]]:
        traversal = self._traversal()
        if traversal is None:
            raise UserInputError(NO_TRAVERSAL)
        index = self._chosen_alpha(traversal)
        difference = self.side_right.value == RIGHT_DIFFERENCE
        limits = self._traversal_layer_limits(traversal)
        return self._prepare_side(traversal, index, difference, limits)

    def _traversal_layer_limits(self, traversal: AnyTraversal) -> list[float] | None:
        """The grey contrast limits of the layer that shows this traversal (None when it is not shown)."""
        layer = self._shown_layer(traversal, "traversal")
        return None if layer is None else [float(v) for v in layer.contrast_limits]

    def _prepare_side(self, traversal: AnyTraversal, index: int, difference: bool,
                      limits: list[float] | None) -> Operation[tuple[AnyTraversal, LayerDataTuple, LayerDataTuple]]:
        """In the worker: the contrast limits (a sample of planes) and the two lazy layers' data."""
        yield ProgressEvent(0, None, "contrast limits", stage="limits")
        frames = display_frames(traversal)
        grey = list(limits) if limits is not None else frame_limits(traversal, frames)
        signed = difference_limits(traversal, frames) if difference else None
        return traversal, side_layer_data(traversal, None, grey, None), side_layer_data(traversal, index, grey, signed)

    def _on_side_ready(self, ready: tuple[AnyTraversal, LayerDataTuple, LayerDataTuple]) -> Iterator[None]:
        from napari.layers import Layer

        traversal, left, right = ready
        if self.mode == "3d":
            self.back_to_2d()
            yield
        if self.mode == "side":
            self._remove(self.side_layers)
        else:
            self._saved = _Saved.take(self.viewer)
        for layer in self.viewer.layers:  # grid mode gives every visible layer a cell
            layer.visible = False
        self.mode = "side"
        self._side_traversal = traversal
        self._set_buttons()
        yield
        self.side_layers = []
        for data, kwargs, kind in (left, right):
            layer = Layer.create(data, kwargs, kind)
            self.viewer.add_layer(layer)
            self.side_layers.append(layer)
            yield
        grid = self.viewer.canvas.grid
        grid.stride = 1
        grid.shape = (1, 2)
        grid.enabled = True
        if self.viewer.dims.ndisplay != 2:
            self.viewer.dims.ndisplay = 2
        self.viewer.reset_view()
        return f"Side by side: {left[1]['name']} and {right[1]['name']}; End side by side restores the view."

    def _on_side_alpha(self, _value: Any = None) -> None:
        """A new alpha: the right layer's data (lazy) and name change."""
        traversal = self._side_traversal
        if self.mode != "side" or traversal is None or len(self.side_layers) != 2:
            return
        right = self.side_layers[1]
        if right not in self.viewer.layers or self.side_alpha.value is None:
            return
        index = int(self.side_alpha.value)
        difference = _kind(right) == KIND_SIDE and right.metadata[META_KEY].get("difference")
        data, kwargs, _ = side_layer_data(traversal, index, list(right.contrast_limits),
                                          list(right.contrast_limits) if difference else None)
        right.data = data
        right.metadata = kwargs["metadata"]
        right.name = kwargs["name"]

    def _on_side_right(self, _value: Any = None) -> None:
        if self.mode == "side":
            self.show_side_by_side()  # another colormap and contrast limits: made again

    def end_side_by_side(self, message: str = "Side by side ended.") -> None:
        """Remove the two layers; restore the grid settings, the camera and the layers' visibilities."""
        if self.mode != "side":
            self.panel.status.value = "Side by side is not on."
            return
        self._remove(self.side_layers)
        self.side_layers = []
        self._side_traversal = None
        self._restore()
        self.panel.status.value = message

    # -- both -------------------------------------------------------------------------------------
    def _remove(self, layers: list[Any]) -> None:
        for layer in layers:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)

    def _restore(self) -> None:
        """Back to the saved view: display, dims order, grid, camera, then the visibilities (in 2D)."""
        saved, self._saved = self._saved, None
        self.mode = ""
        self._set_buttons()
        if saved is None:
            return
        dims = self.viewer.dims
        dims.ndisplay = saved.ndisplay
        if len(saved.order) == dims.ndim:
            dims.order = saved.order
        grid = self.viewer.canvas.grid
        grid.enabled, grid.shape, grid.stride = saved.grid
        for layer, visible in saved.visible:
            if layer in self.viewer.layers:
                layer.visible = visible
        camera = self.viewer.camera
        if len(saved.center) == len(camera.center):
            camera.center = saved.center
        camera.zoom = saved.zoom
        camera.angles = saved.angles
        self._update_status()

    def _set_buttons(self) -> None:
        self.back_button.enabled = self.mode == "3d"
        self.end_side_button.enabled = self.mode == "side"


def side_layer_data(traversal: AnyTraversal, index: int | None, grey: list[float],
                    signed: list[float] | None) -> LayerDataTuple:
    """A side-by-side layer: frame ``index`` (the baseline for None) or, with ``signed`` limits, its difference.

    Lazy: a slice of the display-ordered frames (a store's dask array, read plane by plane by
    napari) on the traversal's grid; the difference is a dask expression.
    """
    frames = display_frames(traversal)
    baseline = int(traversal.baseline_index)
    number = baseline if index is None else int(index)
    alpha = float(traversal.alphas[number])
    store = str(traversal.path) if isinstance(traversal, StoredTraversal) else None
    extra = {"kind": KIND_SIDE, "alpha": alpha, "index": number, "difference": signed is not None, "store": store}
    if signed is not None:
        data = difference_data(frames, baseline)[number]
        return grid_layer_data(data, traversal.grid, f"difference at alpha {alpha:g} (side by side)", extra=extra,
                               displayed=True, colormap=diverging_colormap(), contrast_limits=list(signed),
                               blending="translucent", cache=False)
    kwargs: dict[str, Any] = {"cache": False} if store is not None else {}
    return grid_layer_data(frames[number], traversal.grid, f"alpha {alpha:g} (side by side)", extra=extra,
                           displayed=True, colormap="gray", contrast_limits=list(grey), **kwargs)
