"""Layer data for saved results: a traversal as one 4D layer, eigen maps as diverging overlays.

Every layer sits on its source grid (the napari ``scale``/``translate`` of
:func:`~napari_latent.gui.layers.grid_layer_data`), so it overlays the source volume voxel
for voxel. The result's facts go into ``layer.metadata["napari_latent"]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..analysis.eigen import EigenResult
from ..latent.traversal import Traversal
from ..volumes.grid import Grid
from .layers import LayerDataTuple, grid_layer_data

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
    values = np.abs(np.asarray(data, dtype=np.float32))
    if mask is not None and mask.shape == values.shape and mask.any():
        values = values[mask]
    values = values[np.isfinite(values)]
    m = float(np.percentile(values, percentile)) if values.size else 0.0
    if not m > 0:
        m = float(values.max()) if values.size and values.max() > 0 else 1.0
    return [-m, m]


def _gray_limits(data: np.ndarray) -> list[float]:
    sample = data[:: max(1, data.shape[0] // 8)]
    lo, hi = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
    if hi <= lo:
        lo, hi = float(data.min()), float(data.max()) + 1e-6
    return [lo, hi]


def evenly_spaced(values: np.ndarray) -> bool:
    """True when ``values`` (2 or more) are evenly spaced and increasing."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return False
    steps = np.diff(values)
    return bool(steps[0] > 0 and np.allclose(steps, steps[0], rtol=1e-6, atol=1e-9))


def traversal_layer_data(traversal: Traversal, name: str | None = None, path: str | None = None) -> LayerDataTuple:
    """One 4D image layer for a traversal: the alpha axis first, labelled ``"alpha"``.

    When the alphas are evenly spaced the alpha axis gets ``scale = step`` and
    ``translate = alphas[0]``, so napari's slider shows alpha values; the spatial axes have
    the source grid's scale and translate. ``metadata["napari_latent"]`` holds the alphas,
    the direction, the model and the whole sidecar (the writer writes it back).
    """
    direction = traversal.direction.name if traversal.direction is not None else "direction"
    name = name or f"traversal {direction}"
    facts = traversal.to_json()
    extra = {"kind": "traversal", "path": path or traversal.info.get("path"), "alphas": facts["alphas"],
             "latent_alphas": facts["latent_alphas"], "units": traversal.units,
             "baseline_index": int(traversal.baseline_index), "direction": facts["direction"],
             "model": traversal.model_name, "model_fingerprint": traversal.model_fingerprint,
             "space": traversal.space, "axis_labels": list(TRAVERSAL_AXIS_LABELS), "sidecar": facts}
    data, kwargs, kind = grid_layer_data(traversal.images, traversal.grid, name, leading=1, extra=extra,
                                         axis_labels=TRAVERSAL_AXIS_LABELS, colormap="gray",
                                         contrast_limits=_gray_limits(traversal.images))
    alphas = np.asarray(traversal.alphas, dtype=np.float64)
    if evenly_spaced(alphas):
        kwargs["scale"] = (float(alphas[1] - alphas[0]), *kwargs["scale"][1:])
        kwargs["translate"] = (float(alphas[0]), *kwargs["translate"][1:])
    return data, kwargs, kind


def map_layer_data(array: np.ndarray, grid: Grid, name: str, extra: dict[str, Any], visible: bool = True,
                   mask: np.ndarray | None = None) -> LayerDataTuple:
    """A diverging overlay of a signed map on its grid (symmetric limits, partial opacity)."""
    return grid_layer_data(array, grid, name, extra=extra, colormap=diverging_colormap(),
                           contrast_limits=symmetric_limits(array, mask), opacity=OVERLAY_OPACITY,
                           blending="translucent", visible=visible)


def eigen_layer_data(result: EigenResult, prefix: str = "eigen", path: str | None = None,
                     differences: bool = True) -> list[LayerDataTuple]:
    """Component maps (and difference maps) of an eigen result as diverging overlays.

    Only the component most correlated with alpha is visible at first (the paper's
    "dynamic" component: 2 with the paper's centring, 1 with ``center="baseline"``); the
    others and the difference maps are added hidden.
    """
    correlation = np.nan_to_num(np.abs(result.alpha_correlation()), nan=-1.0)
    shown = int(np.argmax(correlation)) if len(correlation) else -1
    common = {"alphas": [float(a) for a in result.alphas], "units": result.units, "center": result.center,
              "baseline_index": int(result.baseline_index), "path": path, "source": result.source_info}
    layers: list[LayerDataTuple] = []
    for k in range(result.n_components):
        extra = {**common, "kind": "eigen_component", "component": k + 1,
                 "eigenvalue": float(result.eigenvalues[k]),
                 "explained_variance_ratio": float(result.explained_variance_ratio[k]),
                 "alpha_correlation": None if correlation[k] < 0 else float(result.alpha_correlation()[k]),
                 "eigenvector": [float(v) for v in result.eigenvectors[:, k]]}
        layers.append(map_layer_data(result.component_map(k), result.grid, f"{prefix} component {k + 1}", extra,
                                     visible=k == shown, mask=result.mask))
    if differences and result.differences is not None:
        for index, data in zip(result.difference_indices, result.differences):
            alpha = float(result.alphas[int(index)])
            extra = {**common, "kind": "eigen_difference", "alpha_index": int(index), "alpha": alpha}
            layers.append(map_layer_data(data, result.grid, f"{prefix} difference alpha {alpha:g}", extra,
                                         visible=False, mask=result.mask))
    return layers
