"""Figures of a traversal and its eigencomponents, and a report folder that embeds them.

Every function returns a :class:`matplotlib.figure.Figure` drawn on the Agg canvas; pyplot
and its global state are never used, so this works in threads, in napari and headless.
:func:`save_figure` writes a PNG atomically. Slices are shown in the model's anatomical
plane (axial by default) in radiological screen orientation (anterior up, the patient's
right on the left), with the voxel aspect ratio of the source grid.

Colours: intensities in grey; differences and component maps in a diverging blue-white-red
map (``RdBu_r``: blue where the value decreases / is negative, red where it increases) with
limits symmetric about zero, drawn over the anatomy with an opacity that grows with the
magnitude, so that unchanged voxels show the anatomy.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from .._atomic import atomic_path, write_json_atomic, write_text_atomic
from ..errors import MismatchError, UserInputError
from ..volumes.grid import Grid
from ..volumes.io import Volume
from ..volumes.masks import foreground_mask
from ..volumes.orientation import PLANE_CODES, reorientation
from .eigen import NEAR_CONSTANT, EigenResult, TraversalLike, select_alphas

REPORT_FORMAT = "napari-latent-report"
REPORT_VERSION = 1
DIVERGING = "RdBu_r"
FIGURES = {"eigenvectors": "eigenvectors.png", "spectrum": "spectrum.png",
           "montage": "traversal_montage.png", "components": "component_maps.png"}
#: The figure of :class:`~napari_latent.analysis.regions.RegionCurves` in a report (when given).
REGIONS_FIGURE = "regions.png"
GALLERY_FIGURE = "gallery.png"


# -- helpers ------------------------------------------------------------------------------------

def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


class _PlaneView:
    """Slices of source-grid volumes in one anatomical plane, in screen orientation."""

    def __init__(self, grid: Grid, plane: str = "axial") -> None:
        if plane not in PLANE_CODES:
            plane = "axial"
        self.plane = plane
        self.reorientation = reorientation(grid, PLANE_CODES[plane])
        spacing = np.linalg.norm(self.reorientation.target_affine(grid.affine)[:3, :3], axis=0)
        self.aspect = float(spacing[1] / spacing[2])
        self.count = self.reorientation.target_shape[0]

    def slice(self, volume: np.ndarray, position: int) -> np.ndarray:
        return np.asarray(self.reorientation.apply(volume)[position], dtype=np.float32)

    def region_slice(self, read_region: Any, index: int, position: int) -> np.ndarray:
        """The plane at ``position`` from ``read_region(index, source_box)`` (which returns that box of a volume)."""
        _, rows, cols = self.reorientation.target_shape
        region = self.reorientation.source_region((slice(position, position + 1), slice(0, rows), slice(0, cols)))
        return np.asarray(self.reorientation.apply(read_region(index, region))[0], dtype=np.float32)

    def frame_slices(self, traversal: TraversalLike, index: int, positions: Sequence[int]) -> dict[int, np.ndarray]:
        """The planes at ``positions`` of frame ``index``: read plane by plane when the traversal can
        (a store reads only their chunks), else from the whole frame."""
        read_region = getattr(traversal, "read_region", None)
        if read_region is None:
            frame = np.asarray(traversal.frame(index))
            return {p: self.slice(frame, p) for p in positions}
        return {p: self.region_slice(read_region, index, p) for p in positions}

    def positions(self, mask: np.ndarray, count: int) -> list[int]:
        """``count`` planes spread over the middle 70% of the mask's extent (largest first)."""
        planes = self.reorientation.apply(mask)
        area = planes.reshape(planes.shape[0], -1).sum(axis=1)
        present = np.flatnonzero(area > 0)
        if present.size == 0:
            present = np.arange(self.count)
        quantiles = np.linspace(0.15, 0.85, count) if count > 1 else np.array([0.5])
        chosen = sorted({int(present[int(np.rint(q * (present.size - 1)))]) for q in quantiles})
        return chosen


def _foreground(image: np.ndarray, traversal: TraversalLike) -> np.ndarray:
    """Otsu foreground of ``image`` within the modelled voxels (all modelled voxels if it fails)."""
    modelled = traversal.modelled_mask()
    try:
        mask = foreground_mask(Volume(image, traversal.grid.affine)) & modelled
    except UserInputError:
        return modelled
    return mask if mask.any() else modelled


