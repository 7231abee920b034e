"""Conversion between napari-latent results and napari layer data.

Every layer we create is in the display orientation (see
:mod:`napari_latent.volumes.orientation`) with the source grid's napari ``scale`` and
``translate``, so derived layers overlay their source exactly. The full source affine and
the file's array shape are kept in ``layer.metadata["napari_latent"]``, from which
:func:`volume_from_layer` restores the volume in its file order with its true affine.

This module builds plain layer-data tuples and does not import napari.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..volumes.grid import Grid
from ..volumes.io import Volume
from ..volumes.orientation import DISPLAY_CODES, display_geometry, grid_from_display

META_KEY = "napari_latent"

LayerDataTuple = tuple[Any, dict[str, Any], str]


def layer_entry(layer: Any) -> dict[str, Any]:
    """A layer's napari-latent facts (``layer.metadata["napari_latent"]``), or an empty dict."""
    metadata = getattr(layer, "metadata", None)
    entry = metadata.get(META_KEY) if isinstance(metadata, dict) else None
    return entry if isinstance(entry, dict) else {}


def grid_metadata(grid: Grid, **extra: Any) -> dict[str, Any]:
    """The metadata entry that ties a layer to its source grid."""
    geometry = display_geometry(grid)
    entry = {
        "grid": grid.to_json(),
        "display_orientation": "".join(DISPLAY_CODES),
        "source_orientation": "".join(grid.orientation),
        "oblique": grid.is_oblique,
        "obliquity_degrees": round(float(np.degrees(grid.obliquity)), 3),
        "scale": list(geometry.scale),
        "translate": list(geometry.translate),
    }
    entry.update(extra)
    return entry


def volume_layer_data(volume: Volume, name: str | None = None, **kwargs: Any) -> LayerDataTuple:
    """Layer data for a volume: display-oriented image with scale, translate and metadata.

    Parameters
    ----------
    volume : Volume
    name : str, optional
        Layer name (the volume's name by default).
    **kwargs
        More napari ``Image`` keyword arguments (colormap, contrast_limits, ...).
    """
    extra = {"kind": "volume", "path": str(volume.path) if volume.path else None, "header": volume.header}
    return grid_layer_data(volume.data, volume.grid, name or volume.name, extra=extra, **kwargs)


def grid_layer_data(array: Any, grid: Grid, name: str, leading: int = 0,
                    extra: dict[str, Any] | None = None, layer_type: str = "image", displayed: bool = False,
                    **kwargs: Any) -> LayerDataTuple:
    """Layer data for any array on a volume's grid (maps, masks, reconstructions).

    Parameters
    ----------
    array : numpy.ndarray or array-like
        Shape ``leading_axes + grid.shape`` in the source's file order; with ``displayed``,
        any array-like (a lazy dask array) already in the display orientation, which is
        used as it is (never read).
    grid : Grid
        The source grid.
    name : str
        Layer name.
    leading : int
        Number of leading non-spatial axes (1 for a traversal's alpha axis).
    extra : dict, optional
        More entries for the layer's ``metadata["napari_latent"]``.
    layer_type : str
        ``"image"`` or ``"labels"``.
    displayed : bool
        The array is already in the display orientation (``leading_axes + (S, P, L)``).
    **kwargs
        More napari layer keyword arguments.
    """
    geometry = display_geometry(grid)
    if displayed:
        if tuple(array.shape[leading:]) != geometry.reorientation.target_shape:
            raise ValueError(f"display-ordered array of shape {array.shape} does not fit grid {grid.shape} "
                             f"(display shape {geometry.reorientation.target_shape}) with {leading} leading axes")
        data = array
    else:
        array = np.asarray(array)
        if tuple(array.shape[leading:]) != grid.shape:
            raise ValueError(f"array of shape {array.shape} does not fit grid {grid.shape} with {leading} leading "
                             "axes")
        data = geometry.to_display(array)
    metadata = dict(kwargs.pop("metadata", {}) or {})
    metadata[META_KEY] = grid_metadata(grid, **(extra or {}))
    layer_kwargs: dict[str, Any] = {"name": name, "metadata": metadata, **geometry.layer_kwargs(leading),
                                    "units": ("dimensionless",) * leading + ("mm", "mm", "mm")}
    layer_kwargs.update(kwargs)
    return (data, layer_kwargs, layer_type)


def layer_grid(data: np.ndarray, metadata: dict[str, Any] | None, scale: Any = None,
               translate: Any = None) -> Grid:
    """The source grid of a layer: from our metadata, else from napari's scale/translate."""
    entry = (metadata or {}).get(META_KEY) or {}
    if "grid" in entry:
        return Grid.from_json(entry["grid"])
    shape = np.shape(data)[-3:]
    scale = tuple(scale) if scale is not None else (1.0,) * 3
    translate = tuple(translate) if translate is not None else (0.0,) * 3
    return grid_from_display(shape, scale, translate)  # type: ignore[arg-type]


def array_from_layer(data: np.ndarray, metadata: dict[str, Any] | None, scale: Any = None,
                     translate: Any = None, contiguous: bool = True) -> tuple[np.ndarray, Grid]:
    """A layer's data in the source's file order, with its grid.

    Leading non-spatial axes are kept. With ``contiguous=False`` the array is a view of
    the layer's data when it can be (no copy of a CT-sized volume). Raises ValueError when
    the layer's spatial shape does not match the grid recorded in its metadata.
    """
    grid = layer_grid(data, metadata, scale, translate)
    geometry = display_geometry(grid)
    array = np.asarray(data)
    if array.ndim < 3:
        raise ValueError(f"a 3D layer is needed, got data of shape {array.shape}")
    if tuple(array.shape[-3:]) != geometry.reorientation.target_shape:
        raise ValueError(f"layer data of shape {array.shape} does not match its recorded grid {grid.shape}")
    ordered = geometry.from_display(array)
    return (np.ascontiguousarray(ordered) if contiguous else ordered), grid


def volume_from_layer(data: np.ndarray, metadata: dict[str, Any] | None = None, scale: Any = None,
                      translate: Any = None, name: str = "layer", contiguous: bool = True) -> Volume:
    """Rebuild a :class:`Volume` (file order, true affine) from a 3D image layer's parts.

    ``contiguous=False`` keeps the data a view of the layer's (float32) data when it can.
    """
    array, grid = array_from_layer(data, metadata, scale, translate, contiguous)
    if array.ndim != 3:
        raise ValueError(f"a 3D image layer is needed, got data of shape {np.shape(data)}")
    entry = (metadata or {}).get(META_KEY) or {}
    path = entry.get("path")
    from pathlib import Path

    return Volume(array, np.asarray(grid.affine), Path(path) if path else None, dict(entry.get("header") or {}), name)
