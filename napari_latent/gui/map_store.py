"""Volumes the GUI shows lazily from a small Zarr store: the Eigen widget's component maps.

Five component maps of a CT-sized volume are 1.6 GB of float32; held as napari layers they
would set the GUI's memory. The Eigen widget writes them, one at a time, into a Zarr v3
group in the viewer's session folder (:mod:`napari_latent.gui.stores`) and shows each as a
dask array that napari reads plane by plane, like a traversal store. Each array is in the
display orientation (napari's ``(S, P, L)``), chunked like a traversal store's frames and
compressed (Blosc-LZ4: the zeros outside the mask take almost nothing). The store is
written in a hidden temporary folder and renamed into place when complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..latent.traversal.store import chunk_codec, default_chunks
from ..volumes.grid import Grid
from ..volumes.orientation import DISPLAY_CODES, display_geometry


def write_volumes(path: str | os.PathLike[str], grid: Grid, volumes: Iterable[tuple[str, np.ndarray]]) -> Path:
    """Write named volumes on ``grid`` (file order, one in memory at a time) as display-ordered arrays.

    Parameters
    ----------
    path : path-like
        The store folder to create (``*.zarr``; must not exist).
    grid : Grid
        The volumes' grid.
    volumes : iterable of (str, numpy.ndarray)
        Array names and volumes in the grid's file order; a generator keeps one in memory.

    Returns
    -------
    Path
        The store.
    """
    import zarr

    target = Path(path)
    if target.exists():
        raise FileExistsError(f"{target} exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    geometry = display_geometry(grid)
    shape = geometry.reorientation.target_shape
    chunks = default_chunks(shape)[1:]
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        for name, volume in volumes:
            array = group.create_array(name, shape=shape, dtype="float32", chunks=chunks, fill_value=0.0,
                                       compressors=chunk_codec(),
                                       dimension_names=DISPLAY_CODES)
            array[...] = geometry.to_display(np.asarray(volume, dtype=np.float32))
        group.attrs["napari_latent"] = {"kind": "volumes", "grid": grid.to_json(),
                                        "orientation": "".join(DISPLAY_CODES)}
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def open_volume_array(path: str | os.PathLike[str], name: str) -> Any:
    """One array of such a store as a lazy dask array (display orientation)."""
    import dask.array as da
    import zarr

    return da.from_zarr(zarr.open_array(str(Path(path) / name), mode="r"))
