"""Scripted napari sessions: :func:`show` opens (or fills) a viewer with volumes and results.

    import napari_latent.gui as nlg
    viewer = nlg.show("sub-001.nii.gz", model="demo", traversal="out/trav.zarr",
                      eigen="out/eigen", return_viewer=True)

Every layer lands on its source grid (scale and translate of the source volume); the model
and the results go into the viewer's :class:`~napari_latent.gui.session.Session`, so the
docked widgets start from them. A traversal store (``*.zarr``, or a
:class:`~napari_latent.latent.traversal.StoredTraversal`) is shown lazily: napari reads
only the planes it shows, so a CT-sized traversal opens at once and takes little memory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..analysis.eigen import EigenResult
from ..analysis.result_files import identify, load_result
from ..errors import UserInputError
from ..latent.codes import LatentCodes
from ..latent.directions import Directions
from ..latent.traversal import StoredTraversal, Traversal
from ..volumes.io import Volume
from .layers import META_KEY, volume_layer_data
from .layout import arrange, fit_view
from .reader import _contrast_limits, attach_to_session, codes_layer_name, layers_for, traversal_name
from .result_layers import TRAVERSAL_AXIS_LABELS, eigen_layer_data, traversal_layer_data

PLUGIN = "napari-latent"

PathLike = str | os.PathLike[str]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str | os.PathLike | Volume | Traversal | StoredTraversal | EigenResult | LatentCodes
                  | Directions):
        return [value]
    return list(value)


def plugin_widget_names() -> list[str]:
    """Display names of napari-latent's dock widgets, in the manifest's (workflow) order."""
    from npe2 import PluginManager

    manifest = PluginManager.instance().get_manifest(PLUGIN)
    return [widget.display_name for widget in (manifest.contributions.widgets or [])]


def dock_widgets(viewer: Any, names: Sequence[str] | None = None) -> dict[str, Any]:
    """Dock napari-latent's widgets (all by default) as tabs; returns name -> widget."""
    names = plugin_widget_names() if names is None else list(names)
    docked: dict[str, Any] = {}
    for i, name in enumerate(names):
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=i > 0)
        docked[name] = widget
    arrange(viewer)
    return docked


def _add(viewer: Any, layer_data: tuple[Any, dict[str, Any], str]) -> Any:
    from napari.layers import Layer

    data, kwargs, kind = layer_data
    return viewer.add_layer(Layer.create(data, kwargs, kind))


def _volume_layers(viewer: Any, item: Any) -> list[Any]:
    if isinstance(item, Volume):
        return [_add(viewer, volume_layer_data(item, colormap="gray", contrast_limits=_contrast_limits(item.data)))]
    found, obj = load_result(item)
    if found.kind not in ("volume", "eigen_map"):
        raise UserInputError(f"{item}: a {found.kind} file, not a volume; pass it as {found.kind}=")
    return [_add(viewer, data) for data in layers_for(found, obj)]


def _load_as(item: Any, kind: str, cls: type | tuple[type, ...]) -> tuple[Any, str | None]:
    if isinstance(item, cls):
        return item, None
    found = identify(item)
    if found.kind != kind:
        raise UserInputError(f"{item}: a {found.kind} file, not a {kind}")
    return load_result(found)[1], str(found.path)


