"""Regions of interest from napari layers, and a voxel's values over alpha, for the Plots dock.

The measurements themselves are :func:`napari_latent.analysis.regions.region_curves`; this
module turns what the user painted or drew into the label volume it takes, on the
traversal's source grid (the file's array order):

* a **Labels** layer (:func:`labels_from_layer`): each label value is one region. The
  layer must sit voxel for voxel on the traversal's grid: its last three axes have the
  traversal's display shape and its data-to-world transform is the traversal layer's
  (``scale``/``translate``), which is what napari's *new labels* button gives when the
  traversal layer (or the anatomy) is selected. Such a layer made from the 4D traversal
  layer is 4D, with the alpha axis first: a voxel's label is then the largest label
  painted on it at any alpha (the union of what was painted on every alpha);
* a **Shapes** layer (:func:`labels_from_shapes`): every polygon, rectangle or ellipse is
  rasterised on the plane it was drawn on (the voxels whose centres lie inside or on its
  outline, as :meth:`napari.layers.Shapes.to_masks` does); shape ``n`` (in the layer's
  order, from 1) is region ``n``, a later shape wins where two overlap. Its vertices go
  through world coordinates (``layer.data_to_world``), so the shapes layer may have any
  scale; lines and paths enclose nothing and are left out;
* a mask / label NIfTI is passed to ``region_curves`` as a path (it checks the grid).

:func:`read_voxel` reads one voxel of a 4D traversal layer (display order, lazy or not) at
every alpha, with the eigen reconstruction there; :func:`draw_regions` and
:func:`draw_voxel` draw the Plots dock's figures (also usable on any matplotlib figure).

For scripts::

    labels = labels_from_layer(viewer.layers["Labels"], traversal)
    curves = nl.region_curves(traversal, labels, threshold=0.2, below=True, eigen=eigen)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UserInputError
from ..volumes.grid import Grid
from ..volumes.orientation import DisplayGeometry, display_geometry
from .layers import layer_entry, layer_grid

#: What the regions figure can show.
MEASURES = ("all", "mean intensity", "thresholded volume", "eigencomponents")
#: Shape types that enclose an area (rasterised); lines and paths do not.
AREA_SHAPES = ("rectangle", "polygon", "ellipse")
#: Vertices of the polygon an ellipse is rasterised as.
ELLIPSE_VERTICES = 72
#: Line styles of the eigencomponent curves (component 1, 2, ...); the colour is the region's.
COMPONENT_STYLES = ("-", "--", ":", "-.")


# -- layer geometry ----------------------------------------------------------------------------

def spatial_transform(layer: Any) -> tuple[np.ndarray, np.ndarray]:
    """The world position (last three world axes, mm) of a layer's last three data axes.

    Returns ``(matrix, origin)`` with ``world = matrix @ index + origin`` for a data index
    of the last three axes (any leading axes at 0).
    """
    ndim = int(layer.ndim)
    if ndim < 3:
        raise UserInputError(f"the layer {layer.name!r} is {ndim}D; a region needs a 3D (or 4D) layer on the "
                             "traversal's grid")
    zero = np.zeros(ndim)
    origin = np.asarray(layer.data_to_world(zero), dtype=np.float64)[-3:]
    columns = []
    for axis in range(ndim - 3, ndim):
        unit = zero.copy()
        unit[axis] = 1.0
        columns.append(np.asarray(layer.data_to_world(unit), dtype=np.float64)[-3:] - origin)
    return np.column_stack(columns), origin


def _describe(shape: tuple[int, ...], scale: Any, origin: Any) -> str:
    size = " x ".join(f"{float(v):.4g}" for v in scale)
    at = ", ".join(f"{float(v):.4g}" for v in origin)
    return f"{tuple(int(n) for n in shape)} voxels of {size} mm at ({at}) mm"


def check_layer_on_grid(layer: Any, grid: Grid) -> DisplayGeometry:
    """Raise a one-line :class:`UserInputError` unless ``layer`` sits voxel for voxel on ``grid``.

    The layer's last three axes must have the grid's display shape, and its data-to-world
    transform (scale, translate, rotation, affine) must be the grid's display geometry; a
    layer recording its own source grid (our layers) must record this one.

    Returns
    -------
    DisplayGeometry
        The grid's display geometry (to bring the layer's data into the file's order).
    """
    geometry = display_geometry(grid)
    expected_shape = geometry.reorientation.target_shape
    shape = tuple(int(n) for n in np.shape(layer.data)[-3:])
    matrix, origin = spatial_transform(layer)
    scale = np.linalg.norm(matrix, axis=0)
    tolerance = 1e-3 * float(min(geometry.scale))
    fits = (shape == tuple(expected_shape)
            and np.allclose(matrix, np.diag(geometry.scale), atol=tolerance)
            and np.allclose(origin, geometry.translate, atol=tolerance))
    if not fits:
        raise UserInputError(
            f"the layer {layer.name!r} is not on the traversal's grid: {_describe(shape, scale, origin)}, the "
            f"traversal {_describe(expected_shape, geometry.scale, geometry.translate)}; paint on a labels layer made "
            "from the traversal (select its layer, then napari's new-labels button)")
    entry = layer_entry(layer)
    if isinstance(entry, dict) and "grid" in entry:
        recorded = layer_grid(layer.data, layer.metadata)
        if recorded != grid:
            raise UserInputError(f"the layer {layer.name!r} records another source grid than the traversal's "
                                 f"(affine {np.round(recorded.affine, 3).tolist()} vs "
                                 f"{np.round(grid.affine, 3).tolist()})")
    return geometry


def labels_from_data(data: Any, geometry: DisplayGeometry) -> np.ndarray:
    """A display-ordered labels array (leading axes allowed) as an int32 label volume in the file's order.

    Leading axes (the alpha axis of a labels layer made from a traversal layer) are merged:
    a voxel's label is the largest one it has on any of them.
    """
    array = np.asarray(data)
    if array.ndim > 3:
        array = array.max(axis=tuple(range(array.ndim - 3)))
    if array.dtype == bool:
        array = array.astype(np.int32)
    if not np.issubdtype(array.dtype, np.integer):
        raise UserInputError("a labels layer of whole numbers is needed")
    return np.ascontiguousarray(geometry.from_display(array), dtype=np.int32)


def labels_from_layer(layer: Any, traversal: Any) -> np.ndarray:
    """The label volume (file order, int32) of a Labels or Shapes layer on a traversal's grid.

    Parameters
    ----------
    layer : napari.layers.Labels or napari.layers.Shapes
        A labels layer on the traversal's grid (3D, or 4D with the alpha axis first: the
        labels of every alpha are merged, the largest wins), or a shapes layer whose
        polygons, rectangles and ellipses were drawn on planes of the volume (shape ``n`` is
        label ``n``).
    traversal : Traversal or StoredTraversal
        The traversal to measure (its ``grid`` is used).

    Returns
    -------
    numpy.ndarray
        ``traversal.grid.shape`` int32 labels, 0 outside every region; pass it to
        :func:`~napari_latent.analysis.regions.region_curves`.

    Raises
    ------
    UserInputError
        A layer that is not on the traversal's grid (one line saying how), or of another type.
    """
    from napari.layers import Labels, Shapes

    if isinstance(layer, Shapes):
        polygons, _skipped = shape_polygons(layer, traversal.grid)
        return labels_from_shapes(polygons, traversal.grid)
    if isinstance(layer, Labels):
        geometry = check_layer_on_grid(layer, traversal.grid)
        return labels_from_data(layer.data, geometry)
    raise UserInputError(f"the layer {layer.name!r} is neither a Labels nor a Shapes layer")


# -- shapes --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ShapePolygon:
    """One shape in the traversal's display index coordinates.

    Attributes
    ----------
    label : int
        The region's label (the shape's number in its layer, from 1).
    axis : int
        The display axis the shape's plane is normal to.
    plane : int
        The plane's index along ``axis``.
    vertices : numpy.ndarray
        ``(n, 2)`` the outline in the plane's two other display axes (index coordinates).
    """

    label: int
    axis: int
    plane: int
    vertices: np.ndarray


def _ellipse_outline(corners: np.ndarray, count: int = ELLIPSE_VERTICES) -> np.ndarray:
    """The outline of the ellipse inscribed in a (possibly rotated) rectangle given by its 4 corners."""
    centre = corners.mean(axis=0)
    half_u = (corners[1] - corners[0]) / 2.0
    half_v = (corners[3] - corners[0]) / 2.0
    angles = np.linspace(0.0, 2.0 * np.pi, count, endpoint=False)
    return centre + np.cos(angles)[:, None] * half_u + np.sin(angles)[:, None] * half_v


def shape_polygons(layer: Any, grid: Grid) -> tuple[list[ShapePolygon], list[int]]:
    """The area shapes of a Shapes layer in the grid's display index coordinates (cheap: vertices only).

    Every vertex goes to world coordinates (``layer.data_to_world``: any scale, translate or
    leading alpha axis of the shapes layer) and then to the grid's display voxel indices. A
    shape must lie on one plane of the volume (one display axis constant), as shapes drawn
    on a 2D slice do.

    Returns
    -------
    polygons : list of ShapePolygon
    skipped : list of int
        The labels of lines and paths (they enclose no area).

    Raises
    ------
    UserInputError
        A 2D shapes layer, no shape at all, or a shape not on one plane.
    """
    if int(layer.ndim) < 3:
        raise UserInputError(f"the shapes layer {layer.name!r} is 2D; draw the shapes on a layer made while the "
                             "traversal is shown (select the traversal layer, then napari's new-shapes button)")
    if not len(layer.data):
        raise UserInputError(f"the shapes layer {layer.name!r} has no shape; draw a rectangle, polygon or ellipse")
    geometry = display_geometry(grid)
    scale, translate = np.asarray(geometry.scale), np.asarray(geometry.translate)
    polygons, skipped = [], []
    for number, (vertices, kind) in enumerate(zip(layer.data, layer.shape_type, strict=True), start=1):
        if kind not in AREA_SHAPES:
            skipped.append(number)
            continue
        world = np.array([np.asarray(layer.data_to_world(v), dtype=np.float64)[-3:] for v in np.asarray(vertices)])
        index = (world - translate) / scale
        spread = np.ptp(index, axis=0)
        flat = np.flatnonzero(spread < 1e-3)
        if len(flat) != 1:
            raise UserInputError(f"shape {number} of {layer.name!r} does not lie on one plane of the volume; draw "
                                 "the shapes on a 2D slice")
        axis = int(flat[0])
        others = [a for a in range(3) if a != axis]
        outline = index[:, others]
        if kind == "ellipse":
            outline = _ellipse_outline(outline)
        polygons.append(ShapePolygon(number, axis, int(np.rint(index[0, axis])), outline))
    if not polygons:
        raise UserInputError(f"the shapes layer {layer.name!r} has no rectangle, polygon or ellipse (lines and "
                             "paths enclose no region)")
    return polygons, skipped


def labels_from_shapes(polygons: list[ShapePolygon], grid: Grid) -> np.ndarray:
    """Rasterise shapes (:func:`shape_polygons`) into an int32 label volume in the grid's file order.

    A voxel is inside a shape when its centre lies inside or on the outline
    (:func:`skimage.draw.polygon2mask`, like napari's ``Shapes.to_masks``); later shapes
    overwrite earlier ones. Shapes on planes outside the volume select nothing.
    """
    from skimage.draw import polygon2mask

    geometry = display_geometry(grid)
    shape = geometry.reorientation.target_shape
    labels = np.zeros(shape, dtype=np.int32)
    for polygon in polygons:
        if not 0 <= polygon.plane < shape[polygon.axis]:
            continue
        plane = [slice(None)] * 3
        plane[polygon.axis] = polygon.plane  # type: ignore[call-overload]
        view = labels[tuple(plane)]
        view[polygon2mask(view.shape, polygon.vertices)] = polygon.label
    return np.ascontiguousarray(geometry.from_display(labels))


# -- one voxel over alpha ------------------------------------------------------------------------

@dataclass
class VoxelReading:
    """A voxel's values at every alpha of a traversal.

    Attributes
    ----------
    alphas : numpy.ndarray
        ``(A,)`` the traversal's alphas.
    values : numpy.ndarray
        ``(A,)`` the voxel's value at each alpha (float64).
    display_index : tuple of int
        The voxel in the layer's display order ``(S, P, L)``.
    source_index : tuple of int
        The voxel in the file's array order ``(i, j, k)``.
    position_mm : tuple of float
        The voxel centre's scanner position (RAS, mm) from the grid's affine.
    units : str
        Units of the alphas.
    reconstruction : numpy.ndarray or None
        ``(A,)`` the eigen analysis's reconstruction of the voxel from its K components
        (None without an analysis of this traversal, or outside its mask).
    components : int
        K, the components of the reconstruction.
    """

    alphas: np.ndarray
    values: np.ndarray
    display_index: tuple[int, int, int]
    source_index: tuple[int, int, int]
    position_mm: tuple[float, float, float]
    units: str = "latent"
    reconstruction: np.ndarray | None = None
    components: int = 0


def source_index(grid: Grid, display_index: tuple[int, int, int]) -> tuple[int, int, int]:
    """The file-order index of a display-ordered voxel index of ``grid``."""
    region = tuple(slice(int(i), int(i) + 1) for i in display_index)
    source = display_geometry(grid).reorientation.source_region(region)  # type: ignore[arg-type]
    return tuple(int(part.start) for part in source)  # type: ignore[return-value]


def eigen_reconstruction(eigen: Any, values: np.ndarray, index: tuple[int, int, int]) -> np.ndarray | None:
    """A voxel's values over alpha as the eigen analysis reconstructs them from its K components.

    With the paper's centring ``M - means = P V^T``, so the reconstruction is
    ``means + sum_k p_k v_k``; with ``center="baseline"`` it is ``value(baseline) + sum_k p_k v_k``;
    uncentred ``sum_k p_k v_k``. With all A components it is exact (up to float32). None
    outside the analysis's mask.
    """
    if not bool(eigen.mask[index]):
        return None
    region = tuple(slice(i, i + 1) for i in index)
    weights = np.array([float(eigen.component_region(k, region).ravel()[0]) for k in range(eigen.n_components)])
    shape = np.asarray(eigen.eigenvectors, dtype=np.float64) @ weights
    if eigen.center == "baseline":
        return float(values[int(eigen.baseline_index)]) + shape
    if eigen.center:
        return np.asarray(eigen.means, dtype=np.float64) + shape
    return shape


def read_voxel(data: Any, display_index: tuple[int, int, int], alphas: np.ndarray, grid: Grid,
               units: str = "latent", eigen: Any = None) -> VoxelReading:
    """Read one voxel of a 4D display-ordered traversal array at every alpha (one chunk per alpha of a store).

    Parameters
    ----------
    data : array-like
        ``(A, S, P, L)``: a traversal layer's data (numpy, or the store's lazy dask array).
    display_index : tuple of int
        The voxel ``(s, p, l)``.
    alphas : numpy.ndarray
        The traversal's alphas.
    grid : Grid
        The traversal's source grid.
    units : str
        Units of the alphas.
    eigen : EigenResult, optional
        Adds the reconstruction when it analysed this traversal (same grid and alphas).
    """
    s, p, l_ = (int(i) for i in display_index)
    values = np.asarray(data[:, s, p, l_], dtype=np.float64).reshape(-1)
    index = source_index(grid, (s, p, l_))
    position = np.asarray(grid.affine, dtype=np.float64) @ np.array([*index, 1.0])
    reading = VoxelReading(np.asarray(alphas, dtype=np.float64), values, (s, p, l_), index,
                           tuple(float(v) for v in position[:3]), units)  # type: ignore[arg-type]
    if (eigen is not None and eigen.grid == grid and len(eigen.alphas) == len(values)
            and np.allclose(eigen.alphas, alphas)):
        reading.reconstruction = eigen_reconstruction(eigen, values, index)
        reading.components = int(eigen.n_components)
    return reading


# -- figures ------------------------------------------------------------------------------------

def _panels(curves: Any, measure: str, eigen: Any) -> list[str]:
    has_components = curves.component_means is not None and eigen is not None
    if measure == "mean intensity":
        return ["mean_intensity"]
    if measure == "thresholded volume":
        return ["threshold_mm3"] if curves.threshold_mm3 is not None else []
    if measure == "eigencomponents":
        return ["components"] if has_components else []
    panels = ["mean_intensity"]
    if curves.threshold_mm3 is not None:
        panels.append("threshold_mm3")
    if has_components:
        panels.append("components")
    return panels


def component_curves(curves: Any, eigen: Any) -> np.ndarray:
    """``(R, K, A)``: each region's contribution of each eigencomponent over alpha.

    The component maps satisfy ``M_c = sum_k map_k v_k^T`` (:mod:`napari_latent.analysis.eigen`:
    ``M_c`` is the images minus the per-alpha mask means, or minus the baseline for
    ``center="baseline"``, or the images uncentred), so the region's mean of ``M_c`` at
    alpha ``a`` is ``sum_k mean_region(map_k) * v_k(a)``: curve ``(r, k)`` is
    ``component_means[r, k] * eigenvectors[:, k]`` (over the region's voxels inside the
    analysis's mask).
    """
    means = np.asarray(curves.component_means, dtype=np.float64)
    vectors = np.asarray(eigen.eigenvectors, dtype=np.float64)
    return means[:, :, None] * vectors.T[None, :, :]


def component_ylabel(eigen: Any) -> str:
    """The y label of the component panel, after the analysis's centring."""
    if eigen.center == "baseline":
        return "contribution\n(change from baseline)"
    if eigen.center:
        return "contribution\n(intensity - mask mean)"
    return "contribution\n(intensity)"


def draw_regions(figure: Any, curves: Any, measure: str = "all", eigen: Any = None) -> list[Any]:
    """Draw region curves on ``figure`` (cleared first): one panel per measure, stacked.

    The mean-intensity and thresholded-volume panels are :meth:`RegionCurves.plot`; the
    eigencomponent panel has one line per region (its colour) and component (its line
    style): :func:`component_curves`. Each axes has the measure as its ``gid``
    (``"mean_intensity"``, ``"threshold_mm3"``, ``"components"``). Returns the axes.
    """
    figure.clear()
    panels = _panels(curves, measure, eigen)
    if not panels:
        ax = figure.add_subplot()
        ax.set_axis_off()
        reason = "no threshold was set" if measure == "thresholded volume" else "no eigen analysis of this traversal"
        ax.text(0.5, 0.5, f"Nothing to show: {reason}.", ha="center", va="center", transform=ax.transAxes)
        return [ax]
    axes = list(figure.subplots(len(panels), 1, squeeze=False)[:, 0])
    for ax, panel in zip(axes, panels, strict=True):
        ax.set_gid(panel)
        if panel != "components":
            curves.plot(ax, panel)
            continue
        contributions = component_curves(curves, eigen)
        for r, name in enumerate(curves.names):
            for k in range(contributions.shape[1]):
                if np.all(np.isnan(contributions[r, k])):
                    continue  # the region is outside the analysis's mask
                ax.plot(eigen.alphas, contributions[r, k], color=f"C{r % 10}",
                        linestyle=COMPONENT_STYLES[k % len(COMPONENT_STYLES)], linewidth=1.2,
                        label=f"{name} c{k + 1}", gid=f"component {r} {k}")
        ax.axhline(0.0, color="0.8", linewidth=0.8)
        ax.set_xlabel(f"alpha ({eigen.units})")
        ax.set_ylabel(component_ylabel(eigen), fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2, frameon=False)
    for ax in axes:
        ax.tick_params(labelsize=7)
        ax.xaxis.label.set_fontsize(8)
        ax.yaxis.label.set_fontsize(8)
    return axes


def draw_voxel(figure: Any, reading: VoxelReading, alpha_index: int | None = None) -> Any:
    """Draw a voxel's value over alpha on ``figure`` (cleared first); the marker's line has gid ``"current"``."""
    figure.clear()
    ax = figure.add_subplot()
    ax.plot(reading.alphas, reading.values, marker="o", markersize=3, linewidth=1.4, label="value", gid="value")
    if reading.reconstruction is not None:
        ax.plot(reading.alphas, reading.reconstruction, linestyle="--", linewidth=1.0, color="C1",
                label=f"eigen reconstruction ({reading.components} components)", gid="reconstruction")
    (_marker,) = ax.plot([], [], marker="o", markersize=9, markerfacecolor="none", markeredgecolor="C3",
                        linestyle="none", label="current alpha", gid="current")
    set_current_alpha(figure, reading, alpha_index)
    i, j, k = reading.source_index
    x, y, z = reading.position_mm
    ax.set_title(f"voxel [{i}, {j}, {k}] at ({x:.1f}, {y:.1f}, {z:.1f}) mm RAS", fontsize=9)
    ax.set_xlabel(f"alpha ({reading.units})", fontsize=8)
    ax.set_ylabel("intensity", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    return ax


def set_current_alpha(figure: Any, reading: VoxelReading, alpha_index: int | None) -> None:
    """Move the voxel figure's marker to alpha number ``alpha_index`` (hidden when None)."""
    for ax in figure.axes:
        for line in ax.get_lines():
            if line.get_gid() == "current":
                if alpha_index is None or not 0 <= alpha_index < len(reading.values):
                    line.set_data([], [])
                else:
                    line.set_data([reading.alphas[alpha_index]], [reading.values[alpha_index]])
