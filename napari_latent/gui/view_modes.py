"""The numbers behind the Views widget: block-mean downsampling for 3D and its placement.

napari renders a volume in 3D from the whole 3D slice of a layer: for a lazy, CT-sized 4D
traversal (512 x 512 x 300 voxels per alpha) it would read a whole ~300 MB frame in the GUI
thread at every move of the alpha slider. The Views widget therefore shows in-memory,
block-mean downsampled copies: every display axis is cut into blocks of ``f`` voxels
(:func:`block_factors`: at most ``max_size`` blocks per axis) and each block becomes its
mean (:func:`block_mean`, a partial last block the mean of the voxels it has). Shown with
``scale * f`` and ``translate`` moved by ``(f - 1) / 2`` voxel spacings
(:func:`downsampled_placement`), each block sits at the centre of the voxels it averages, so
the copy overlays the source layer.

The arrays are read slab by slab (:func:`iter_block_mean`, a generator operation for the
background worker), never whole.

Only :func:`volume_colormap` imports napari (when called).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..progress import Operation, ProgressEvent, StopFlag, stop_requested

#: Bytes of a slab of planes read at a time while downsampling (one alpha).
SLAB_BYTES = 32 << 20

VOLUME_COLORMAP_NAME = "napari-latent diverging 3D"


def block_factors(shape: Sequence[int], max_size: int) -> tuple[int, ...]:
    """Block size per axis: the smallest ``f`` with ``ceil(n / f) <= max_size`` (1 for a small axis).

    Parameters
    ----------
    shape : sequence of int
        The spatial shape (the last three axes of a layer).
    max_size : int
        At most this many voxels along every axis after downsampling (the longest axis
        included).
    """
    limit = max(1, int(max_size))
    return tuple(max(1, math.ceil(int(n) / limit)) for n in shape)


def downsampled_shape(shape: Sequence[int], factors: Sequence[int]) -> tuple[int, ...]:
    """``ceil(n / f)`` per axis: the shape :func:`block_mean` gives."""
    return tuple(math.ceil(int(n) / int(f)) for n, f in zip(shape, factors, strict=True))


def block_mean(array: Any, factors: Sequence[int]) -> np.ndarray:
    """The mean of every block of ``factors`` voxels of the last ``len(factors)`` axes (float32).

    A partial block at the end of an axis is the mean of the voxels it has. Leading axes are
    kept. With all factors 1 the result is ``array`` as float32.
    """
    data = np.asarray(array, dtype=np.float32)
    factors = tuple(int(f) for f in factors)
    lead = data.ndim - len(factors)
    if lead < 0:
        raise ValueError(f"array of shape {data.shape} has fewer axes than factors {factors}")
    if all(f == 1 for f in factors):
        return data
    shape = data.shape[lead:]
    out_shape = downsampled_shape(shape, factors)
    padding = [(0, 0)] * lead + [(0, m * f - n) for n, m, f in zip(shape, out_shape, factors, strict=True)]
    if any(after for _, after in padding):
        data = np.pad(data, padding)  # zeros: they add nothing to the sums, the counts below exclude them
    blocks = data.reshape(*data.shape[:lead], *(v for m, f in zip(out_shape, factors, strict=True) for v in (m, f)))
    sums = blocks.sum(axis=tuple(lead + 2 * i + 1 for i in range(len(factors))), dtype=np.float64)
    counts = np.ones((), dtype=np.float64)
    for n, m, f in zip(shape, out_shape, factors, strict=True):
        axis_counts = np.full(m, f, dtype=np.float64)
        axis_counts[-1] = n - (m - 1) * f
        counts = np.multiply.outer(counts, axis_counts)
    return (sums / counts).astype(np.float32)


def downsampled_placement(scale: Sequence[float], translate: Sequence[float], factors: Sequence[int],
                          linear: np.ndarray | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """napari ``scale`` and ``translate`` of a block-mean copy, so that it overlays the original.

    Block ``k`` averages voxels ``k f .. k f + f - 1``, whose centre is voxel
    ``k f + (f - 1) / 2``: the copy's scale is ``scale * f`` and its translate moves by
    ``(f - 1) / 2`` voxel spacings. Axes before the last ``len(factors)`` (the alpha axis)
    keep their scale and translate.

    Parameters
    ----------
    scale, translate : sequence of float
        The original layer's (all axes).
    factors : sequence of int
        Block sizes of the last axes.
    linear : numpy.ndarray, optional
        The layer's rotation and shear of the last axes (a square matrix applied after the
        scale); the translate moves along the rotated axes then. Identity by default.
    """
    factors = np.asarray(factors, dtype=np.float64)
    count = len(factors)
    scale = np.asarray(scale, dtype=np.float64)
    translate = np.asarray(translate, dtype=np.float64)
    spatial = scale[-count:]
    shift = spatial * (factors - 1) / 2
    if linear is not None:
        shift = np.asarray(linear, dtype=np.float64)[-count:, -count:] @ shift
    new_scale, new_translate = scale.copy(), translate.copy()
    new_scale[-count:] = spatial * factors
    new_translate[-count:] = translate[-count:] + shift
    return tuple(float(v) for v in new_scale), tuple(float(v) for v in new_translate)


def slab_planes(shape: Sequence[int], factor: int, budget: int = SLAB_BYTES) -> int:
    """Planes per slab of a 3D ``shape``: a multiple of ``factor``, about ``budget`` bytes of float32."""
    plane = max(1, int(np.prod([int(n) for n in shape[1:]])) * 4)
    factor = max(1, int(factor))
    return max(factor, (budget // plane) // factor * factor)


def iter_block_mean(volumes: Sequence[Any], factors: Sequence[int], stop: StopFlag | None = None,
                    message: str = "downsampling", budget: int = SLAB_BYTES) -> Operation[np.ndarray | None]:
    """Block means of 3D arrays (numpy, zarr or dask), read slab by slab; ``(len(volumes), ...)`` float32.

    ``volumes`` is a sequence of same-shaped 3D arrays, e.g. the frames of a traversal
    (``frames[k]`` of a lazy 4D array: only a slab of planes of it is read at a time).
    Yields a progress event per slab; returns None when ``stop`` is requested.
    """
    factors = tuple(int(f) for f in factors)
    if not len(volumes):
        raise ValueError("nothing to downsample")
    shape = tuple(int(n) for n in volumes[0].shape)
    if len(shape) != 3 or len(factors) != 3:
        raise ValueError(f"3D volumes and 3 factors are needed, got shape {shape} and factors {factors}")
    out_shape = downsampled_shape(shape, factors)
    out = np.empty((len(volumes), *out_shape), dtype=np.float32)
    step = slab_planes(shape, factors[0], budget)
    slabs = range(0, shape[0], step)
    total = len(volumes) * len(slabs)
    done = 0
    for index, volume in enumerate(volumes):
        for first in slabs:
            if stop_requested(stop):
                return None
            last = min(shape[0], first + step)
            block = block_mean(np.asarray(volume[first:last], dtype=np.float32), factors)
            start = first // factors[0]
            out[index, start:start + block.shape[0]] = block
            done += 1
            yield ProgressEvent(done, total, message, stage="3d")
    return out


class FrameSequence(Sequence[Any]):
    """The frames ``array[k]`` of a 4D (lazy) array as a sequence, each indexed only when used."""

    def __init__(self, array: Any) -> None:
        self.array = array

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [_Frame(self.array, k) for k in range(*index.indices(len(self)))]
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"frame {index} of {len(self)}")
        return _Frame(self.array, index % len(self))


class _Frame:
    """One frame of a 4D array: ``frame[planes]`` reads ``array[index, planes]`` only."""

    def __init__(self, array: Any, index: int) -> None:
        self.array, self.index = array, index
        self.shape = tuple(array.shape[1:])

    def __getitem__(self, key: Any) -> Any:
        return self.array[(self.index, *(key if isinstance(key, tuple) else (key,)))]


def volume_colors() -> tuple[np.ndarray, np.ndarray]:
    """Colours (RGBA) and controls of the 3D diverging colormap.

    Blue below zero, red above; fully transparent for ``|value|`` below 40% of the
    contrast limit, then opacity rising with ``|value|``: 0.1 at half the limit, 0.8 at
    the limit. Lower than a 2D overlay's: in a volume rendering every sample along a ray
    adds its colour, and the 2D opacities colour the whole head and hide the anatomy.
    """
    colors = np.array([[0.1, 0.3, 1.0, 0.8], [0.25, 0.5, 1.0, 0.1], [0.45, 0.65, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0],
                       [1.0, 0.55, 0.35, 0.0], [1.0, 0.4, 0.15, 0.1], [1.0, 0.1, 0.05, 0.8]])
    controls = np.array([0.0, 0.25, 0.3, 0.5, 0.7, 0.75, 1.0])
    return colors, controls


def volume_colormap() -> Any:
    """The 3D diverging colormap (a napari ``Colormap``, see :func:`volume_colors`)."""
    from napari.utils.colormaps import Colormap

    colors, controls = volume_colors()
    return Colormap(colors, name=VOLUME_COLORMAP_NAME, controls=controls)
