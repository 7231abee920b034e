"""Layer data for saved results: a traversal as one 4D layer (lazy for a store), eigen maps as overlays.

Every layer sits on its source grid (the napari ``scale``/``translate`` of
:func:`~napari_latent.gui.layers.grid_layer_data`), so it overlays the source volume voxel
for voxel. The result's facts go into ``layer.metadata["napari_latent"]``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..analysis.eigen import EigenResult
from ..latent.traversal import StoredTraversal, Traversal, default_chunks
from ..volumes.grid import Grid
from ..volumes.orientation import display_geometry
from .layers import LayerDataTuple, grid_layer_data
from .map_store import open_volume_array, write_volumes

#: Axis labels of a traversal layer: the alpha axis first, then the display axes.
TRAVERSAL_AXIS_LABELS = ("alpha", "S", "P", "L")

#: Opacity of eigen map overlays.
OVERLAY_OPACITY = 0.7

DIVERGING_NAME = "napari-latent diverging"


def diverging_colormap() -> Any:
    """Blue for negative, transparent at zero, red for positive (a napari ``Colormap``).

    With symmetric contrast limits ``[-m, m]`` zero falls on the transparent middle, so an
    overlay shows the anatomy underneath wherever a map is (near) zero.
    """
    from napari.utils.colormaps import Colormap

    colors = np.array([[0.05, 0.25, 1.0, 1.0], [0.45, 0.65, 1.0, 0.6], [1.0, 1.0, 1.0, 0.0],
                       [1.0, 0.6, 0.35, 0.6], [1.0, 0.15, 0.05, 1.0]])
    return Colormap(colors, name=DIVERGING_NAME, controls=np.array([0.0, 0.25, 0.5, 0.75, 1.0]))


def symmetric_limits(data: np.ndarray, mask: np.ndarray | None = None, percentile: float = 99.5) -> list[float]:
    """``[-m, m]`` with ``m`` the ``percentile`` of ``|data|`` (inside ``mask``), never 0."""
    values = np.asarray(data)
    if mask is not None and mask.shape == values.shape and mask.any():
        values = values[mask]  # first: the absolute values of the masked voxels only
    values = np.abs(values.astype(np.float32, copy=False))
    values = values[np.isfinite(values)]
    m = float(np.percentile(values, percentile)) if values.size else 0.0
    if not m > 0:
        m = float(values.max()) if values.size and values.max() > 0 else 1.0
    return [-m, m]


#: Planes of a frame read to choose contrast limits (a sample: never the whole traversal).
SAMPLE_PLANES = 12


def display_frames(traversal: Traversal | StoredTraversal) -> Any:
    """The frames ``(A, S, P, L)`` in the display orientation, without reading them.

    A store's lazy dask array (:meth:`StoredTraversal.display_array`, whose chunks napari
    reads plane by plane), or a view of an in-memory traversal's images.
    """
    if isinstance(traversal, StoredTraversal):
        return traversal.display_array()
    return display_geometry(traversal.grid).to_display(traversal.images)


def _sample_planes(count: int, samples: int = SAMPLE_PLANES) -> slice:
    """Every ``count // samples``-th display plane, starting half a step in."""
    step = max(1, int(count) // max(1, samples))
    return slice(step // 2, None, step)


def _read(frames: Any, index: int, planes: slice) -> np.ndarray:
    """``frames[index, planes]`` as float32 numpy (only those planes are read from a lazy array)."""
    return np.asarray(frames[int(index), planes], dtype=np.float32)


def frame_limits(traversal: Traversal | StoredTraversal, frames: Any = None) -> list[float]:
    """Grey contrast limits (0.5 and 99.5 percentiles) of a sample of the baseline frame's planes."""
    frames = display_frames(traversal) if frames is None else frames
    sample = _read(frames, traversal.baseline_index, _sample_planes(frames.shape[1]))
    sample = sample[np.isfinite(sample)]
    if not sample.size:
        return [0.0, 1.0]
    lo, hi = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
    if hi <= lo:
        lo, hi = float(sample.min()), float(sample.max())
        hi = hi if hi > lo else lo + 1e-6
    return [lo, hi]


def difference_limits(traversal: Traversal | StoredTraversal, frames: Any = None,
                      percentile: float = 99.5) -> list[float]:
    """Symmetric limits of the difference overlay, from one or two frames.

    The first and last alphas (those that are not the baseline: the largest changes)
    minus the baseline, on a sample of display planes, within the voxels the model
    produced; :func:`symmetric_limits` of those.
    """
    frames = display_frames(traversal) if frames is None else frames
    planes = _sample_planes(frames.shape[1])
    baseline = int(traversal.baseline_index)
    ends = sorted({0, len(traversal) - 1} - {baseline})
    if not ends:
        return [-1.0, 1.0]
    base = _read(frames, baseline, planes)
    differences = np.stack([_read(frames, index, planes) - base for index in ends])
    mask = None
    if traversal.geometry is not None:
        mask = display_geometry(traversal.grid).to_display(traversal.modelled_mask())[planes]
        mask = np.broadcast_to(mask, differences.shape)
    return symmetric_limits(differences, mask, percentile)


def difference_data(frames: Any, baseline_index: int) -> Any:
    """Each frame minus the baseline frame, lazily: a dask expression read plane by plane by napari."""
    import dask.array as da

    if not isinstance(frames, da.Array):
        frames = da.from_array(frames, chunks=default_chunks(tuple(frames.shape[1:])))  # type: ignore[arg-type]
    baseline = int(baseline_index)
    return frames - frames[baseline:baseline + 1]


def evenly_spaced(values: np.ndarray) -> bool:
    """True when ``values`` (2 or more) are evenly spaced and increasing."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return False
    steps = np.diff(values)
    return bool(steps[0] > 0 and np.allclose(steps, steps[0], rtol=1e-6, atol=1e-9))


def traversal_layer_data(traversal: Traversal | StoredTraversal, name: str | None = None, path: str | None = None,
                         contrast_limits: list[float] | None = None) -> LayerDataTuple:
    """One 4D image layer for a traversal: the alpha axis first, labelled ``"alpha"``.

    A :class:`StoredTraversal` is shown lazily: the layer's data is the store's dask array
    (:meth:`StoredTraversal.display_array`), which napari reads one plane at a time, and
    napari's dask cache is off for it (``cache=False``: otherwise every chunk scrolled
    past stays in memory, up to a quarter of the RAM). An in-memory :class:`Traversal`
    is shown as it is (a display-ordered view of its images). Contrast limits are given
    (computed from a sample of the baseline frame's planes unless ``contrast_limits``),
    so napari never computes them from the 4D data.

    When the alphas are evenly spaced the alpha axis gets ``scale = step`` and
    ``translate = alphas[0]``, so napari's slider shows alpha values; the spatial axes have
    the source grid's scale and translate. ``metadata["napari_latent"]`` holds the alphas,
    the direction, the model, the whole sidecar (the writer writes it back) and, for a
    store, its path (``"store"``: the Eigen widget streams it, the GUI never deletes it
    while the layer shows it).
    """
    direction = traversal.direction.name if traversal.direction is not None else "direction"
    name = name or f"traversal {direction}"
    facts = traversal.to_json()
    store = str(traversal.path) if isinstance(traversal, StoredTraversal) else None
    extra = {"kind": "traversal", "path": path or traversal.info.get("path"), "store": store,
             "alphas": facts["alphas"], "latent_alphas": facts["latent_alphas"], "units": traversal.units,
             "baseline_index": int(traversal.baseline_index), "direction": facts["direction"],
             "model": traversal.model_name, "model_fingerprint": traversal.model_fingerprint,
             "space": traversal.space, "axis_labels": list(TRAVERSAL_AXIS_LABELS), "sidecar": facts}
    frames = display_frames(traversal)
    limits = list(contrast_limits) if contrast_limits is not None else frame_limits(traversal, frames)
    data, kwargs, kind = grid_layer_data(frames, traversal.grid, name, leading=1, extra=extra, displayed=True,
                                         axis_labels=TRAVERSAL_AXIS_LABELS, colormap="gray", contrast_limits=limits)
    if store is not None:
        kwargs["cache"] = False
    alphas = np.asarray(traversal.alphas, dtype=np.float64)
    if evenly_spaced(alphas):
        kwargs["scale"] = (float(alphas[1] - alphas[0]), *kwargs["scale"][1:])
        kwargs["translate"] = (float(alphas[0]), *kwargs["translate"][1:])
    return data, kwargs, kind


def difference_layer_data(traversal: Traversal | StoredTraversal, name: str, source_name: str,
                          frames: Any = None) -> LayerDataTuple:
    """The traversal's difference overlay: every frame minus the baseline, lazily, diverging colours.

    The data is a dask expression over the frames (:func:`difference_data`), so no
    difference volume is ever computed whole; the symmetric contrast limits come from one
    or two frames (:func:`difference_limits`). Place it with the traversal layer's
    ``scale`` and ``translate`` (the caller copies them).
    """
    frames = display_frames(traversal) if frames is None else frames
    direction = traversal.direction.name if traversal.direction is not None else "direction"
    extra = {"kind": "traversal_difference", "source_layer": source_name, "direction": direction,
             "alphas": [float(a) for a in traversal.alphas], "baseline_index": int(traversal.baseline_index),
             "store": str(traversal.path) if isinstance(traversal, StoredTraversal) else None}
    data, kwargs, kind = grid_layer_data(difference_data(frames, traversal.baseline_index), traversal.grid, name,
                                         leading=1, extra=extra, displayed=True, colormap=diverging_colormap(),
                                         contrast_limits=difference_limits(traversal, frames),
                                         opacity=OVERLAY_OPACITY, blending="translucent",
                                         axis_labels=TRAVERSAL_AXIS_LABELS, cache=False)
    return data, kwargs, kind


def map_layer_data(array: Any, grid: Grid, name: str, extra: dict[str, Any], visible: bool = True,
                   mask: np.ndarray | None = None, contrast_limits: list[float] | None = None,
                   displayed: bool = False) -> LayerDataTuple:
    """A diverging overlay of a signed map on its grid (symmetric limits, partial opacity).

    ``displayed``: the array is already display-ordered (a lazy array, used as it is; give
    ``contrast_limits`` then, or they are computed from it).
    """
    limits = symmetric_limits(array, mask) if contrast_limits is None else list(contrast_limits)
    kwargs: dict[str, Any] = {"cache": False} if displayed else {}
    return grid_layer_data(array, grid, name, extra=extra, colormap=diverging_colormap(), contrast_limits=limits,
                           opacity=OVERLAY_OPACITY, blending="translucent", visible=visible, displayed=displayed,
                           **kwargs)


def eigen_layer_data(result: EigenResult, prefix: str = "eigen", path: str | None = None,
                     differences: bool = True, maps_store: str | os.PathLike[str] | None = None
                     ) -> list[LayerDataTuple]:
    """Component maps (and difference maps) of an eigen result as diverging overlays.

    Only the component most correlated with alpha is visible at first (the paper's
    "dynamic" component: 2 with the paper's centring, 1 with ``center="baseline"``); the
    others and the difference maps are added hidden.

    With ``maps_store`` (a new ``*.zarr`` folder) the component maps are written there one
    at a time (:func:`~napari_latent.gui.map_store.write_volumes`) and shown lazily from it
    (``metadata["napari_latent"]["store"]``), so they take no memory; their contrast limits
    come from the components at the mask's voxels (the same as from the maps). Otherwise
    each map is one volume in memory. The difference maps are the result's own arrays.
    """
    correlation = np.nan_to_num(np.abs(result.alpha_correlation()), nan=-1.0)
    shown = int(np.argmax(correlation)) if len(correlation) else -1
    common = {"alphas": [float(a) for a in result.alphas], "units": result.units, "center": result.center,
              "baseline_index": int(result.baseline_index), "path": path, "source": result.source_info}
    names = [f"component_{k + 1}" for k in range(result.n_components)]
    store = None
    if maps_store is not None:
        store = write_volumes(maps_store, result.grid,
                              ((name, result.component_map(k)) for k, name in enumerate(names)))
    layers: list[LayerDataTuple] = []
    for k in range(result.n_components):
        extra = {**common, "kind": "eigen_component", "component": k + 1,
                 "eigenvalue": float(result.eigenvalues[k]),
                 "explained_variance_ratio": float(result.explained_variance_ratio[k]),
                 "alpha_correlation": None if correlation[k] < 0 else float(result.alpha_correlation()[k]),
                 "eigenvector": [float(v) for v in result.eigenvectors[:, k]]}
        name = f"{prefix} component {k + 1}"
        if store is None:
            layers.append(map_layer_data(result.component_map(k), result.grid, name, extra, visible=k == shown,
                                         mask=result.mask))
        else:
            layers.append(map_layer_data(open_volume_array(store, names[k]), result.grid, name,
                                         {**extra, "store": str(store)}, visible=k == shown, displayed=True,
                                         contrast_limits=symmetric_limits(result.projections[:, k])))
    if differences and result.differences is not None:
        display = display_geometry(result.grid)
        for index, data in zip(result.difference_indices, result.differences):
            alpha = float(result.alphas[int(index)])
            extra = {**common, "kind": "eigen_difference", "alpha_index": int(index), "alpha": alpha}
            name = f"{prefix} difference alpha {alpha:g}"
            if isinstance(data, np.ndarray):
                layers.append(map_layer_data(data, result.grid, name, extra, visible=False, mask=result.mask))
                continue
            # a store's difference (lazy): shown as it is read, limits from a sample of planes
            shown = data.display_array()
            planes = _sample_planes(shown.shape[0])
            limits = symmetric_limits(np.asarray(shown[planes]), display.to_display(result.mask)[planes])
            layers.append(map_layer_data(shown, result.grid, name, extra, visible=False, displayed=True,
                                         contrast_limits=limits))
    return layers
