"""The Explore widget: sliders for the top latent directions, acting live on the current slice.

Like the interfaces of GANSpace and SeFa, but on real anatomy: the session's codes of a volume
(``session.last_codes``, from the Invert widget or a codes file) and its directions
(``session.directions``, from the Discover widget or a directions file). Moving a
slider shifts the code of the slice at the viewer's current position by
``value * code_std[k] * d_k`` (the slider counts standard deviations of the codes along the
direction), decodes that one code and pastes the image into two preview layers on the source
grid:

``<source> explore``
    a copy of the source volume in which only the current model slice is replaced by the
    decoded, shifted code (the box the model sees; the rest is the source's voxels);
``<source> explore difference``
    a diverging overlay of ``decode(shifted) - decode(unshifted)`` on that slice (zero
    elsewhere): the change the directions cause, without the reconstruction error.

The preview layers are made when the user first drags a slider (or presses Reset sliders),
not when the session changes: the preview is a copy of the source volume, 315 MB for a CT.
Moving through the volume (napari's slider) moves the preview to the new slice and restores
the previous one. The work (plane mapping, shift, decode, paste) is
:class:`~napari_latent.latent.preview.SlicePreview`'s, on views of the two layers' data;
this widget wires sliders and viewer events to it and refreshes the layers. Updates run on
the GUI thread (one decode takes milliseconds, ``benchmarks/bench_explore.py``) and are
coalesced to at most :data:`MAX_RATE` per second while dragging. "Traverse volume" hands the
current direction and slider range to the Traverse widget (``session.explore_request``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, Container, FloatSlider, Label, PushButton, SpinBox

from ..latent.codes import LatentCodes
from ..latent.directions import Directions
from ..latent.preview import SlicePreview
from ..volumes.orientation import DisplayGeometry, display_geometry
from .layers import META_KEY, grid_layer_data
from .layout import schedule_arrange
from .result_layers import diverging_colormap
from .session import get_session

#: At most this many sliders (the top directions, in rank order).
MAX_SLIDERS = 8
#: Slider range in standard deviations of the codes along each direction.
SLIDER_RANGE = 3.0
#: Preview updates per second at most while dragging.
MAX_RATE = 30.0

#: Marks the slider of the direction selected in the Discover widget (or its gallery).
SELECTED_MARK = "▶ "
#: Slider labels longer than this are shortened (the tooltip has the whole name).
LABEL_CHARS = 18

NO_MODEL = "No model yet: load or train one in the Model widget."
NO_CODES = "No codes yet: invert a volume in the Invert widget (or open a codes file)."
NO_DIRECTIONS = "No directions yet: discover some in the Discover widget (or open a directions file)."


def short_label(name: str, limit: int = LABEL_CHARS) -> str:
    """A direction's name for a slider label: cut to ``limit`` characters with an ellipsis (docks stay narrow)."""
    return name if len(name) <= limit else name[:limit - 1].rstrip() + "…"


