"""The Traverse widget: move an inverted volume along a latent direction; a 4D layer over the source.

The session provides the codes (``session.codes``, layer name -> LatentCodes, and
``session.last_codes``) and the directions (``session.directions`` with
``session.selected_direction``); a directions file may be chosen instead. The result is a
4D traversal layer (the alpha axis first, labelled ``alpha``) on the source layer's grid,
a 4D difference overlay (each alpha minus the baseline, diverging colours, transparent at
zero), and the :class:`~napari_latent.latent.traversal.Traversal` in
``session.traversal``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, Label, LineEdit, PushButton

from ..errors import UserInputError
from ..latent.codes import LatentCodes
from ..latent.directions import Directions
from ..latent.traversal import UNITS, LazyTraversal, Traversal, parse_alphas
from ..progress import Operation, StopFlag, run_operation
from .invert_widget import add_or_update_layer
from .layers import LayerDataTuple, grid_layer_data, volume_from_layer
from .result_layers import OVERLAY_OPACITY, diverging_colormap, symmetric_limits, traversal_layer_data
from .session import get_session
from .session_script import variable

NO_MODEL = "No model yet: load or train one in the Model widget first."
NO_CODES = "No codes yet: invert a volume in the Invert widget first."
NO_DIRECTIONS = "No directions yet: discover some in the Discover widget, or choose a directions file."
SESSION_DIRECTIONS = "(session directions)"


def _codes_store(session: Any) -> dict[str, LatentCodes]:
    return dict(session.codes)


def label_alpha_axis(viewer: Any) -> None:
    """Name the viewer's first axis "alpha" when it shows a 4D traversal."""
    dims = viewer.dims
    if dims.ndim == 4:
        labels = list(dims.axis_labels)
        labels[0] = "alpha"
        dims.axis_labels = labels


def traversal_layers(traversal: Traversal, source_name: str,
                     contrast_limits: list[float] | None = None) -> list[LayerDataTuple]:
    """The layer data of a traversal and of its difference from the baseline (no viewer needed).

    The heavy part of showing a traversal (the difference volumes, their symmetric
    contrast limits, the display reorientation), so that it can run in a worker thread.
    """
    direction = traversal.direction.name if traversal.direction is not None else "direction"
    name = f"{source_name} traversal"
    layer_data = traversal_layer_data(traversal, name)
    if contrast_limits is not None:
        layer_data[1]["contrast_limits"] = list(contrast_limits)
    differences = traversal.images - traversal.baseline[None]
    extra = {"kind": "traversal_difference", "source_layer": source_name, "direction": direction,
             "alphas": [float(a) for a in traversal.alphas], "baseline_index": int(traversal.baseline_index)}
    limits = symmetric_limits(differences, np.broadcast_to(traversal.modelled_mask(), differences.shape))
    data, kwargs, kind = grid_layer_data(differences, traversal.grid, f"{name} difference", leading=1,
                                         extra=extra, colormap=diverging_colormap(), contrast_limits=limits,
                                         opacity=OVERLAY_OPACITY, blending="translucent")
    kwargs["axis_labels"] = layer_data[1].get("axis_labels")
    return [layer_data, (data, kwargs, kind)]


def iter_show_traversal(viewer: Any, traversal: Traversal, source_name: str,
                        prepared: list[LayerDataTuple] | None = None) -> Iterator[None]:
    """:func:`show_traversal` one layer per step (for running one step per turn of the event loop)."""
    if prepared is None:
        source = next((layer for layer in viewer.layers if layer.name == source_name), None)
        prepared = traversal_layers(traversal, source_name,
                                    list(source.contrast_limits) if source is not None else None)
    layer_data, (data, kwargs, kind) = prepared
    layer = add_or_update_layer(viewer, layer_data)
    yield
    kwargs["scale"], kwargs["translate"] = tuple(layer.scale), tuple(layer.translate)
    add_or_update_layer(viewer, (data, kwargs, kind))
    label_alpha_axis(viewer)
    viewer.dims.set_current_step(0, traversal.baseline_index)
    get_session(viewer).traversal = traversal
    return layer


