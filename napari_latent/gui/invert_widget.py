"""The Invert widget: turn an image layer into latent codes with the session's model.

The reconstruction (the codes decoded on the source grid) is written to a small store in the
viewer's session folder and shown lazily from there (:mod:`napari_latent.gui.map_store`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton, SpinBox

from ..analysis.trust import TrustWarning, trust_warnings
from ..errors import UserInputError
from ..latent.codes import LatentCodes
from ..latent.inversion import METHODS, default_space, iter_invert
from ..progress import Operation, StopFlag
from .layers import META_KEY, LayerDataTuple, grid_layer_data, volume_from_layer
from .layout import schedule_arrange
from .map_store import open_volume_array, write_volumes
from .runner import OperationRunner, ProgressPanel, followed_by
from .session import get_session
from .session_script import variable
from .stores import collect_unshown
from .trust_notes import notify_warnings

NO_MODEL = "No model yet: load or train one in the Model widget first."


def image_layers(viewer: Any) -> list[Any]:
    """The 3D image layers of a viewer."""
    from napari.layers import Image

    return [layer for layer in viewer.layers if isinstance(layer, Image) and layer.ndim == 3 and not layer.rgb]


def add_or_update_layer(viewer: Any, layer_data: tuple[Any, dict[str, Any], str]) -> Any:
    """Add a layer from layer data, or replace the data (metadata, contrast limits) of a layer of that name."""
    from napari.layers import Layer

    data, kwargs, kind = layer_data
    name = kwargs.get("name")
    if name in viewer.layers:
        layer = viewer.layers[name]
        if layer._type_string == kind and np.shape(layer.data) == np.shape(data):
            layer.data = data
            layer.metadata = kwargs.get("metadata", {})
            limits = kwargs.get("contrast_limits")
            if limits is not None and hasattr(layer, "contrast_limits_range"):  # the new data's, not the old
                layer.contrast_limits_range = list(limits)
                layer.contrast_limits = list(limits)
            return layer
        viewer.layers.remove(name)
    layer = Layer.create(data, kwargs, kind)
    viewer.add_layer(layer)
    return layer


def invert_script_lines(layer_name: str, path: str | None, call: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """The "Copy as script" lines of one inversion and the ``show`` arguments they provide."""
    volume_var, codes_var = variable("volume", layer_name), variable("codes", layer_name)
    if path:
        opened = f"{volume_var} = nl.open_volume({path!r})"
    else:
        opened = (f"{volume_var} = nl.open_volume('{layer_name}.nii.gz')  # the layer was not opened from a file: "
                  "save it with the Export widget and put its path here")
    arguments = ", ".join(f"{k}={v!r}" for k, v in call.items())
    lines = [opened, f"{codes_var} = nl.invert(model, {volume_var}, {arguments})"]
    return lines, {"volume": volume_var, "codes": codes_var}


def reconstruction_layer_data(model: Any, codes: LatentCodes, source_name: str, path: str | None,
                              contrast_limits: list[float], store: str | os.PathLike[str] | None = None
                              ) -> LayerDataTuple:
    """The reconstruction layer of inverted codes (decoded on the source grid), with its metadata.

    With ``store`` (a new ``*.zarr`` folder) the reconstruction is written there and shown
    lazily from it (:mod:`napari_latent.gui.map_store`): a CT-sized volume then takes no
    memory while it is shown.
    """
    grid = codes.geometry.grid
    extra = {"kind": "reconstruction", "source_layer": source_name, "path": path,
             "model": model.name, "model_fingerprint": model.fingerprint, "method": codes.method,
             "space": codes.space, "settings": codes.settings, "slice_indices": codes.indices.tolist(),
             "slice_mse": codes.errors.tolist(), "mean_mse": float(codes.errors.mean())}
    name = f"{source_name} reconstruction"
    if store is None:
        return grid_layer_data(codes.reconstruct(model), grid, name, extra=extra, colormap="gray",
                               contrast_limits=contrast_limits)
    written = write_volumes(store, grid, [("reconstruction", codes.reconstruct(model))])
    return grid_layer_data(open_volume_array(written, "reconstruction"), grid, name,
                           extra={**extra, "store": str(written)}, displayed=True, colormap="gray",
                           contrast_limits=contrast_limits, cache=False)


class InvertWidget(Container):
    """Invert a 3D image layer with the session's model; adds its reconstruction layer.

    Scriptable: ``widget.layer.value = "sub-001"``, ``widget.method.value = "hybrid"``,
    ``widget.run()``, ``widget.runner.wait()``; the codes are in ``widget.session.codes``.
    """

    def __init__(self, napari_viewer: Any) -> None:
        schedule_arrange(napari_viewer)  # tab this dock with ours, fit the camera
        self.viewer = napari_viewer
        self.session = get_session(napari_viewer)
        #: The trust warnings of the last inversion (also shown as napari notifications).
        self.warnings: list[TrustWarning] = []
        self.status = Label(value=NO_MODEL)
        self.layer = ComboBox(label="image", choices=self._layer_names)
        self.method = ComboBox(label="method", choices=list(METHODS), value="auto")
        self.space = ComboBox(label="space", choices=self._spaces)
        self.steps = SpinBox(label="steps", min=1, max=100_000, value=200)
        self.run_button = PushButton(text="Invert")
        self.panel = ProgressPanel()
        self.runner = OperationRunner(self.panel, lambda busy: setattr(self.run_button, "enabled", not busy))
        super().__init__(widgets=[self.status, self.layer, self.method, self.space, self.steps, self.run_button,
                                  self.panel])
        self.run_button.changed.connect(lambda: self.run())
        self.session.events.model.connect(self._on_model)
        napari_viewer.layers.events.inserted.connect(lambda event: self.layer.reset_choices())
        napari_viewer.layers.events.removed.connect(lambda event: self.layer.reset_choices())
        self._on_model()

    def _layer_names(self, _widget: Any = None) -> list[str]:
        return [layer.name for layer in image_layers(self.viewer)]

    def _spaces(self, _widget: Any = None) -> list[str]:
        model = self.session.model
        return list(model.spaces) if model is not None else ["z"]

    def _on_model(self) -> None:
        self.space.reset_choices()
        model = self.session.model
        if model is None:
            self.status.value = NO_MODEL
            return
        self.space.value = default_space(model)
        self.status.value = f"Model: {model.name}, {model.image_size} px. Choose an image layer and invert it."

    def run(self) -> None:
        """Invert the chosen layer in a background thread."""
        self.runner.start(self._make_operation, self._on_inverted, "Inversion")

    def _make_operation(self, stop: StopFlag) -> Operation[tuple[LatentCodes, LayerDataTuple]]:
        model = self.session.model
        if model is None:
            raise UserInputError(NO_MODEL)
        name = self.layer.value
        if not name or name not in self.viewer.layers:
            raise UserInputError("choose a 3D image layer to invert (open a NIfTI file or a sample)")
        layer = self.viewer.layers[name]
        self._source = layer
        self._call = {"method": str(self.method.value), "space": str(self.space.value), "steps": int(self.steps.value)}
        entry = layer.metadata.get(META_KEY, {})
        limits, source_name = list(layer.contrast_limits), layer.name
        parts = (layer.data, layer.metadata, tuple(layer.scale), tuple(layer.translate))

        stores = self.session.stores
        stores.close_with(self.viewer)
        store = stores.new_path(f"{source_name} reconstruction")

        self._store = store

        def operation() -> Operation[tuple[LatentCodes, LayerDataTuple]]:
            # in the worker: copying a CT-sized layer into file order takes longer than a GUI frame
            try:
                try:
                    volume = volume_from_layer(*parts, name=name)
                except ValueError as exc:
                    raise UserInputError(f"layer {name!r}: {exc}") from None
                inversion = iter_invert(model, volume, method=self._call["method"], space=self._call["space"],
                                        steps=self._call["steps"], stop=stop)
                return (yield from followed_by(inversion, lambda codes: reconstruction_layer_data(
                    model, codes, source_name, entry.get("path"), limits, store)))
            except BaseException:
                stores.release(store)  # nothing to show: the reservation ends, an empty session folder goes
                stores.release_if_empty()
                raise

        return operation()

    def _record_step(self, source: Any, path: str | None) -> None:
        lines, show = invert_script_lines(source.name, path, self._call)
        self.session.script.record(f"invert {source.name}", lines, show=show)

    def _on_inverted(self, result: tuple[LatentCodes, LayerDataTuple]) -> str:
        codes, layer_data = result
        source = self._source
        entry = source.metadata.get(META_KEY, {})
        try:
            add_or_update_layer(self.viewer, layer_data)
        finally:
            self.session.stores.release(self._store)  # shown: collectable once nothing shows it
        collect_unshown(self.viewer, self.session)  # the reconstruction this one replaced
        self.session.codes = {**self.session.codes, source.name: codes}
        self.session.last_codes = (source.name, codes)
        self._record_step(source, entry.get("path"))
        self.warnings = notify_warnings(trust_warnings(self.session.model, codes=codes))
        warned = f"; {len(self.warnings)} warning(s): see the notifications" if self.warnings else ""
        return (f"Inverted {len(codes)} slices of {source.name} ({codes.method}, space {codes.space}): "
                f"mean MSE {codes.errors.mean():.4g}{warned}")