def show(volume: Any = None, model: Any = None, traversal: Any = None, eigen: Any = None, viewer: Any = None,
         return_viewer: bool = False, *, codes: Any = None, directions: Any = None,
         widgets: bool | Sequence[str] = True) -> Any:
    """Open napari (or fill a viewer) with volumes, a model and results.

    Parameters
    ----------
    volume : path, Volume, or a sequence of them, optional
        NIfTI volumes (or 4D series) to show, correctly oriented on their grids.
    model : path, "demo" or GenerativeModel, optional
        Becomes the session's model (set first: a new model clears earlier results).
    traversal : path, StoredTraversal, Traversal, or a sequence of them, optional
        Saved traversals (a store ``OUT.zarr``, or ``OUT.nii.gz`` with its ``OUT.json``) or
        objects: one 4D layer each, the alpha axis first and labelled ``"alpha"``; the last
        is ``session.traversal``. A store is shown lazily (its frames are read plane by
        plane as napari shows them); a NIfTI traversal is read whole.
    eigen : path, EigenResult, or a sequence of them, optional
        Eigen result folders (or their ``eigen.json``) or objects: component and difference
        maps as diverging overlays; the last is ``session.eigen``.
    viewer : napari.Viewer, optional
        The viewer to fill; a new one is created when omitted.
    return_viewer : bool
        Return the viewer instead of blocking in ``napari.run()``.
    codes : path or LatentCodes, optional
        Codes of a shown volume (``session.last_codes``), for the Explore and
        Traverse widgets.
    directions : path or Directions, optional
        ``session.directions``.
    widgets : bool or sequence of str
        Dock napari-latent's widgets (all, as tabs, in workflow order), none, or those named
        (display names such as ``"6 Explore"``).

    Returns
    -------
    napari.Viewer or None
        The viewer when ``return_viewer`` is true or ``viewer`` was given; None after
        ``napari.run()`` returns.

    Raises
    ------
    UserInputError
        A file that is missing, broken or of the wrong kind (nothing is opened then when
        the viewer was created here).
    """
    import napari

    # Load everything first, so that a bad file fails before any window opens.
    from ..models.base import GenerativeModel
    from ..models.checkpoint import load_model

    model_obj = None
    model_source = ""
    if model is not None:
        if isinstance(model, GenerativeModel):
            model_obj, model_source = model, getattr(model, "source_path", None) or "script"
        else:
            model_obj, model_source = load_model(model), str(model)
    traversals = [_load_as(t, "traversal", (Traversal, StoredTraversal)) for t in _as_list(traversal)]
    eigens = [_load_as(e, "eigen", EigenResult) for e in _as_list(eigen)]
    codes_obj = _load_as(codes, "codes", LatentCodes) if codes is not None else None
    directions_obj = _load_as(directions, "directions", Directions) if directions is not None else None
    volumes = _as_list(volume)
    for item in volumes:
        if not isinstance(item, Volume):
            found = identify(item)
            if found.kind not in ("volume", "eigen_map"):
                raise UserInputError(f"{item}: a {found.kind} file, not a volume; pass it as {found.kind}=")

    created = viewer is None
    if created:
        viewer = napari.Viewer()
    if model_obj is not None:
        attach_to_session(viewer, "model", model_obj, None)
        from .session import get_session

        get_session(viewer).model_source = str(model_source)
    for item in volumes:
        _volume_layers(viewer, item)
    for obj, path in traversals:
        _add(viewer, traversal_layer_data(obj, name=traversal_name(path) if path else None, path=path))
        attach_to_session(viewer, "traversal", obj, path)
    if traversals:
        labels = list(viewer.dims.axis_labels)
        offset = len(labels) - len(TRAVERSAL_AXIS_LABELS)
        if offset >= 0:
            labels[offset] = TRAVERSAL_AXIS_LABELS[0]
            viewer.dims.axis_labels = tuple(labels)
    for obj, path in eigens:
        prefix = Path(path).name if path else "eigen"
        for data in eigen_layer_data(obj, prefix=prefix, path=path):
            _add(viewer, data)
        attach_to_session(viewer, "eigen", obj, path)
    if codes_obj is not None:
        obj, path = codes_obj
        name = codes_layer_name(obj, path)
        if name not in viewer.layers:  # codes saved under another name: the first volume on their grid
            grid = obj.geometry.grid.to_json()
            name = next((layer.name for layer in viewer.layers if getattr(layer, "ndim", 0) == 3
                         and (layer.metadata.get(META_KEY) or {}).get("grid") == grid), name)
        attach_to_session(viewer, "codes", obj, path, layer_name=name)
    if directions_obj is not None:
        attach_to_session(viewer, "directions", directions_obj[0], directions_obj[1])
    if widgets:
        dock_widgets(viewer, None if widgets is True else list(widgets))  # type: ignore[arg-type]
    fit_view(viewer)  # the whole slice in view, now that every layer is there
    if created and not return_viewer:
        napari.run()
        return None
    return viewer