def show_traversal(viewer: Any, traversal: Traversal, source_name: str,
                   prepared: list[LayerDataTuple] | None = None) -> Any:
    """Add (or update) a traversal's 4D layer and its difference overlay; the session's result.

    Parameters
    ----------
    viewer : napari.Viewer
    traversal : Traversal
        At least one alpha.
    source_name : str
        The layer of the traversed volume (its contrast limits are reused when it is shown).
    prepared : list, optional
        :func:`traversal_layers` computed beforehand (in a worker thread); computed here
        when omitted.

    Returns
    -------
    napari.layers.Image
        The traversal layer (named ``"<source_name> traversal"``).
    """
    return run_operation(iter_show_traversal(viewer, traversal, source_name, prepared))


class TraverseWidget(Container):
    """Traverse the codes of an inverted layer along a direction; adds the traversal and difference layers.

    Scriptable: ``widget.codes.value = "sub-001"``, ``widget.direction.value = 0`` (an index),
    ``widget.alphas.value = "0:3:15"``, ``widget.units.value = "direction_std"``, ``widget.run()``,
    ``widget.runner.wait()``; the Traversal is in ``widget.session.traversal``.
    """

    def __init__(self, napari_viewer: Any) -> None:
        from .runner import OperationRunner, ProgressPanel

        self.viewer = napari_viewer
        self.session = get_session(napari_viewer)
        self._file_directions: Directions | None = None
        self._file_error = ""
        self._source_name = ""
        self.status = Label(value="")
        self.codes = ComboBox(label="codes of", choices=self._codes_names)
        self.directions_file = FileEdit(label="directions file", mode="r", filter="*.safetensors", value="")
        self.direction = ComboBox(label="direction", choices=self._direction_choices)
        self.alphas = LineEdit(label="alphas", value="0:3:15")
        self.units = ComboBox(label="units", choices=list(UNITS), value="direction_std")
        self.run_button = PushButton(text="Traverse")
        self.panel = ProgressPanel()
        self.runner = OperationRunner(self.panel, lambda busy: setattr(self.run_button, "enabled", not busy))
        super().__init__(widgets=[self.status, self.codes, self.directions_file, self.direction, self.alphas,
                                  self.units, self.run_button, self.panel])
        self.run_button.changed.connect(lambda: self.run())
        self.directions_file.changed.connect(self._on_file_changed)
        for signal in (self.session.events.model, self.session.events.codes, self.session.events.last_codes):
            signal.connect(self._on_codes_changed)
        for signal in (self.session.events.model, self.session.events.directions,
                       self.session.events.selected_direction):
            signal.connect(self._on_directions_changed)
        self._on_codes_changed()
        self._on_directions_changed()

    # -- choices ----------------------------------------------------------------------------
    def _codes_names(self, _widget: Any = None) -> list[str]:
        return list(_codes_store(self.session))

    def current_directions(self) -> Directions | None:
        """The directions file's directions when one is chosen, else the session's."""
        if self._file_directions is not None:
            return self._file_directions
        directions = self.session.directions
        return directions if isinstance(directions, Directions) else None

    def _direction_choices(self, _widget: Any = None) -> list[tuple[str, int]]:
        directions = self.current_directions()
        if directions is None:
            return []
        return [(f"{i}: {name}", i) for i, name in enumerate(directions.names)]

    def _on_file_changed(self, _value: Any = None) -> None:
        text = str(self.directions_file.value or "").strip()
        self._file_directions, self._file_error = None, ""
        if text and text != "." and Path(text).is_file():
            try:
                self._file_directions = Directions.load(text)
            except UserInputError as exc:
                self._file_error = str(exc)
        self.direction.reset_choices()
        self._update_status()

    def _on_codes_changed(self) -> None:
        self.codes.reset_choices()
        last = self.session.last_codes
        if isinstance(last, tuple) and last and last[0] in self._codes_names():
            self.codes.value = last[0]
        self._update_status()

    def _on_directions_changed(self) -> None:
        self.direction.reset_choices()
        selected = self.session.selected_direction
        if self._file_directions is None and isinstance(selected, int | np.integer) \
                and 0 <= int(selected) < len(self.direction.choices):
            self.direction.value = int(selected)
        self._update_status()

    def _update_status(self) -> None:
        model = self.session.model
        if model is None:
            self.status.value = NO_MODEL
        elif not self._codes_names():
            self.status.value = NO_CODES
        elif self._file_error:
            self.status.value = f"Directions file: {self._file_error}"
        elif self.current_directions() is None:
            self.status.value = NO_DIRECTIONS
        else:
            self.status.value = f"Model: {model.name}. Choose codes, a direction and alphas, then traverse."

    # -- running ------------------------------------------------------------------------------
    def run(self) -> None:
        """Traverse in a background thread."""
        self.runner.start(self._make_operation, self._on_traversed, "Traversal")

    def _make_operation(self, stop: StopFlag) -> Operation[tuple[Traversal, list[LayerDataTuple] | None]]:
        from .runner import followed_by

        model = self.session.model
        if model is None:
            raise UserInputError(NO_MODEL)
        store = _codes_store(self.session)
        if not store:
            raise UserInputError(NO_CODES)
        name = self.codes.value
        if name not in store:
            raise UserInputError("choose the codes of an inverted layer")
        if self._file_error:
            raise UserInputError(f"directions file: {self._file_error}")
        directions = self.current_directions()
        if directions is None:
            raise UserInputError(NO_DIRECTIONS)
        index = self.direction.value
        if index is None:
            raise UserInputError("choose a direction")
        codes = store[name]
        source = None
        if name in self.viewer.layers:  # the inverted layer: real intensities outside the modelled voxels
            layer = self.viewer.layers[name]
            try:
                volume = volume_from_layer(np.asarray(layer.data), layer.metadata, layer.scale, layer.translate, name)
            except ValueError:
                volume = None
            if volume is not None and volume.grid.shape == codes.geometry.grid.shape:
                source = volume
        self._source_name = name
        if self._file_directions is not None:
            opened = f"directions = nl.Directions.load({str(Path(str(self.directions_file.value)).resolve())!r})"
        else:
            opened = "# directions: from the discover step above"
        source_arg = f", source={variable('volume', name)}" if source is not None else ""
        self._script_lines = [opened, f"traversal = nl.traverse(model, {variable('codes', name)}, directions, "
                              f"{str(self.alphas.value)!r}, index={int(index)}, units={str(self.units.value)!r}"
                              f"{source_arg})"]
        lazy = LazyTraversal(model, codes, directions, parse_alphas(str(self.alphas.value)), index=int(index),
                             units=str(self.units.value), source=source,  # type: ignore[arg-type]
                             device=self.session.device)
        limits = list(self.viewer.layers[name].contrast_limits) if name in self.viewer.layers else None

        def prepare(traversal: Traversal) -> list[LayerDataTuple] | None:
            return traversal_layers(traversal, name, limits) if len(traversal) else None

        return followed_by(lazy.iter_compute(stop), prepare)

    def _on_traversed(self, result: tuple[Traversal, list[LayerDataTuple] | None]) -> Iterator[None]:
        """Add the traversal's layers one per turn of the event loop; the status message at the end."""
        traversal, prepared = result
        if len(traversal) == 0:
            return "Traversal cancelled before the first alpha"
        yield from iter_show_traversal(self.viewer, traversal, self._source_name, prepared)
        self.session.script.record("traverse", self._script_lines, show={"traversal": "traversal"})
        direction = traversal.direction.name if traversal.direction is not None else "direction"
        stopped = " (cancelled: the alphas finished so far)" if traversal.info.get("stopped") else ""
        return (f"Traversed {self._source_name} along {direction!r}: {len(traversal)} alphas from "
                f"{traversal.alphas[0]:g} to {traversal.alphas[-1]:g} {traversal.units}{stopped}")
