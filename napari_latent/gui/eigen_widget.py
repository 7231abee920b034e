"""The Eigen widget: eigencomponents of a traversal (the MS paper's analysis) as overlays on the anatomy.

The traversal is the session's (``session.traversal``, from the Traverse widget) or any
4D traversal layer (one the Traverse widget added, or a saved traversal opened with the
reader). A traversal in a store (``*.zarr``: the Traverse widget's, or one opened from a
file) is analysed by streaming its chunk-aligned slabs
(:func:`~napari_latent.analysis.eigen.iter_eigencomponents` on the
:class:`~napari_latent.latent.traversal.StoredTraversal`), never loaded whole; only a
layer of in-memory data (a NIfTI traversal) is rebuilt as a
:class:`~napari_latent.latent.traversal.Traversal`. Component maps and the difference map
of the farthest alpha are added as diverging overlays (blue negative, transparent at zero,
red positive; symmetric contrast limits; partial opacity) on the traversal's grid, so they
sit on the anatomy; the :class:`~napari_latent.analysis.eigen.EigenResult` goes to
``session.eigen``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton, SpinBox

from ..analysis.eigen import NEAR_CONSTANT, EigenResult, iter_eigencomponents
from ..errors import UserInputError
from ..latent.traversal import StoredTraversal, Traversal, TraversalDirection
from ..progress import Operation, StopFlag
from ..volumes.slicing import SliceGeometry
from .invert_widget import add_or_update_layer
from .layers import META_KEY, LayerDataTuple, array_from_layer, layer_entry, layer_grid
from .layout import schedule_arrange
from .result_layers import eigen_layer_data
from .session import get_session
from .stores import collect_unshown, layer_store

SESSION_TRAVERSAL = "(session traversal)"
DEFAULT_MASK = "(baseline foreground)"
NO_TRAVERSAL = ("No traversal yet: traverse a volume in the Traverse widget first, or open a saved traversal "
                "(a .zarr store, or a .nii.gz with its .json sidecar).")
CENTERS = {"paper (covariance)": True, "baseline subtracted": "baseline", "uncentred": False}

#: Bytes of every alpha per slab read from a store (the library's default is 256 MiB; the GUI
#: shares the memory with napari: smaller slabs, more of them, each chunk still read once per pass).
SLAB_BYTES = 64 << 20

AnyTraversal = Traversal | StoredTraversal


def traversal_layers(viewer: Any) -> list[Any]:
    """The 4D traversal layers of a viewer (those carrying a traversal sidecar in their metadata)."""
    out = []
    for layer in viewer.layers:
        entry = layer_entry(layer)
        if entry.get("kind") == "traversal" and isinstance(entry.get("sidecar"), dict) and layer.ndim == 4:
            out.append(layer)
    return out


def traversal_from_layer(layer: Any) -> AnyTraversal:
    """The traversal a traversal layer shows: its store opened lazily, or rebuilt from in-memory data.

    A layer whose metadata names a store (``"store"``) gives the
    :class:`StoredTraversal` of that store (nothing is read but its facts). A layer of
    in-memory data gives a :class:`Traversal` (file order, true affine) rebuilt from it.

    Raises
    ------
    UserInputError
        When the store is gone or no longer matches the layer, when the layer's data no
        longer matches its recorded grid or alphas, or when the layer is lazy but names no
        store (it would have to be read whole).
    """
    entry = layer.metadata.get(META_KEY, {})
    sidecar = entry.get("sidecar") or {}
    store = layer_store(layer)
    if store is not None:
        stored = StoredTraversal.open(store)
        if tuple(stored.frames.shape) != tuple(layer.data.shape):
            raise UserInputError(f"layer {layer.name!r} no longer matches its store {store} "
                                 f"({tuple(layer.data.shape)} vs {tuple(stored.frames.shape)})")
        stored.info["layer"] = layer.name
        return stored
    if not isinstance(layer.data, np.ndarray):
        raise UserInputError(f"layer {layer.name!r} is not in memory and names no traversal store; write it into "
                             "a store (napari_latent.latent.traversal.store.write_store) and open that")
    spatial_scale, spatial_translate = tuple(layer.scale)[1:], tuple(layer.translate)[1:]
    try:
        images, grid = array_from_layer(layer.data, layer.metadata, spatial_scale, spatial_translate)
    except ValueError as exc:
        raise UserInputError(f"layer {layer.name!r}: {exc}") from None
    alphas = np.asarray(sidecar.get("alphas", []), dtype=np.float64)
    if images.ndim != 4 or len(alphas) != images.shape[0]:
        raise UserInputError(f"layer {layer.name!r} has {images.shape[0]} frames but {len(alphas)} alphas recorded")
    geometry = SliceGeometry.from_json(sidecar["geometry"]) if sidecar.get("geometry") else None
    direction = TraversalDirection.from_json(sidecar["direction"]) if sidecar.get("direction") else None
    return Traversal(images, alphas, grid, direction, sidecar.get("units", "latent"),
                     float(sidecar.get("alpha_scale", 1.0)), int(sidecar.get("baseline_index", -1)),
                     sidecar.get("model", ""), sidecar.get("model_fingerprint", ""), sidecar.get("space", ""),
                     geometry, sidecar.get("fill", "window"), sidecar.get("source", ""),
                     {**dict(sidecar.get("info") or {}), "layer": layer.name})


class EigenWidget(Container):
    """Eigencomponents of a traversal; adds component and difference overlays on the anatomy.

    Scriptable: ``widget.traversal.value = "(session traversal)"`` (or a layer name),
    ``widget.components.value = 5``, ``widget.center.value = "paper (covariance)"``,
    ``widget.run()``, ``widget.runner.wait()``; the result is in
    ``widget.session.eigen``.
    """

    def __init__(self, napari_viewer: Any) -> None:
        schedule_arrange(napari_viewer)  # tab this dock with ours, fit the camera
        from .runner import OperationRunner, ProgressPanel

        self.viewer = napari_viewer
        self.session = get_session(napari_viewer)
        self.status = Label(value="")
        self.traversal = ComboBox(label="traversal", choices=self._traversal_choices)
        self.mask = ComboBox(label="mask", choices=self._mask_choices)
        self.components = SpinBox(label="components", min=1, max=50, value=5)
        self.center = ComboBox(label="centring", choices=list(CENTERS), value="paper (covariance)")
        self.run_button = PushButton(text="Analyse")
        self.panel = ProgressPanel()
        self.runner = OperationRunner(self.panel, lambda busy: setattr(self.run_button, "enabled", not busy))
        super().__init__(widgets=[self.status, self.traversal, self.mask, self.components, self.center,
                                  self.run_button, self.panel])
        self.run_button.changed.connect(lambda: self.run())
        self.session.events.traversal.connect(self._on_traversal)
        self.session.events.model.connect(self._refresh)
        for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            event.connect(lambda _event: self._refresh())
        self._refresh()

    def _traversal_choices(self, _widget: Any = None) -> list[str]:
        names = [SESSION_TRAVERSAL] if isinstance(self.session.traversal, AnyTraversal) else []
        return names + [layer.name for layer in traversal_layers(self.viewer)]

    def _mask_choices(self, _widget: Any = None) -> list[str]:
        from napari.layers import Image, Labels

        names = [layer.name for layer in self.viewer.layers
                 if isinstance(layer, Image | Labels) and layer.ndim == 3 and not getattr(layer, "rgb", False)]
        return [DEFAULT_MASK, *names]

    def _refresh(self) -> None:
        self.traversal.reset_choices()
        self.mask.reset_choices()
        if not self.traversal.choices:
            self.status.value = NO_TRAVERSAL
        else:
            self.status.value = "Choose a traversal and the number of components, then analyse."

    def _on_traversal(self) -> None:
        self._refresh()
        if SESSION_TRAVERSAL in self.traversal.choices:
            self.traversal.value = SESSION_TRAVERSAL

    def chosen_traversal(self) -> AnyTraversal:
        """The traversal to analyse (the session's, or the chosen layer's: its store, or rebuilt from its data)."""
        choice = self.traversal.value
        if not choice:
            raise UserInputError(NO_TRAVERSAL)
        if choice == SESSION_TRAVERSAL:
            traversal = self.session.traversal
            if not isinstance(traversal, AnyTraversal):
                raise UserInputError(NO_TRAVERSAL)
            return traversal
        layers = [layer for layer in traversal_layers(self.viewer) if layer.name == choice]
        if not layers:
            raise UserInputError(f"the traversal layer {choice!r} is gone; choose another")
        return traversal_from_layer(layers[0])

    def _mask_source(self, traversal: AnyTraversal) -> tuple[str, Any, dict[str, Any], tuple[float, ...],
                                                              tuple[float, ...]] | None:
        """The chosen mask layer's parts (references: its data is read in the worker), or None."""
        choice = self.mask.value
        if not choice or choice == DEFAULT_MASK:
            return None
        layer = next((item for item in self.viewer.layers if item.name == choice), None)
        if layer is None:
            raise UserInputError(f"the mask layer {choice!r} is gone; choose another")
        traversal.grid.check_same(layer_grid(layer.data, layer.metadata, layer.scale, layer.translate),
                                  f"the mask layer {choice!r}")  # at once: the grid needs no voxels
        return choice, layer.data, layer.metadata, tuple(layer.scale), tuple(layer.translate)

    def run(self) -> None:
        """Run the eigen analysis in a background thread."""
        self.runner.start(self._make_operation, self._on_result, "Eigen analysis")

    def _make_operation(self, stop: StopFlag) -> Operation[tuple[EigenResult | None, list[LayerDataTuple] | None]]:
        traversal = self.chosen_traversal()
        mask_source = self._mask_source(traversal)
        self._traversal = traversal
        self._anatomy = self._anatomy_layer(traversal)
        center = CENTERS[str(self.center.value)]
        mask_note = "" if mask_source is None else \
            f"  # the mask was the layer {mask_source[0]!r}: pass mask=... here"
        self._script_lines = [f"eigen = nl.eigencomponents(traversal, n_components={int(self.components.value)}, "
                              f"center={center!r}, differences='extreme'){mask_note}"]
        prefix = f"{self._anatomy.name} eigen" if self._anatomy is not None else "eigen"
        self.session.stores.close_with(self.viewer)
        maps_store = self._maps_store = self.session.stores.new_path(f"{prefix} maps")
        return self._operation(traversal, mask_source, int(self.components.value), center, prefix, maps_store, stop)

    def _operation(self, traversal: AnyTraversal, mask_source: tuple[Any, ...] | None, components: int,
                   center: Any, prefix: str, maps_store: Path,
                   stop: StopFlag) -> Operation[tuple[EigenResult | None, list[LayerDataTuple] | None]]:
        """In the worker: the mask, the streamed analysis (a store is held: never collected meanwhile), the layers.

        The component maps go into ``maps_store`` (in the session folder) and are shown
        lazily from there (:func:`~napari_latent.gui.result_layers.eigen_layer_data`).
        """
        from .runner import followed_by

        store = traversal.path if isinstance(traversal, StoredTraversal) else None
        # a store's slabs of about SLAB_BYTES: napari and its layers share the memory with the analysis
        chunk = traversal.default_chunk(SLAB_BYTES) if isinstance(traversal, StoredTraversal) else None
        stores = self.session.stores
        try:
            with stores.hold(store):
                mask = None if mask_source is None else _mask_array(traversal, *mask_source)
                operation = iter_eigencomponents(traversal, mask=mask, n_components=components, center=center,
                                                 chunk=chunk, differences="extreme", stop=stop)
                result, layers = yield from followed_by(
                    operation, lambda result: None if result is None else
                    eigen_layer_data(result, prefix=prefix, maps_store=maps_store))
        except BaseException:
            stores.release(maps_store)  # nothing to show: the reservation ends, an empty session folder goes
            stores.release_if_empty()
            raise
        if layers is None:  # cancelled
            stores.release(maps_store)
            stores.release_if_empty()
        return result, layers

    def _anatomy_layer(self, traversal: AnyTraversal) -> Any:
        """The traversal's layer (when it came from one) or the session traversal's layer, to sit on."""
        name = traversal.info.get("layer")
        store = traversal.path.resolve() if isinstance(traversal, StoredTraversal) else None
        layers = traversal_layers(self.viewer)
        if name is None and store is not None:  # the session's store: the layer that shows it
            for layer in layers:
                shown = layer_store(layer)
                if shown is not None and shown.resolve() == store:
                    return layer
        for layer in layers:
            if name is None or layer.name == name:
                return layer
        return None

    def _on_result(self, finished: tuple[EigenResult | None, list[LayerDataTuple] | None]) -> Iterator[None]:
        """Add the component layers one per turn of the event loop; the status message at the end."""
        result, layers = finished
        if result is None or layers is None:
            return "Eigen analysis cancelled"
        try:
            for data, kwargs, kind in layers:
                add_or_update_layer(self.viewer, (data, kwargs, kind))
                yield
        finally:
            self.session.stores.release(self._maps_store)  # shown: collectable once nothing shows it
        self.session.eigen = result
        collect_unshown(self.viewer, self.session)  # the maps of an earlier run that these layers replaced
        self.session.script.record("eigen", self._script_lines, show={"eigen": "eigen"})
        corr = result.alpha_correlation()
        ratio = result.explained_variance_ratio
        flat = np.sum(result.eigenvectors, axis=0) ** 2 / len(result.alphas) > NEAR_CONSTANT

        def trend(k: int) -> str:
            if flat[k]:
                return " (flat)"
            return "" if corr[k] != corr[k] else f" (r {corr[k]:+.2f} with alpha)"

        parts = [f"{k + 1}: {100 * ratio[k]:.3g}%{trend(k)}" for k in range(min(3, result.n_components))]
        return f"{result.n_components} components over {result.n_voxels:,} voxels; " + ", ".join(parts)


def _mask_array(traversal: AnyTraversal, name: str, data: Any, metadata: dict[str, Any], scale: tuple[float, ...],
                translate: tuple[float, ...]) -> np.ndarray:
    """A mask layer's data in file order, on the traversal's grid, as booleans (above 0.5)."""
    try:
        array, grid = array_from_layer(data, metadata, scale, translate)
    except ValueError as exc:
        raise UserInputError(f"mask layer {name!r}: {exc}") from None
    traversal.grid.check_same(grid, f"the mask layer {name!r}")
    return array > 0.5
