"""The Traverse widget: move an inverted volume along a latent direction; a 4D layer over the source.

The session provides the codes (``session.codes``, layer name -> LatentCodes, and
``session.last_codes``) and the directions (``session.directions`` with
``session.selected_direction``); a directions file may be chosen instead.

The traversal is streamed into a traversal store (``*.zarr``, see
:mod:`napari_latent.latent.traversal.store`) while it is computed: each finished alpha
volume is written while the next is decoded, so memory holds a few volumes, never all of
them. The store goes where "save to" says (kept), else into the viewer's temporary session
folder (:mod:`napari_latent.gui.stores`: deleted with the viewer, or as soon as no layer
shows it). The result is shown lazily: a 4D traversal layer (the alpha axis first,
labelled ``alpha``) whose data is the store's dask array, read plane by plane as napari
shows it, and a difference overlay (each alpha minus the baseline, a lazy dask expression,
diverging colours, transparent at zero), both on the source layer's grid. The
:class:`~napari_latent.latent.traversal.StoredTraversal` goes to ``session.traversal``.
Cancel keeps the alphas finished so far (the store is committed with them).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, Label, LineEdit, PushButton

from ..analysis.trust import TrustWarning, trust_warnings
from ..errors import UserInputError
from ..latent.codes import LatentCodes
from ..latent.directions import Directions
from ..latent.traversal import UNITS, LazyTraversal, StoredTraversal, Traversal, is_store_path, parse_alphas
from ..progress import Operation, ProgressEvent, StopFlag, run_operation, stop_requested
from .invert_widget import add_or_update_layer
from .layers import LayerDataTuple, volume_from_layer
from .layout import fit_view, schedule_arrange
from .method_form import no_path
from .result_layers import difference_layer_data, display_frames, traversal_layer_data
from .session import get_session
from .session_script import variable
from .stores import collect_unshown
from .trust_notes import notify_warnings

NO_MODEL = "No model yet: load or train one in the Model widget first."
NO_CODES = "No codes yet: invert a volume in the Invert widget first."
NO_DIRECTIONS = "No directions yet: discover some in the Discover widget, or choose a directions file."
SESSION_DIRECTIONS = "(session directions)"
CANCELLED_EARLY = "Traversal cancelled before the first alpha"

AnyTraversal = Traversal | StoredTraversal


def _codes_store(session: Any) -> dict[str, LatentCodes]:
    return dict(session.codes)


def label_alpha_axis(viewer: Any) -> None:
    """Name the viewer's first axis "alpha" when it shows a 4D traversal."""
    dims = viewer.dims
    if dims.ndim == 4:
        labels = list(dims.axis_labels)
        labels[0] = "alpha"
        dims.axis_labels = labels


def traversal_layers(traversal: AnyTraversal, source_name: str,
                     contrast_limits: list[float] | None = None) -> list[LayerDataTuple]:
    """The layer data of a traversal and of its difference from the baseline (no viewer needed).

    Both layers are lazy over the frames (a store's dask array, or an in-memory
    traversal's images): the difference is a dask expression, never computed whole. What
    is read here (so run it in a worker thread): a sample of planes of the baseline frame
    (grey contrast limits, unless ``contrast_limits``) and of the first and last alphas
    (the overlay's symmetric limits).
    """
    name = f"{source_name} traversal"
    frames = display_frames(traversal)
    layer_data = traversal_layer_data(traversal, name, contrast_limits=contrast_limits)
    difference = difference_layer_data(traversal, f"{name} difference", source_name, frames)
    return [layer_data, difference]


def iter_show_traversal(viewer: Any, traversal: AnyTraversal, source_name: str,
                        prepared: list[LayerDataTuple] | None = None) -> Iterator[None]:
    """:func:`show_traversal` one layer per step (for running one step per turn of the event loop)."""
    if prepared is None:
        source = next((layer for layer in viewer.layers if layer.name == source_name), None)
        prepared = traversal_layers(traversal, source_name,
                                    list(source.contrast_limits) if source is not None else None)
    layer_data, (data, kwargs, kind) = prepared
    # one napari change per turn of the event loop (each reslices the shown layers)
    layer = add_or_update_layer(viewer, layer_data)
    yield
    label_alpha_axis(viewer)
    viewer.dims.set_current_step(0, traversal.baseline_index)
    fit_view(viewer)  # the new alpha slider took room from the canvas: the whole slice in view again
    yield
    kwargs["scale"], kwargs["translate"] = tuple(layer.scale), tuple(layer.translate)
    add_or_update_layer(viewer, (data, kwargs, kind))
    session = get_session(viewer)
    session.traversal = traversal
    collect_unshown(viewer, session)  # a replaced layer's temporary store goes
    return layer