def _plane_of(traversal: TraversalLike | None) -> str:
    geometry = getattr(traversal, "geometry", None)
    return geometry.spec.plane if geometry is not None else "axial"


def _grey_limits(image: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    return _grey_limits_of(image[mask] if mask is not None and mask.any() else image.ravel())


def _grey_limits_of(values: np.ndarray) -> tuple[float, float]:
    low, high = (float(v) for v in np.percentile(values, [1.0, 99.5]))
    return (low, high) if high > low else (low, low + 1.0)


def _symmetric_limit(values: np.ndarray, percentile: float = 99.5) -> float:
    values = np.abs(np.asarray(values).ravel())  # float32 stays float32: a CT's maps have tens of millions of values
    values = values[values > 0]
    if values.size == 0:
        return 1.0
    limit = float(np.percentile(values, percentile))
    return limit if limit > 0 else float(values.max())


def _overlay(values: np.ndarray, limit: float, opacity: float, mask: np.ndarray | None = None) -> np.ndarray:
    """RGBA of a diverging map whose opacity grows with |value| (transparent at 0)."""
    norm = Normalize(-limit, limit, clip=True)
    rgba = colormaps[DIVERGING](norm(values)).astype(np.float32)  # the figure keeps it: half of float64's size
    strength = np.clip(np.abs(values) / limit, 0.0, 1.0) ** 0.6
    rgba[..., 3] = opacity * strength
    if mask is not None:
        rgba[..., 3] *= mask
    return rgba


def _hide_axes(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _diverging_colorbar(figure: Figure, axes: Any, limit: float, label: str) -> None:
    from matplotlib.cm import ScalarMappable

    mappable = ScalarMappable(Normalize(-limit, limit), colormaps[DIVERGING])
    bar = figure.colorbar(mappable, ax=axes, shrink=0.6, pad=0.01, aspect=30)
    bar.set_label(label)


def _percent(ratio: float) -> str:
    """A readable percentage of a variance ratio (``<0.01%`` for tiny ones)."""
    value = 100.0 * float(ratio)
    if value >= 10:
        return f"{value:.1f}%"
    if value >= 0.01:
        return f"{value:.3g}%"
    return "<0.01%" if value > 0 else "0%"


def _is_flat(vector: np.ndarray) -> bool:
    return float(np.sum(vector)) ** 2 / len(vector) > NEAR_CONSTANT


def _alpha_label(alpha: float, units: str) -> str:
    suffix = {"latent": "", "std": " std", "direction_std": " std"}.get(units, "")
    return f"α = {alpha:.3g}{suffix}"


# -- figures ------------------------------------------------------------------------------------

def figure_eigenvectors(eigen: EigenResult, components: int | None = None) -> Figure:
    """The eigenvectors against alpha (the MS paper's "polynomial series" figure).

    Parameters
    ----------
    eigen : EigenResult
    components : int, optional
        How many to draw (default: all kept).
    """
    count = eigen.n_components if components is None else min(int(components), eigen.n_components)
    figure = _new_figure(7.6, 4.0)
    ax = figure.add_subplot()
    colours = colormaps["tab10"]
    for k in range(count):
        ax.plot(eigen.alphas, eigen.eigenvectors[:, k], marker="o", markersize=3.5, linewidth=1.8,
                color=colours(k % 10), label=f"{k + 1}: {_percent(eigen.explained_variance_ratio[k])}")
    ax.axhline(0.0, color="0.6", linewidth=0.8, zorder=0)
    ax.axvline(eigen.alphas[eigen.baseline_index], color="0.8", linewidth=0.8, linestyle=":", zorder=0)
    units = "" if eigen.units == "latent" else f" ({eigen.units})"
    ax.set_xlabel(f"alpha{units}")
    ax.set_ylabel("eigenvector entry")
    ax.set_title("Eigenvectors over alpha")
    ax.grid(True, color="0.92")
    ax.legend(title="component: variance", fontsize=8, title_fontsize=8, frameon=False, loc="upper left",
              bbox_to_anchor=(1.01, 1.0))
    return figure


def figure_spectrum(eigen: EigenResult) -> Figure:
    """The eigenvalue spectrum: explained variance per component (log scale) and cumulative."""
    ratio = np.asarray(eigen.explained_variance_ratio, dtype=np.float64)
    index = np.arange(1, len(ratio) + 1)
    figure = _new_figure(6.4, 3.6)
    ax = figure.add_subplot()
    top = float(ratio.max()) if ratio.size and ratio.max() > 0 else 1.0
    positive = ratio[ratio > 0]
    smallest = float(positive.min()) if positive.size else top * 1e-7
    bottom = 10.0 ** np.floor(np.log10(max(smallest, top * 1e-7)))
    kept = index <= eigen.n_components
    ax.bar(index[kept], np.where(ratio[kept] > bottom, ratio[kept], 0.0), bottom=0, color="#3b6ea8",
           label="kept components")
    ax.bar(index[~kept], np.where(ratio[~kept] > bottom, ratio[~kept], 0.0), color="#b9c7d8",
           label="other components")
    for i in range(min(eigen.n_components, len(ratio))):
        if ratio[i] > bottom:
            ax.annotate(_percent(ratio[i]), (index[i], ratio[i]), textcoords="offset points", xytext=(0, 3),
                        ha="center", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylim(bottom, top * 3.0)
    ax.set_xticks(index)
    ax.set_xlabel("component")
    ax.set_ylabel("explained variance ratio (log)")
    ax.set_title("Eigenvalue spectrum")
    ax.grid(True, axis="y", color="0.92")
    twin = ax.twinx()
    twin.plot(index, np.cumsum(ratio), color="#c0392b", marker=".", linewidth=1.2, label="cumulative")
    twin.set_ylim(min(0.9, float(np.cumsum(ratio)[0]) - 0.01), 1.002)
    twin.set_ylabel("cumulative", color="#c0392b")
    twin.tick_params(axis="y", colors="#c0392b")
    ax.legend(fontsize=8, frameon=False, loc="upper right", bbox_to_anchor=(1.0, 0.85))
    return figure


def figure_traversal_montage(traversal: TraversalLike, alphas: Sequence[int | float] | str | None = None,
                             positions: Sequence[int] | None = None, n_positions: int = 4, n_alphas: int = 5,
                             plane: str | None = None, opacity: float = 0.85, baseline: np.ndarray | None = None,
                             foreground: np.ndarray | None = None, grey: tuple[float, float] | None = None) -> Figure:
    """Traversal montage: rows are slice positions, columns alphas, with the difference overlay.

    Each panel is the frame at one alpha in grey, overlaid with its difference from the
    baseline (``RdBu_r``, limits symmetric about zero and shared by all panels, opacity
    growing with the magnitude). A lazy traversal computes only the frames shown.

    Parameters
    ----------
    traversal : Traversal or LazyTraversal
    alphas : see :func:`~napari_latent.analysis.eigen.select_alphas`, optional
        Alphas to show (default ``n_alphas`` evenly spaced, the ends included).
    positions : sequence of int, optional
        Plane indices (in the ``plane`` orientation); default ``n_positions`` spread over
        the modelled foreground.
    plane : str, optional
        ``"axial"``, ``"coronal"`` or ``"sagittal"`` (default: the model's plane).
    opacity : float
        Largest opacity of the difference overlay.
    baseline, foreground : numpy.ndarray, optional
        The baseline frame and its foreground (within the modelled voxels), when the caller
        has them already (read and computed here otherwise).
    grey : (float, float), optional
        The grey scale's limits (percentiles of the baseline in the foreground by default).

    Only the shown planes of the other frames are kept (a traversal store reads just their
    chunks), so memory holds the baseline and a few planes whatever the volume's size.
    """
    view = _PlaneView(traversal.grid, plane or _plane_of(traversal))
    count = len(traversal)
    if alphas is None:
        spread = np.rint(np.linspace(0, count - 1, min(n_alphas, count))).astype(int)
        chosen = sorted({int(traversal.baseline_index), *(int(i) for i in spread)})
    else:
        chosen = [int(i) for i in select_alphas(traversal, alphas)]  # type: ignore[arg-type]
    if baseline is None and (foreground is None or grey is None):
        baseline = np.asarray(traversal.frame(traversal.baseline_index), dtype=np.float32)
    if foreground is None:
        foreground = _foreground(baseline, traversal)  # type: ignore[arg-type]
    rows = list(positions) if positions is not None else view.positions(foreground, n_positions)
    base_planes = {p: view.slice(baseline, p) for p in rows} if baseline is not None else \
        view.frame_slices(traversal, traversal.baseline_index, rows)
    planes = {i: base_planes if i == traversal.baseline_index else view.frame_slices(traversal, i, rows)
              for i in chosen}
    differences = {i: {p: planes[i][p] - base_planes[p] for p in rows} for i in chosen}
    limit = _symmetric_limit(np.concatenate([d[p].ravel() for d in differences.values() for p in rows]))
    low, high = grey if grey is not None else _grey_limits(baseline, foreground)
    figure = _new_figure(1.9 * len(chosen) + 1.2, 1.9 * len(rows) + 0.6)
    grid = figure.add_gridspec(len(rows), len(chosen))
    axes = []
    for r, position in enumerate(rows):
        for c, index in enumerate(chosen):
            ax = figure.add_subplot(grid[r, c])
            axes.append(ax)
            ax.imshow(planes[index][position], cmap="gray", vmin=low, vmax=high, aspect=view.aspect,
                      interpolation="nearest")
            if index != traversal.baseline_index:
                ax.imshow(_overlay(differences[index][position], limit, opacity), aspect=view.aspect,
                          interpolation="nearest")
            _hide_axes(ax)
            if r == 0:
                title = _alpha_label(float(traversal.alphas[index]), traversal.units)
                ax.set_title(title + (" (baseline)" if index == traversal.baseline_index else ""), fontsize=9)
            if c == 0:
                ax.set_ylabel(f"{view.plane} {position}", fontsize=9)
    _diverging_colorbar(figure, axes, limit, "difference from baseline")
    figure.suptitle("Traversal with the difference from the baseline (blue: darker, red: brighter)", fontsize=10)
    return figure


def figure_component_maps(eigen: EigenResult, anatomy: TraversalLike | np.ndarray, components: int | None = None,
                          positions: Sequence[int] | None = None, n_positions: int = 4, plane: str | None = None,
                          opacity: float = 0.8, grey: tuple[float, float] | None = None) -> Figure:
    """Component maps on the anatomy, one row per component, with its eigenvector beside it.

    Maps are drawn with ``RdBu_r``, limits symmetric about zero per component (99.5th
    percentile of the magnitude inside the mask), opacity growing with the magnitude up to
    ``opacity``, over the anatomy in grey.

    Parameters
    ----------
    eigen : EigenResult
    anatomy : Traversal, LazyTraversal or numpy.ndarray
        The anatomy under the maps: the traversal's baseline frame, or a volume on the grid.
    components : int, optional
        How many rows (default: all kept).
    positions, n_positions, plane :
        As in :func:`figure_traversal_montage` (default plane: the traversal's model plane).
    opacity : float
        Largest opacity of the maps.
    grey : (float, float), optional
        The grey scale's limits (percentiles of the anatomy in the mask by default).
    """
    image: np.ndarray | None = None
    if isinstance(anatomy, np.ndarray):
        image, plane = np.asarray(anatomy, dtype=np.float32), plane or "axial"
    else:
        plane = plane or _plane_of(anatomy)
        if grey is None or getattr(anatomy, "read_region", None) is None:  # else only the shown planes are read
            image = np.asarray(anatomy.frame(anatomy.baseline_index), dtype=np.float32)
    if image is not None and image.shape != eigen.grid.shape:
        raise MismatchError(f"the anatomy of shape {image.shape} is not on the maps' grid {eigen.grid.shape}")
    view = _PlaneView(eigen.grid, plane)
    count = eigen.n_components if components is None else min(int(components), eigen.n_components)
    rows = list(positions) if positions is not None else view.positions(eigen.mask, n_positions)
    low, high = grey if grey is not None else _grey_limits(image, eigen.mask)  # type: ignore[arg-type]
    anatomy_planes = {p: view.slice(image, p) for p in rows} if image is not None else \
        view.frame_slices(anatomy, anatomy.baseline_index, rows)  # type: ignore[union-attr]
    mask_planes = {p: view.slice(eigen.mask, p) for p in rows}
    figure = _new_figure(2.0 * len(rows) + 2.9, 1.95 * count + 0.5)
    grid = figure.add_gridspec(count, len(rows) + 2, width_ratios=[1.5, 0.05] + [1.0] * len(rows))
    correlation = eigen.alpha_correlation()
    for k in range(count):
        curve = figure.add_subplot(grid[k, 0])
        curve.plot(eigen.alphas, eigen.eigenvectors[:, k], marker="o", markersize=2.5, color="#3b6ea8")
        curve.axhline(0.0, color="0.7", linewidth=0.7)
        curve.tick_params(labelsize=7)
        if _is_flat(eigen.eigenvectors[:, k]):
            shape = ", flat"
        else:
            shape = "" if np.isnan(correlation[k]) else f", r(α) = {correlation[k]:.2f}"
        curve.set_title(f"component {k + 1}: {_percent(eigen.explained_variance_ratio[k])}{shape}", fontsize=8)
        if k == count - 1:
            curve.set_xlabel("alpha", fontsize=8)
        limit = _symmetric_limit(eigen.projections[:, k])
        component_planes = {p: view.region_slice(eigen.component_region, k, p) for p in rows}
        axes = []
        for c, position in enumerate(rows):
            ax = figure.add_subplot(grid[k, c + 2])
            axes.append(ax)
            ax.imshow(anatomy_planes[position], cmap="gray", vmin=low, vmax=high, aspect=view.aspect,
                      interpolation="nearest")
            ax.imshow(_overlay(component_planes[position], limit, opacity, mask_planes[position]),
                      aspect=view.aspect, interpolation="nearest")
            _hide_axes(ax)
            if k == 0:
                ax.set_title(f"{view.plane} {position}", fontsize=9)
        bar = _diverging_colorbar_small(figure, axes, limit)
        bar.ax.tick_params(labelsize=7)
    figure.suptitle("Component maps on the anatomy (eigenvector over alpha on the left)", fontsize=10)
    return figure


def _diverging_colorbar_small(figure: Figure, axes: list[Any], limit: float) -> Any:
    from matplotlib.cm import ScalarMappable

    mappable = ScalarMappable(Normalize(-limit, limit), colormaps[DIVERGING])
    return figure.colorbar(mappable, ax=axes, shrink=0.85, pad=0.01, aspect=12, format="%.2g")


def save_figure(figure: Figure, path: str | os.PathLike[str], dpi: int = 120) -> Path:
    """Write ``figure`` as a PNG, atomically; returns the path."""
    path = Path(path)
    if figure.canvas is None or not isinstance(figure.canvas, FigureCanvasAgg):
        FigureCanvasAgg(figure)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=dpi, facecolor="white")
    return path


# -- the report ---------------------------------------------------------------------------------

def _summary(traversal: TraversalLike, eigen: EigenResult) -> dict[str, Any]:
    facts = traversal.to_json()
    direction = dict(facts.get("direction") or {})
    direction.pop("vector", None)
    correlation = eigen.alpha_correlation()
    constant = [float(np.sum(eigen.eigenvectors[:, k]) ** 2 / len(eigen.alphas)) for k in range(eigen.n_components)]
    return {"source": facts.get("source", ""), "model": facts.get("model", ""),
            "model_fingerprint": facts.get("model_fingerprint", ""), "space": facts.get("space", ""),
            "direction": direction, "units": facts.get("units", ""), "alphas": [float(a) for a in eigen.alphas],
            "baseline_index": int(eigen.baseline_index), "center": eigen.center, "mask_voxels": int(eigen.mask.sum()),
            "components": [{"component": k + 1, "explained_variance_ratio": float(eigen.explained_variance_ratio[k]),
                            "alpha_correlation": None if np.isnan(correlation[k]) else float(correlation[k]),
                            "constant_fraction": constant[k]} for k in range(eigen.n_components)]}


def _pattern_sentence(summary: dict[str, Any], center: Any) -> str:
    components = summary["components"]
    if center == "baseline":
        if components and components[0]["alpha_correlation"] is not None:
            return (f"Baseline-subtracted variant: component 1 is the change itself; its eigenvector correlates "
                    f"{components[0]['alpha_correlation']:.3f} with alpha.")
        return "Baseline-subtracted variant: component 1 is the change itself."
    if len(components) < 2:
        return ""
    first, second = components[0], components[1]
    r = second["alpha_correlation"]
    return (f"Component 1 has {100 * first['constant_fraction']:.1f}% of its weight on the constant vector "
            f"(the paper: a constant offset, the anatomy); the eigenvector of component 2 correlates "
            f"{'n/a' if r is None else f'{r:.3f}'} with alpha (the paper: almost linear, the change).")


def write_report(out_dir: str | os.PathLike[str], traversal: TraversalLike, eigen: EigenResult,
                 extra: dict[str, Any] | None = None, dpi: int = 120,
                 warnings: Sequence[Any] | None = None, regions: Any = None, gallery: Any = None) -> Path:
    """Write a report folder: the four figures, ``report.json`` and ``report.html``.

    Parameters
    ----------
    out_dir : path-like
        The folder (created when missing). Figures are PNGs beside the HTML page, which
        embeds them by relative path, so the folder can be moved or zipped.
    traversal : Traversal or LazyTraversal
        The traversal the eigen analysis was made from (a lazy one computes the frames
        the montage shows).
    eigen : EigenResult
        Its eigen analysis.
    extra : dict, optional
        More JSON-serialisable facts for ``report.json`` (and a table in the page), e.g.
        the inversion error or timings.
    dpi : int
        Resolution of the figures.
    warnings : sequence, optional
        Reasons not to trust the traversal (:class:`~napari_latent.analysis.trust.TrustWarning`
        objects or strings, e.g. from :func:`~napari_latent.analysis.trust.trust_warnings`):
        a box at the top of the page, and ``warnings`` in ``report.json``. Without any, the page
        says that no check was made or that none failed (``checked``).
    regions : RegionCurves, optional
        Measurements of regions of interest (:func:`~napari_latent.analysis.regions.region_curves`):
        their figure (``regions.png``) with one line of text, and ``regions`` in ``report.json``
        (only when given).
    gallery : Gallery, optional
        A gallery of the directions the traversal's direction came from
        (:func:`~napari_latent.analysis.gallery.direction_gallery`): its image
        (``gallery.png``) with how to read it, and ``gallery`` in ``report.json``.

    Returns
    -------
    Path
        The ``report.html`` path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plane = _plane_of(traversal)
    positions = _PlaneView(eigen.grid, plane).positions(eigen.mask, 4)
    # The analysis's default mask is the montage's foreground by definition; no need to compute it again.
    foreground = eigen.mask if eigen.mask_info.get("kind") == "baseline foreground" else None
    masked_values = getattr(traversal, "masked_values", None)
    baseline: np.ndarray | None = None
    anatomy: TraversalLike | np.ndarray = traversal
    if foreground is not None and masked_values is not None:
        # A store: the grey scale from the masked voxels read slab by slab, the planes read alone.
        grey: tuple[float, float] | None = _grey_limits_of(masked_values(traversal.baseline_index, eigen.mask))
    else:
        baseline = anatomy = np.asarray(traversal.frame(traversal.baseline_index), dtype=np.float32)  # read once
        grey = _grey_limits(baseline, eigen.mask) if foreground is not None else None  # the same for both figures
    figures: dict[str, Callable[[], Figure]] = {
        "eigenvectors": lambda: figure_eigenvectors(eigen), "spectrum": lambda: figure_spectrum(eigen),
        "montage": lambda: figure_traversal_montage(traversal, positions=positions, baseline=baseline,
                                                    foreground=foreground, grey=grey),
        "components": lambda: figure_component_maps(eigen, anatomy, positions=positions, plane=plane, grey=grey)}
    for key, make in figures.items():  # one figure (and its images) in memory at a time
        save_figure(make(), out / FIGURES[key], dpi=dpi)
    if regions is not None:
        save_figure(regions.figure(), out / REGIONS_FIGURE, dpi=dpi)
    if gallery is not None:
        gallery.to_png(out / GALLERY_FIGURE, dpi=dpi)
    summary = _summary(traversal, eigen)
    report = {"format": REPORT_FORMAT, "format_version": REPORT_VERSION, "summary": summary,
              "eigen": {k: v for k, v in eigen.to_json().items() if k not in ("grid", "source")},
              "figures": dict(FIGURES), "extra": extra or {},
              "warnings": [_warning_json(w) for w in warnings or []], "checked": warnings is not None}
    if regions is not None:
        report["regions"] = {"figure": REGIONS_FIGURE, "rows": regions.to_rows()}
    if gallery is not None:
        report["gallery"] = {"figure": GALLERY_FIGURE, **gallery.to_json()}
    write_json_atomic(out / "report.json", report)
    write_text_atomic(out / "report.html", _html(summary, eigen, extra or {}, warnings, regions, gallery))
    return out / "report.html"


_READ_ME = {
    "montage": (
        "Each row is one slice of the volume, each column one alpha (left to right: further along the "
        "direction). The grey image is the decoded volume at that alpha; the colour shows how it differs from "
        "the baseline (the first column or the alpha nearest 0): <b>blue</b> where it got darker, <b>red</b> "
        "where it got brighter, stronger colour for a larger change. The colour limits are the same in every "
        "panel, so colours compare across alphas. This is the plain subtraction the paper compares against."),
    "eigenvectors": (
        "The covariance of the alpha images (one column per alpha, one row per foreground voxel) is "
        "decomposed into eigenvectors. Each curve shows how one component's weight changes over alpha. The "
        "paper finds a polynomial-like series: component 1 is nearly flat (a constant offset, the anatomy "
        "common to every alpha), component 2 is nearly linear (the change the direction causes, growing with "
        "alpha), higher components bend more and carry little variance. Signs are fixed so that each curve "
        "rises with alpha (the flat one is positive)."),
    "spectrum": (
        "How much of the variance each component explains, on a log scale (the first is usually far above the "
        "rest because the anatomy dominates). A steep drop after component 2 means the traversal is essentially "
        "one smooth change; a slow decay means the images change in several independent ways."),
    "components": (
        "Each row is one component: its eigenvector over alpha (left) and its map on the anatomy (M times the "
        "eigenvector, remapped onto the volume). Red and blue are opposite signs; with the eigenvector rising "
        "with alpha, <b>red</b> voxels get brighter and <b>blue</b> voxels darker as alpha grows. Component 2 "
        "is the one the paper recommends for reading the change; component 1 looks like the anatomy itself. "
        "Each row has its own symmetric colour scale."),
}


def _regions_html(regions: Any) -> str:
    """The section of the region curves: the figure and one line saying what it measures."""
    measured = "the mean intensity of each region at every alpha"
    if regions.threshold is not None:
        measured += (f", and the volume (mm³) of its voxels {'below' if regions.below else 'above'} "
                     f"{regions.threshold:.4g}")
    return (f"<section><h2>Regions of interest</h2><img src=\"{REGIONS_FIGURE}\" alt=\"Region curves\">"
            f"<p class=\"how\">Plain image measurements of the decoded volumes, not from the model: "
            f"{html.escape(measured)} (numbers under <code>regions</code> in report.json).</p></section>")


def _gallery_html(gallery: Any) -> str:
    """The section of the direction gallery: the image and how to read it."""
    return (f"<section><h2>Gallery of the directions</h2><img src=\"{GALLERY_FIGURE}\" alt=\"Direction gallery\">"
            f"<p class=\"how\">Each row is one of the {len(gallery)} {html.escape(gallery.method or '')} directions: "
            f"one slice ({html.escape(gallery.start)}) decoded {gallery.amount:g} spreads of the codes below "
            "(left) and above (right) its start (middle). A direction whose row barely changes does little to "
            "the anatomy at this amount; the traversal above follows one of them (numbers under "
            "<code>gallery</code> in report.json).</p></section>")


def _correlation_cell(component: dict[str, Any]) -> str:
    if component["constant_fraction"] > NEAR_CONSTANT:
        return "flat"
    value = component["alpha_correlation"]
    return "—" if value is None else f"{value:.3f}"


def _table(rows: list[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _warning_json(warning: Any) -> dict[str, Any]:
    to_json = getattr(warning, "to_json", None)
    return to_json() if callable(to_json) else {"kind": "note", "message": str(warning)}


def _warnings_html(warnings: Sequence[Any] | None) -> str:
    """The box of trust warnings at the top of the page (or the line saying none applied)."""
    if warnings is None:
        return ("<p class=\"checked\">Not checked here: the model's reconstruction quality, the direction's "
                "baselines and this subject's inversion error (see docs/analysis.md, \"How to judge a model and a "
                "direction before trusting a traversal\").</p>")
    if not warnings:
        return ("<p class=\"checked\">Checked: the model's reconstruction quality, the direction against its "
                "baselines (where it has them) and this subject's inversion error; no warning applies.</p>")
    items = "".join(f"<li>{html.escape(str(w))}</li>" for w in warnings)
    return f"<div class=\"warnings\"><h2>Warnings: read before trusting this traversal</h2><ul>{items}</ul></div>"


def _html(summary: dict[str, Any], eigen: EigenResult, extra: dict[str, Any],
          warnings: Sequence[Any] | None = None, regions: Any = None, gallery: Any = None) -> str:
    direction = summary.get("direction") or {}
    alphas = summary["alphas"]
    facts = [("source volume", str(summary.get("source") or "—")),
             ("model", f"{summary.get('model') or '—'} ({summary.get('model_fingerprint') or 'no fingerprint'})"),
             ("latent space", str(summary.get("space") or "—")),
             ("direction", f"{direction.get('name', '—')} (method {direction.get('method') or '—'}"
                           + (f", index {direction['index']}" if direction.get("index") is not None else "")
                           + (f", weights {direction['weights']}" if direction.get("weights") else "") + ")"),
             ("alphas", f"{len(alphas)} from {alphas[0]:g} to {alphas[-1]:g} ({summary.get('units') or 'latent'} "
                        f"units); baseline alpha {alphas[summary['baseline_index']]:g}"),
             ("centring", {True: "column means (the paper)", False: "none",
                           "baseline": "baseline subtracted per voxel (cleaner variant)"}.get(eigen.center,
                                                                                            str(eigen.center))),
             ("mask", f"{summary['mask_voxels']:,} voxels")]
    components = "".join(
        f"<tr><td>{c['component']}</td><td>{100 * c['explained_variance_ratio']:.4g}%</td>"
        f"<td>{_correlation_cell(c)}</td>"
        f"<td>{100 * c['constant_fraction']:.1f}%</td></tr>" for c in summary["components"])
    extra_rows = [(str(k), str(v)) for k, v in extra.items()]

    def figure(key: str, title: str) -> str:
        return (f"<section><h2>{html.escape(title)}</h2><img src=\"{FIGURES[key]}\" alt=\"{html.escape(title)}\">"
                f"<p class=\"how\">{_READ_ME[key]}</p></section>")

    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>napari-latent report</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1000px; margin: 2em auto; padding: 0 1em; color: #222;
        line-height: 1.45; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.15em; margin-top: 1.8em; }}
table {{ border-collapse: collapse; margin: 0.6em 0; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.25em 0.8em; text-align: left; vertical-align: top; }}
img {{ max-width: 100%; border: 1px solid #eee; }}
.how {{ background: #f6f8fa; padding: 0.6em 0.9em; border-left: 3px solid #3b6ea8; }}
.pattern {{ font-weight: 600; }}
.warnings {{ background: #fff4e5; padding: 0.3em 1em; border-left: 4px solid #d9822b; }}
.checked {{ color: #555; }}
</style></head><body>
<h1>Latent traversal and eigencomponent analysis</h1>
<p>A volume was inverted into the model's latent space, its codes were shifted along one direction by each
alpha, and the decoded volumes were analysed as in Güllmar, Hsu &amp; Reichenbach (MS paper): the foreground
voxels of all alpha images form a matrix whose covariance is eigendecomposed.</p>
{_warnings_html(warnings)}
{_table(facts)}
<p class="pattern">{html.escape(_pattern_sentence(summary, eigen.center))}</p>
<table><tr><th>component</th><th>explained variance</th><th>correlation of the eigenvector with alpha</th>
<th>share on the constant vector</th></tr>{components}</table>
{figure("montage", "The traversal and its difference from the baseline")}
{figure("eigenvectors", "Eigenvectors over alpha")}
{figure("spectrum", "Eigenvalue spectrum")}
{figure("components", "Component maps")}
{"" if regions is None else _regions_html(regions)}
{"" if gallery is None else _gallery_html(gallery)}
{"<section><h2>More facts</h2>" + _table(extra_rows) + "</section>" if extra_rows else ""}
<p><small>Numbers: <a href="report.json">report.json</a>. Made by napari-latent.</small></p>
</body></html>
"""