class ExploreWidget(Container):
    """Live sliders for the top directions of the session, previewed on the current slice.

    Scriptable: ``widget.set_values({0: 2.0})`` (slider 0 to 2 standard deviations),
    ``widget.update_preview()``; ``widget.preview_layer``, ``widget.difference_layer`` and
    ``widget.current_plane`` tell where the preview is; ``widget.last_update_ms`` how long
    the last update took; ``widget.preview`` is the
    :class:`~napari_latent.latent.preview.SlicePreview` doing the work (None until ready).
    """

    def __init__(self, napari_viewer: Any) -> None:
        schedule_arrange(napari_viewer)  # tab this dock with ours, fit the camera
        self.viewer = napari_viewer
        self.session = get_session(napari_viewer)
        self.status = Label(value=NO_MODEL)
        self.count = SpinBox(label="directions", min=1, max=MAX_SLIDERS, value=5,
                             tooltip="How many of the top directions get a slider")
        self.units = Label(value="Sliders: the shift along each direction in standard deviations of the codes.")
        self.sliders_box = Container(widgets=[], labels=True)
        self.show_difference = CheckBox(text="show the difference", value=True,
                                        tooltip="an overlay of the change against the unmodified slice")
        self.reset_button = PushButton(text="Reset sliders")
        self.traverse_button = PushButton(text="Traverse volume")
        super().__init__(widgets=[self.status, self.count, self.units, self.sliders_box, self.show_difference,
                                  self.reset_button, self.traverse_button])
        self.sliders: list[FloatSlider] = []
        self.preview: SlicePreview | None = None
        self.preview_layer: Any = None
        self.difference_layer: Any = None
        self.last_update_ms = float("nan")
        self._source: Any = None
        self._directions: Directions | None = None
        self._display: DisplayGeometry | None = None
        self._last_time = 0.0
        self._timer: Any = None
        self._rebuilding = False
        self._state: tuple[Any, ...] | None = None  # what the preview was made from (model, codes, ...)
        self.count.changed.connect(lambda: self._build_sliders())
        self.reset_button.changed.connect(lambda: self.reset())
        self.traverse_button.changed.connect(lambda: self.request_traversal())
        self.show_difference.changed.connect(self._on_show_difference)
        for signal in (self.session.events.model, self.session.events.codes, self.session.events.last_codes,
                       self.session.events.directions):
            signal.connect(self.refresh_state)
        self.session.events.selected_direction.connect(self._on_selected_direction)
        napari_viewer.dims.events.current_step.connect(self._on_dims_changed)
        napari_viewer.layers.events.removed.connect(self._on_layer_removed)
        self.refresh_state()

    # -- state ----------------------------------------------------------------------------------
    def missing(self) -> str | None:
        """What is missing before the widget can explore (None when ready)."""
        model = self.session.model
        if model is None:
            return NO_MODEL
        last = self.session.last_codes
        if last is None:
            return NO_CODES
        directions = self.session.directions
        if not isinstance(directions, Directions):
            return NO_DIRECTIONS
        name, codes = last
        try:
            codes.check_model(model)
            directions.check_model(model)
            directions.check_codes(codes)
        except ValueError as exc:
            return f"The codes and directions do not fit together or the model: {exc}"
        if self._find_source(name, codes) is None:
            return (f"Open the volume the codes belong to ({name}): no image layer of that name or on the codes' "
                    "grid is in the viewer.")
        return None

    def _find_source(self, name: str, codes: LatentCodes) -> Any:
        from napari.layers import Image

        if name in self.viewer.layers and isinstance(self.viewer.layers[name], Image) \
                and self.viewer.layers[name].ndim == 3:
            return self.viewer.layers[name]
        grid = codes.geometry.grid.to_json()
        for layer in self.viewer.layers:
            entry = layer.metadata.get(META_KEY) or {}
            if isinstance(layer, Image) and layer.ndim == 3 and entry.get("grid") == grid \
                    and entry.get("kind") in ("volume", None):
                return layer
        return None

    def refresh_state(self) -> None:
        """Re-read the session: model, codes and directions; rebuild sliders and preview layers."""
        problem = self.missing()
        kept, previous, status = self.preview, self._state, self.status.value
        self.preview, self._state = None, None
        if problem is not None:
            self._directions = self._source = None
            self._build_sliders()
            self.status.value = problem
            self.traverse_button.enabled = False
            return
        name, codes = self.session.last_codes
        source = self._find_source(name, codes)
        state = (self.session.model, codes, self.session.directions, source)
        if kept is not None and previous is not None and all(a is b for a, b in zip(state, previous)) \
                and self.preview_layer in self.viewer.layers and self.difference_layer in self.viewer.layers:
            # the same model, codes, directions and source (the codes dict, then last_codes, of one
            # inversion; directions renamed in place): keep the preview, relabel the sliders
            self.preview, self._state = kept, previous
            self._build_sliders()
            self.status.value = status
            return
        self._directions = self.session.directions
        self._source = source
        self._build_sliders()
        self._state = state
        self.traverse_button.enabled = True
        self.status.value = (f"{len(self._directions)} {self._directions.method} directions on {self._source.name} "
                             f"({len(codes)} slices with codes). Drag a slider; move through the volume with "
                             "napari's slider.")
        if kept is not None:  # exploring already: the preview follows the new state at once
            self.update_preview()

    def _ensure_preview(self) -> bool:
        """Make the preview layers on first use (True when there is a preview).

        They are a copy of the source volume (the preview writes into it), so they are made
        when the user explores, not whenever the session changes: a CT-sized copy is 315 MB
        and takes most of a second.
        """
        if self.preview is None and self._state is not None and self._source is not None \
                and self._source in self.viewer.layers:
            self._make_layers(self._state[1])
        return self.preview is not None

    def _on_selected_direction(self, index: int | None) -> None:
        """The direction selected in Discover gets a slider (more sliders if needed) marked with ▶."""
        if index is None or self._directions is None:
            return
        if index >= MAX_SLIDERS:
            self.status.value = (f"Direction {index} is beyond the {MAX_SLIDERS} sliders; traverse it in the "
                                 "Traverse widget.")
            self._build_sliders()
            return
        if index >= int(self.count.value):
            self.count.value = index + 1  # rebuilds the sliders
        else:
            self._build_sliders()

    def _build_sliders(self) -> None:
        values = [s.value for s in self.sliders]
        self.sliders_box.clear()
        self.sliders = []
        directions = self._directions
        if directions is None:
            return
        for k in range(min(int(self.count.value), len(directions))):
            mark = SELECTED_MARK if k == self.session.selected_direction else ""
            slider = FloatSlider(label=mark + short_label(directions.names[k]), min=-SLIDER_RANGE, max=SLIDER_RANGE,
                                 step=0.05,
                                 value=values[k] if k < len(values) else 0.0,
                                 tooltip=f"{directions.names[k]}: shift in standard deviations "
                                         f"({directions.code_std[k]:.3g} latent units each)")
            slider.changed.connect(lambda _value: self._request_update())
            self.sliders.append(slider)
            self.sliders_box.append(slider)

    def _make_layers(self, codes: LatentCodes) -> None:
        """(Re)create the two preview layers on the source grid and the preview that writes into them."""
        from napari.layers import Image

        source, directions = self._source, self._directions
        assert source is not None and directions is not None
        grid = codes.geometry.grid
        display = self._display = display_geometry(grid)
        names = (f"{source.name} explore", f"{source.name} explore difference")
        self._rebuilding = True
        try:
            for name in names:
                if name in self.viewer.layers:
                    self.viewer.layers.remove(name)
        finally:
            self._rebuilding = False
        # display-ordered arrays (what napari shows); the preview writes through file-ordered views of them
        shown = np.empty(np.shape(source.data), dtype=np.float32)
        # zeros the system provides page by page: only the planes the preview writes take memory
        shown_difference = np.zeros(np.shape(source.data), dtype=np.float32)
        self.preview = SlicePreview(self.session.model, codes, directions,
                                    display.from_display(np.asarray(source.data)),
                                    preview=display.from_display(shown),
                                    difference=display.from_display(shown_difference), difference_zeroed=True)
        extra = {"kind": "explore_preview", "source_layer": source.name}
        preview = grid_layer_data(self.preview.preview, grid, names[0], extra=extra, colormap="gray",
                                  contrast_limits=list(source.contrast_limits))
        window = codes.geometry.window_values
        limit = 0.25 * float(window[1] - window[0]) or 1.0
        difference = grid_layer_data(self.preview.difference, grid, names[1],
                                     extra={**extra, "kind": "explore_difference"}, colormap=diverging_colormap(),
                                     contrast_limits=[-limit, limit], opacity=0.8, blending="translucent",
                                     visible=bool(self.show_difference.value))
        self.preview_layer = self.viewer.add_layer(Image(preview[0], **preview[1]))
        self.difference_layer = self.viewer.add_layer(Image(difference[0], **difference[1]))
        if not (np.shares_memory(self.preview.preview, self.preview_layer.data)
                and np.shares_memory(self.preview.difference, self.difference_layer.data)):
            raise RuntimeError("napari copied the preview data; in-place updates would not show")
        self.viewer.layers.selection.active = source

    # -- the preview ------------------------------------------------------------------------------
    @property
    def current_plane(self) -> int | None:
        """The model slice (plane index) the preview layers show, or None."""
        return None if self.preview is None else self.preview.plane

    def plane_axis(self) -> tuple[int, np.ndarray]:
        """``(display axis, plane index at each index along it)`` of the model's slices (see SlicePreview)."""
        if not self._ensure_preview() or self._display is None:
            raise RuntimeError("nothing to preview yet")
        return self.preview.plane_axis(self._display.reorientation)  # type: ignore[union-attr]

    def plane_at_cursor(self) -> int | None:
        """The model slice (plane index) at the viewer's current position, or None."""
        if self._source is None or self.preview is None or self._display is None:
            return None
        coords = np.asarray(self._source.world_to_data(self.viewer.dims.point), dtype=np.float64)
        return self.preview.plane_at(coords, self._display.reorientation)

    def shift(self) -> Any:
        """The latent shift of the sliders: ``sum_k value_k * code_std_k * d_k`` (a torch tensor)."""
        assert self.preview is not None
        self.preview.set_values({k: float(slider.value) for k, slider in enumerate(self.sliders)})
        return self.preview.shift()

    def set_values(self, values: dict[int, float]) -> None:
        """Set sliders by index (values in standard deviations) and update the preview once."""
        for k, value in values.items():
            with self.sliders[k].changed.blocked():
                self.sliders[k].value = float(value)
        self.update_preview()

    def reset(self) -> None:
        """All sliders to 0 (the preview shows the plain reconstruction); makes the preview layers if needed."""
        if self.preview_layer is None and self._state is None:
            self.refresh_state()
        self.set_values(dict.fromkeys(range(len(self.sliders)), 0.0))

    def _request_update(self) -> None:
        """Update now, or at most :data:`MAX_RATE` times a second while dragging (coalesced)."""
        wait = 1.0 / MAX_RATE - (time.perf_counter() - self._last_time)
        if wait <= 0:
            self.update_preview()
            return
        if self._timer is None:
            from qtpy.QtCore import QTimer

            self._timer = QTimer()
            self._timer.setSingleShot(True)
            self._timer.timeout.connect(self.update_preview)
        if not self._timer.isActive():
            self._timer.start(int(wait * 1000) + 1)

    def _on_dims_changed(self, _event: Any = None) -> None:
        if self.preview is not None and self.plane_at_cursor() != self.current_plane:
            self.update_preview()

    def _on_layer_removed(self, event: Any) -> None:
        """A preview layer removed: stop previewing into it. The source removed: drop the previews too.

        Nothing is rebuilt here (the viewer may be clearing all its layers); the next session
        change, or :meth:`refresh_state`, makes new preview layers.
        """
        layer = event.value
        if self._rebuilding or layer is None:
            return
        ours = (self.preview_layer, self.difference_layer)
        if layer is self._source:
            self._source = None
            for other in ours:
                if other is not None and other in self.viewer.layers:
                    self._rebuilding = True
                    try:
                        self.viewer.layers.remove(other)
                    finally:
                        self._rebuilding = False
        elif not any(layer is other for other in ours if other is not None):
            return
        self.preview_layer = self.difference_layer = None
        self.preview = None
        if layer is self._source:
            self._state = None
        self.status.value = "The preview layers were removed; press Reset sliders (or drag one) to make new ones."

    def _on_show_difference(self, value: bool) -> None:
        if self.difference_layer is not None:
            self.difference_layer.visible = bool(value)

    def update_preview(self) -> None:
        """Decode the shifted code of the current slice and paste it into the preview layers."""
        start = time.perf_counter()
        self._last_time = start
        if not self._ensure_preview() or self.preview_layer is None:
            return
        preview = self.preview
        assert preview is not None
        shift = self.shift()
        plane = self.plane_at_cursor()
        preview.update(plane)
        self.preview_layer.refresh()
        self.difference_layer.refresh()
        if preview.row_of(plane) is None:
            self.status.value = f"Slice {plane} has no code (outside the slices the model covers); move inside."
            return
        self.last_update_ms = (time.perf_counter() - start) * 1e3
        self.status.value = (f"Slice {plane} of {self._source.name}: shift of {float(shift.norm()):.3g} latent units;"
                             f" preview in {self.last_update_ms:.0f} ms")

    # -- hand-over --------------------------------------------------------------------------------
    def request_traversal(self) -> dict[str, Any] | None:
        """Ask the Traverse widget for the whole 4D traversal of the strongest slider's direction.

        Stores ``{"layer", "index", "weights", "alphas", "units"}`` as
        ``session.explore_request``: the direction of the slider furthest from 0
        (its index, and the weights of every non-zero slider), alphas from minus to plus that
        slider's value (``"direction_std"`` units, 9 steps; +-3 when every slider is at 0).
        """
        if self.preview is None or self._directions is None or not self.sliders:
            self.status.value = self.missing() or "Nothing to traverse yet."
            return None
        values = [float(s.value) for s in self.sliders]
        index = int(np.argmax(np.abs(values)))
        reach = abs(values[index]) or SLIDER_RANGE
        request = {"layer": self._source.name, "index": index,
                   "weights": {k: v for k, v in enumerate(values) if v},
                   "alphas": f"{-reach:g}:{reach:g}:9", "units": "direction_std"}
        self.session.explore_request = request
        self.status.value = (f"Asked the Traverse widget for {self._directions.names[index]!r}, alphas "
                             f"{request['alphas']} (std); open it from Plugins > napari-latent if it is not docked.")
        return request