def show_traversal(viewer: Any, traversal: AnyTraversal, source_name: str,
                   prepared: list[LayerDataTuple] | None = None) -> Any:
    """Add (or update) a traversal's 4D layer and its difference overlay; the session's result.

    Parameters
    ----------
    viewer : napari.Viewer
    traversal : Traversal or StoredTraversal
        At least one alpha; a store is shown lazily.
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
    ``widget.alphas.value = "0:3:15"``, ``widget.units.value = "direction_std"``,
    ``widget.save_to.value = "out/trav.zarr"`` (optional: keep the store), ``widget.run()``,
    ``widget.runner.wait()``; the StoredTraversal is in ``widget.session.traversal``.
    """

    def __init__(self, napari_viewer: Any) -> None:
        schedule_arrange(napari_viewer)  # tab this dock with ours, fit the camera
        from .runner import OperationRunner, ProgressPanel

        self.viewer = napari_viewer
        self.session = get_session(napari_viewer)
        #: The trust warnings of the last traversal (also shown as napari notifications).
        self.warnings: list[TrustWarning] = []
        self._checks: tuple[Any, LatentCodes, Directions, int] | None = None
        self._file_directions: Directions | None = None
        self._file_error = ""
        self._source_name = ""
        self.status = Label(value="")
        self.codes = ComboBox(label="codes of", choices=self._codes_names)
        self.directions_file = FileEdit(label="directions file", mode="r", filter="*.safetensors", value="")
        self.direction = ComboBox(label="direction", choices=self._direction_choices)
        self.alphas = LineEdit(label="alphas", value="0:3:15")
        self.units = ComboBox(label="units", choices=list(UNITS), value="direction_std")
        self.save_to = FileEdit(label="save to", mode="w", filter="*.zarr", value="",
                                tooltip="Optional: a traversal store (.zarr folder) to keep. Left empty, the store "
                                "is temporary: it lives in the session folder and is deleted with the viewer.")
        self.run_button = PushButton(text="Traverse")
        self.panel = ProgressPanel()
        self.runner = OperationRunner(self.panel, lambda busy: setattr(self.run_button, "enabled", not busy))
        super().__init__(widgets=[self.status, self.codes, self.directions_file, self.direction, self.alphas,
                                  self.units, self.save_to, self.run_button, self.panel])
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

    def store_path(self, source_name: str) -> tuple[Path, bool]:
        """Where this run's store goes, and whether it is temporary (the session folder)."""
        value = self.save_to.value
        if not no_path(value):
            path = Path(str(value)).expanduser()
            if not is_store_path(path) and not path.exists():
                path = path.with_name(path.name + ".zarr")
            if path.exists() and not (path / "zarr.json").is_file():
                raise UserInputError(f"save to: {path} exists and is not a traversal store; give a new name "
                                     "ending in .zarr")
            return path, False
        stores = self.session.stores
        stores.close_with(self.viewer)
        return stores.new_path(f"{source_name} traversal"), True

    def _make_operation(self, stop: StopFlag) -> Operation[tuple[StoredTraversal | None, list[LayerDataTuple] | None]]:
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
        alphas = parse_alphas(str(self.alphas.value))
        units = str(self.units.value)
        path, temporary = self.store_path(name)
        source_layer = next((layer for layer in self.viewer.layers if layer.name == name), None)
        # references only: the source volume is copied into file order in the worker
        source = None if source_layer is None else (source_layer.data, source_layer.metadata,
                                                    tuple(source_layer.scale), tuple(source_layer.translate))
        limits = list(source_layer.contrast_limits) if source_layer is not None else None
        self._source_name = name
        if self._file_directions is not None:
            opened = f"directions = nl.Directions.load({str(Path(str(self.directions_file.value)).resolve())!r})"
        else:
            opened = "# directions: from the discover step above"
        source_arg = f", source={variable('volume', name)}" if source is not None else ""
        out = f"{str(path)!r}" if not temporary else "'traversal.zarr'"
        self._script_lines = [opened, f"traversal = nl.traverse(model, {variable('codes', name)}, directions, "
                              f"{str(self.alphas.value)!r}, index={int(index)}, units={units!r}"
                              f"{source_arg}, out={out})"]
        device = self.session.device
        self._checks = (model, codes, directions, int(index))
        return self._operation(name, model, codes, directions, int(index), alphas, units, source, limits, path,
                               device, stop)

    def _operation(self, name: str, model: Any, codes: LatentCodes, directions: Directions, index: int,
                   alphas: np.ndarray, units: str, source: tuple[Any, ...] | None, limits: list[float] | None,
                   path: Path, device: str,
                   stop: StopFlag) -> Operation[tuple[StoredTraversal | None, list[LayerDataTuple] | None]]:
        """In the worker: the source volume, the streamed traversal into the store, then the lazy layers."""
        try:
            yield ProgressEvent(0, None, "preparing the source volume", stage="traverse")
            lazy = LazyTraversal(model, codes, directions, alphas, index=index, units=units,  # type: ignore[arg-type]
                                 source=_source_volume(source, name, codes), device=device)
            traversal = yield from lazy.iter_store(path, stop)
        except UserInputError:
            self._release(path)  # nothing was written: no empty session folder stays
            if stop_requested(stop):  # stopped before the first alpha (the store module's older way to say so)
                return None, None
            raise
        except BaseException:
            self._release(path)
            raise
        if traversal is None:  # stopped before the first alpha: nothing was written
            self._release(path)
            return None, None
        try:
            yield ProgressEvent(0, None, "preparing the layers", stage="layers")
            return traversal, traversal_layers(traversal, name, limits)
        except BaseException:
            self._release(path)
            raise

    def _release(self, path: Path) -> None:
        """A run that shows nothing: its store's reservation ends, and an empty session folder goes."""
        self.session.stores.release(path)
        self.session.stores.release_if_empty()

    def _on_traversed(self, result: tuple[StoredTraversal | None, list[LayerDataTuple] | None]) -> Iterator[None]:
        """Add the traversal's layers one per turn of the event loop; the status message at the end."""
        traversal, prepared = result
        if traversal is None or prepared is None:
            return CANCELLED_EARLY
        try:
            yield from iter_show_traversal(self.viewer, traversal, self._source_name, prepared)
        finally:
            self.session.stores.release(traversal.path)  # shown now (or never): collectable when unshown
        self.session.script.record("traverse", self._script_lines, show={"traversal": "traversal"})
        direction = traversal.direction.name if traversal.direction is not None else "direction"
        stopped = " (cancelled: the alphas finished so far)" if traversal.info.get("stopped") else ""
        where = "" if self.session.stores.is_temporary(traversal.path) else f", saved to {traversal.path}"
        self.warnings = []
        if self._checks is not None:
            model, codes, directions, index = self._checks
            self.warnings = notify_warnings(trust_warnings(model, directions=directions, index=index, codes=codes))
        warned = f"; {len(self.warnings)} warning(s): see the notifications" if self.warnings else ""
        return (f"Traversed {self._source_name} along {direction!r}: {len(traversal)} alphas from "
                f"{traversal.alphas[0]:g} to {traversal.alphas[-1]:g} {traversal.units}{stopped}{where}{warned}")


def _source_volume(source: tuple[Any, ...] | None, name: str, codes: LatentCodes) -> Any:
    """The inverted layer as a Volume in file order (real intensities outside the modelled voxels), or None."""
    if source is None:
        return None
    data, metadata, scale, translate = source
    try:
        # a view of the layer's data: the traversal copies it into each frame, so a copy would only cost memory
        volume = volume_from_layer(data, metadata, scale, translate, name, contiguous=False)
    except ValueError:
        return None
    return volume if volume.grid.shape == codes.geometry.grid.shape else None
