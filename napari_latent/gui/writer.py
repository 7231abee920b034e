"""npe2 writer: an image layer as NIfTI on its source volume's grid, with the source affine.

A layer made by napari-latent keeps its source grid (affine and file shape) in
``layer.metadata["napari_latent"]`` (see :mod:`napari_latent.gui.layers`); the writer puts
the data back into the file's array order and writes it with that affine, so the file
overlays the source volume exactly in any NIfTI viewer. A layer without that metadata is
written with the affine implied by its napari ``scale`` and ``translate`` (display
orientation). A 4D layer (a traversal or series) is written as a 4D NIfTI with the leading
axis last, one frame at a time: a lazy layer (a traversal store's dask array, or its
difference overlay) is read frame by frame and never whole. A traversal's sidecar ``.json``
is written beside it, so the file reopens as a traversal. Writes are atomic (temporary
file, then rename).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserInputError
from ..latent.traversal import NiftiFramesWriter, sidecar_path
from ..volumes.io import is_nifti_path, save_volume
from ..volumes.orientation import display_geometry
from .layers import META_KEY, layer_grid, volume_from_layer


def write_image(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write one image layer as NIfTI (the npe2 single-layer writer).

    Parameters
    ----------
    path : str
        Output file ending in ``.nii`` or ``.nii.gz``.
    data : array-like
        The layer's data (3D, or 4D with one leading non-spatial axis; a lazy 4D array is
        read one frame at a time).
    meta : dict
        The layer's state (``metadata``, ``scale``, ``translate``, ``name``, ...).

    Returns
    -------
    list of str
        The written files (the NIfTI file, and a traversal's sidecar).

    Raises
    ------
    UserInputError
        A path that is not NIfTI, a layer that is not 3D or 4D, data that does not fit
        the grid recorded in the metadata, or non-finite voxels.
    """
    target = Path(path)
    if not is_nifti_path(target):
        raise UserInputError(f"{target}: a NIfTI file name (.nii or .nii.gz) is needed")
    metadata = dict(meta.get("metadata") or {})
    scale, translate = meta.get("scale"), meta.get("translate")
    if np.ndim(data) == 3:
        array = np.asarray(data)
        try:
            volume = volume_from_layer(array, metadata, scale, translate, str(meta.get("name") or "layer"))
        except ValueError as exc:
            raise UserInputError(f"{target}: {exc}") from exc
        if not np.all(np.isfinite(volume.data)):
            raise UserInputError(f"{target}: the layer holds NaN or infinite voxels")
        save_volume(volume, target, description=f"napari-latent layer {meta.get('name', '')}"[:79])
        return [str(target)]
    if np.ndim(data) == 4:
        return _write_frames(target, data, meta, metadata)
    raise UserInputError(f"{target}: only 3D or 4D image layers can be written as NIfTI, got {np.ndim(data)}D data")


def _write_frames(target: Path, data: Any, meta: dict[str, Any], metadata: dict[str, Any]) -> list[str]:
    """A 4D layer as a 4D NIfTI, one frame in memory at a time (a lazy layer is read frame by frame)."""
    scale, translate = meta.get("scale"), meta.get("translate")
    grid = layer_grid(data, metadata, None if scale is None else list(scale)[-3:],
                      None if translate is None else list(translate)[-3:])
    geometry = display_geometry(grid)
    if tuple(data.shape[1:]) != geometry.reorientation.target_shape:
        raise UserInputError(f"{target}: layer data of shape {tuple(data.shape)} does not match its recorded grid "
                             f"{grid.shape}")
    entry = metadata.get(META_KEY) or {}
    sidecar = entry.get("sidecar")
    facts = sidecar if entry.get("kind") == "traversal" and isinstance(sidecar, dict) else None
    writer = NiftiFramesWriter(target, grid, int(data.shape[0]), f"napari-latent layer {meta.get('name', '')}")
    try:
        for index in range(int(data.shape[0])):
            frame = np.asarray(data[index], dtype=np.float32)
            if not np.all(np.isfinite(frame)):
                raise UserInputError(f"{target}: the layer holds NaN or infinite voxels")
            writer.write(index, geometry.from_display(frame))
    except BaseException:
        writer.abort()
        raise
    writer.commit(facts)
    return [str(target)] + ([str(sidecar_path(target))] if facts is not None else [])


def write_image_file(path: str | os.PathLike[str], layer: Any) -> list[str]:
    """Write a napari image layer object (for scripts): ``write_image`` on its data and state."""
    state = layer._get_state() if hasattr(layer, "_get_state") else {}
    state.setdefault("metadata", getattr(layer, "metadata", {}))
    return write_image(os.fspath(path), layer.data, state)
