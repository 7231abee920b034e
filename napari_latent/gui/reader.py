"""npe2 reader: NIfTI volumes (and 4D series) as correctly oriented napari layers."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..volumes.io import is_nifti_path, open_series, volume_name
from .layers import LayerDataTuple, grid_layer_data, volume_layer_data

PathOrPaths = str | os.PathLike[str] | list[str | os.PathLike[str]]


def get_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list[LayerDataTuple]] | None:
    """Return :func:`read_nifti` if every path is a NIfTI file name, else None."""
    paths = path if isinstance(path, list) else [path]
    if not paths or not all(is_nifti_path(p) for p in paths):
        return None
    return read_nifti


def _contrast_limits(data: np.ndarray) -> list[float]:
    sample = data[:: max(1, data.shape[0] // 32)] if data.ndim == 4 else data
    lo, hi = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
    if hi <= lo:
        lo, hi = float(data.min()), float(data.max()) + 1e-6
    return [lo, hi]


def read_nifti(path: PathOrPaths) -> list[LayerDataTuple]:
    """Read one or more NIfTI files into napari layer data.

    A 3D file gives one image layer; a 4D series gives one layer with the frame axis first.
    Errors (bad files) propagate as :class:`~napari_latent.errors.VolumeError` with a
    specific message, which napari shows as a notification.
    """
    paths = path if isinstance(path, list) else [path]
    layers: list[LayerDataTuple] = []
    for item in paths:
        frames, first = open_series(item)
        kwargs: dict[str, Any] = {"colormap": "gray", "contrast_limits": _contrast_limits(frames)}
        if frames.shape[0] == 1:
            layers.append(volume_layer_data(first, **kwargs))
        else:
            extra = {"kind": "series", "path": str(Path(item)), "header": first.header}
            layers.append(grid_layer_data(frames, first.grid, volume_name(item), leading=1, extra=extra,
                                          axis_labels=("frame", "S", "P", "L"), **kwargs))
    return layers
