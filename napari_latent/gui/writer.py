"""npe2 writer: an image layer as NIfTI on its source volume's grid, with the source affine.

A layer made by napari-latent keeps its source grid (affine and file shape) in
``layer.metadata["napari_latent"]`` (see :mod:`napari_latent.gui.layers`); the writer puts
the data back into the file's array order and writes it with that affine, so the file
overlays the source volume exactly in any NIfTI viewer. A layer without that metadata is
written with the affine implied by its napari ``scale`` and ``translate`` (display
orientation). A 4D layer (a traversal or series) is written as a 4D NIfTI with the leading
axis last; a traversal's sidecar ``.json`` is written beside it, so the file reopens as a
traversal. Writes are atomic (temporary file, then rename).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import write_json_atomic
from ..errors import UserInputError
from ..latent.traversal import sidecar_path
from ..volumes.io import is_nifti_path, save_volume
from .layers import META_KEY, array_from_layer, volume_from_layer


def write_image(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write one image layer as NIfTI (the npe2 single-layer writer).

    Parameters
    ----------
    path : str
        Output file ending in ``.nii`` or ``.nii.gz``.
    data : array-like
        The layer's data (3D, or 4D with one leading non-spatial axis).
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
    array = np.asarray(data)
    if array.ndim == 3:
        try:
            volume = volume_from_layer(array, metadata, scale, translate, str(meta.get("name") or "layer"))
        except ValueError as exc:
            raise UserInputError(f"{target}: {exc}") from exc
        if not np.all(np.isfinite(volume.data)):
            raise UserInputError(f"{target}: the layer holds NaN or infinite voxels")
        save_volume(volume, target, description=f"napari-latent layer {meta.get('name', '')}"[:79])
        return [str(target)]
    if array.ndim == 4:
        spatial_scale = None if scale is None else list(scale)[-3:]
        spatial_translate = None if translate is None else list(translate)[-3:]
        try:
            frames, grid = array_from_layer(array, metadata, spatial_scale, spatial_translate)
        except ValueError as exc:
            raise UserInputError(f"{target}: {exc}") from exc
        if not np.all(np.isfinite(frames)):
            raise UserInputError(f"{target}: the layer holds NaN or infinite voxels")
        save_volume(np.moveaxis(frames, 0, -1), target, like=grid,
                    description=f"napari-latent layer {meta.get('name', '')}"[:79])
        written = [str(target)]
        entry = metadata.get(META_KEY) or {}
        sidecar = entry.get("sidecar")
        if entry.get("kind") == "traversal" and isinstance(sidecar, dict):
            written.append(str(write_json_atomic(sidecar_path(target), sidecar)))
        return written
    raise UserInputError(f"{target}: only 3D or 4D image layers can be written as NIfTI, got {array.ndim}D data")


def write_image_file(path: str | os.PathLike[str], layer: Any) -> list[str]:
    """Write a napari image layer object (for scripts): ``write_image`` on its data and state."""
    state = layer._get_state() if hasattr(layer, "_get_state") else {}
    state.setdefault("metadata", getattr(layer, "metadata", {}))
    return write_image(os.fspath(path), layer.data, state)
