"""Measurements of regions of interest along a traversal, in physical units, independent of the model.

The eigen analysis says *how* the decoded images change; this module measures *what*
changes with plain image statistics that do not come from the model: for every region of a
label volume and every alpha, the mean intensity and the volume (mm³ and voxels) of the
voxels above (or below) an intensity threshold, e.g. the dark CSF of a T1 MR, so that
"the ventricles grow by 1.3 ml from alpha 0 to alpha 3" can be read off directly. Given an
:class:`~napari_latent.analysis.eigen_result.EigenResult`, the mean of each component map
over each region is added.

Memory: the traversal is read slab by slab through its ``iter_blocks`` (a store on disk
or a :class:`~napari_latent.latent.traversal.LazyTraversal` never holds every alpha
volume), so the peak is the label volume plus one slab of every alpha.

:func:`automatic_regions` gives a documented automatic region for users without a mask
(the dark voxels inside the head at the baseline, see :func:`automatic_csf_mask`).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage
from skimage import filters

from .._atomic import write_text_atomic
from ..errors import MismatchError, UserInputError
from ..volumes.arrays import contiguous
from ..volumes.io import Volume, open_volume
from ..volumes.masks import foreground_mask

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .eigen import TraversalLike
    from .eigen_result import EigenResult

RegionsArg = np.ndarray | Volume | str | os.PathLike[str]

#: Voxels the foreground is eroded by before the automatic CSF threshold (drops the head's dark rim).
AUTO_EROSION = 2


@dataclass(eq=False)
class RegionCurves:
    """Per-region measurements at every alpha of a traversal.

    Attributes
    ----------
    alphas : numpy.ndarray
        ``(A,)`` the traversal's alphas (ascending), in :attr:`units`.
    labels : numpy.ndarray
        ``(R,)`` the region labels (the nonzero values of the label volume, ascending).
    names : list of str
        ``(R,)`` a name per region (``"region 3"`` unless given).
    voxels : numpy.ndarray
        ``(R,)`` voxels per region.
    voxel_mm3 : float
        The volume of one voxel in mm³ (``|det|`` of the affine's 3 x 3 part).
    mean_intensity : numpy.ndarray
        ``(R, A)`` mean intensity of each region at each alpha.
    threshold : float or None
        The intensity threshold of :attr:`threshold_voxels` (None: not measured).
    below : bool
        Count voxels below the threshold (``<``) instead of above it (``>``).
    threshold_voxels : numpy.ndarray or None
        ``(R, A)`` voxels of each region beyond the threshold at each alpha.
    component_means : numpy.ndarray or None
        ``(R, K)`` the mean of component map ``k`` over the region's voxels inside the eigen
        analysis's mask (NaN for a region outside it); a map has no alpha of its own, so
        this is one number per region.
    units : str
        Units of the alphas.
    info : dict
        Where the regions came from.
    """

    alphas: np.ndarray
    labels: np.ndarray
    names: list[str]
    voxels: np.ndarray
    voxel_mm3: float
    mean_intensity: np.ndarray
    threshold: float | None = None
    below: bool = False
    threshold_voxels: np.ndarray | None = None
    component_means: np.ndarray | None = None
    units: str = "latent"
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def threshold_mm3(self) -> np.ndarray | None:
        """``(R, A)`` the volume in mm³ of the voxels beyond the threshold (None without a threshold)."""
        return None if self.threshold_voxels is None else self.threshold_voxels * self.voxel_mm3

    @property
    def volume_mm3(self) -> np.ndarray:
        """``(R,)`` each region's volume in mm³."""
        return self.voxels * self.voxel_mm3

    def columns(self) -> list[str]:
        """The column names of :meth:`to_rows` and of the CSV."""
        names = ["region", "label", "region_voxels", "region_mm3", "alpha", "mean_intensity"]
        if self.threshold_voxels is not None:
            side = "below" if self.below else "above"
            names += [f"{side}_threshold_voxels", f"{side}_threshold_mm3"]
        if self.component_means is not None:
            names += [f"component_{k + 1}_mean" for k in range(self.component_means.shape[1])]
        return names

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per region and alpha (region-major), keyed by :meth:`columns`."""
        rows = []
        columns = self.columns()
        mm3 = self.threshold_mm3
        for r, label in enumerate(self.labels):
            for a, alpha in enumerate(self.alphas):
                values: list[Any] = [self.names[r], int(label), int(self.voxels[r]), float(self.volume_mm3[r]),
                                     float(alpha), float(self.mean_intensity[r, a])]
                if self.threshold_voxels is not None and mm3 is not None:
                    values += [int(self.threshold_voxels[r, a]), float(mm3[r, a])]
                if self.component_means is not None:
                    values += [float(v) for v in self.component_means[r]]
                rows.append(dict(zip(columns, values, strict=True)))
        return rows

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_rows` as a CSV file (atomically); returns the path."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns(), lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.to_rows())
        return write_text_atomic(path, buffer.getvalue())

    def plot(self, ax: Any, measure: str = "mean_intensity") -> Any:
        """Draw one line per region over alpha on a matplotlib axes.

        Parameters
        ----------
        ax : matplotlib.axes.Axes
            Where to draw.
        measure : {"mean_intensity", "threshold_mm3"}
            What to draw.
        """
        if measure == "mean_intensity":
            values, label = self.mean_intensity, "mean intensity"
        elif measure == "threshold_mm3" and self.threshold_mm3 is not None:
            side = "<" if self.below else ">"
            values, label = self.threshold_mm3, f"volume {side} {self.threshold:.4g} (mm³)"
        else:
            raise UserInputError(f"unknown or unmeasured measure {measure!r}")
        for r, name in enumerate(self.names):
            ax.plot(self.alphas, values[r], marker="o", markersize=3, label=name)
        ax.set_xlabel(f"alpha ({self.units})")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if len(self.names) > 1:
            ax.legend(fontsize="small")
        return ax

    def figure(self) -> Figure:
        """A figure with the mean-intensity curves, and the thresholded volumes when measured."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        panels = 1 if self.threshold_voxels is None else 2
        figure = Figure(figsize=(4.2 * panels, 3.2), dpi=100, layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.subplots(1, panels, squeeze=False)[0]
        self.plot(axes[0], "mean_intensity")
        if panels == 2:
            self.plot(axes[1], "threshold_mm3")
        return figure

    def summary(self) -> str:
        """One line per region: the change from the first to the last alpha."""
        lines = []
        mm3 = self.threshold_mm3
        for r, name in enumerate(self.names):
            text = (f"{name} ({int(self.voxels[r]):,} voxels, {self.volume_mm3[r]:.4g} mm³): mean intensity "
                    f"{self.mean_intensity[r, 0]:.4g} -> {self.mean_intensity[r, -1]:.4g}")
            if mm3 is not None:
                side = "below" if self.below else "above"
                text += f"; {side} {self.threshold:.4g}: {mm3[r, 0]:.4g} -> {mm3[r, -1]:.4g} mm³"
            lines.append(text)
        return "\n".join(lines)


def resolve_regions(traversal: TraversalLike, regions: RegionsArg) -> tuple[np.ndarray, dict[str, Any]]:
    """The integer label volume of ``regions`` on the traversal's grid, and where it came from.

    A boolean mask is label 1; a float volume with integer values (a label NIfTI) is
    rounded; a float volume with other values is a probability map, thresholded at 0.5.

    Raises
    ------
    MismatchError
        The regions are not on the traversal's source grid (shape or affine).
    VolumeError
        A missing or unreadable file.
    UserInputError
        No region at all (every voxel 0).
    """
    grid = traversal.grid
    if isinstance(regions, str | os.PathLike):
        volume = open_volume(regions)
        grid.check_same(volume.grid, f"the regions {Path(regions).name}")
        data, info = volume.data, {"kind": "file", "path": str(regions)}
    elif isinstance(regions, Volume):
        grid.check_same(regions.grid, "the regions")
        data, info = regions.data, {"kind": "volume", "name": regions.name}
    else:
        data, info = np.asarray(regions), {"kind": "array"}
        if data.shape != grid.shape:
            raise MismatchError(f"the regions of shape {data.shape} are not on the traversal's grid {grid.shape}")
    if data.dtype == bool:
        labels = data.astype(np.int32)
    elif np.issubdtype(data.dtype, np.integer):
        labels = data.astype(np.int32, copy=False)
    else:
        rounded = np.rint(data)
        labels = (rounded if np.allclose(data, rounded, atol=1e-3) else data > 0.5).astype(np.int32)
    if not labels.any():
        raise UserInputError("the regions select no voxel (every voxel is 0)")
    if labels.min() < 0:
        raise UserInputError("the regions have negative labels; use 0 for the background and positive labels")
    return labels, info


def voxel_volume_mm3(traversal: TraversalLike) -> float:
    """The volume of one voxel of the traversal's grid in mm³ (``|det|`` of the affine's 3 x 3 part)."""
    return float(abs(np.linalg.det(np.asarray(traversal.grid.affine)[:3, :3])))


def region_curves(traversal: TraversalLike, regions: RegionsArg, threshold: float | None = None,
                  below: bool = False, eigen: EigenResult | None = None,
                  names: list[str] | None = None) -> RegionCurves:
    """Mean intensity and thresholded volume of each region at every alpha of a traversal.

    Parameters
    ----------
    traversal : Traversal, StoredTraversal or LazyTraversal
        The traversal; read slab by slab (only the planes that hold a region).
    regions : numpy.ndarray, Volume or path
        A label volume on the traversal's source grid (0 = background, each other value one
        region), a boolean mask (one region), or a mask / label NIfTI file.
    threshold : float, optional
        Count the voxels of each region above it (or below it with ``below=True``), in the
        traversal's intensity units; not measured when omitted.
    below : bool
        Count ``value < threshold`` instead of ``value > threshold``.
    eigen : EigenResult, optional
        An eigen analysis of the same traversal: adds the mean of each component map over
        each region (over the region's voxels inside the analysis's mask).
    names : list of str, optional
        A name per region (in ascending label order).

    Returns
    -------
    RegionCurves

    Raises
    ------
    MismatchError
        Regions or ``eigen`` on another grid.
    """
    labels, info = resolve_regions(traversal, regions)
    values, index = _region_index(labels)
    count = len(values)
    if names is not None and len(names) != count:
        raise UserInputError(f"{len(names)} region names for {count} regions")
    alphas = np.asarray(traversal.alphas, dtype=np.float64)
    sums = np.zeros((count + 1, len(alphas)))
    beyond = np.zeros((count + 1, len(alphas)), dtype=np.int64) if threshold is not None else None
    work = traversal.to_working(index)
    planes = np.flatnonzero(np.any(work, axis=(1, 2)))  # no copy of a reoriented view
    for first, last, block in traversal.iter_blocks(_chunk(traversal), int(planes[0]), int(planes[-1]) + 1):
        slab = contiguous(work[first:last]).ravel()
        for a in range(len(alphas)):
            frame = np.ascontiguousarray(block[a]).ravel()
            sums[:, a] += np.bincount(slab, weights=frame, minlength=count + 1)
            if beyond is not None:
                hit = frame < threshold if below else frame > threshold
                beyond[:, a] += np.bincount(slab[hit], minlength=count + 1)
    voxels = np.bincount(index.ravel(), minlength=count + 1)[1:]
    component_means = None if eigen is None else _component_means(eigen, traversal, index, count)
    return RegionCurves(alphas, values.astype(np.int64), list(names) if names else [f"region {v}" for v in values],
                        voxels, voxel_volume_mm3(traversal), sums[1:] / voxels[:, None],
                        None if threshold is None else float(threshold), bool(below),
                        None if beyond is None else beyond[1:], component_means, str(traversal.units), info)


#: Largest label counted with a bincount table (larger labels are sorted instead).
TABLE_LABELS = 1 << 22


def _region_index(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The nonzero labels (ascending) and an int32 volume of region numbers (1..R, 0 = background).

    Labels up to :data:`TABLE_LABELS` go through a bincount and a lookup table: about a
    hundred times faster than ``numpy.unique(return_inverse=True)`` on a CT-sized volume
    (which sorts it, 20 s, holding the GIL for seconds at a time).
    """
    top = int(labels.max())
    if top <= TABLE_LABELS:
        present = np.flatnonzero(np.bincount(labels.ravel(), minlength=top + 1))
        values = present[present != 0]
        table = np.zeros(top + 1, dtype=np.int32)
        table[values] = np.arange(1, len(values) + 1, dtype=np.int32)
        return values, table[labels]
    values, index = np.unique(labels, return_inverse=True)
    index = index.reshape(labels.shape).astype(np.int32)  # 0 = background when present
    if values[0] != 0:
        index += 1
    else:
        values = values[1:]
    return values, index


def _chunk(traversal: TraversalLike, voxels: int = 1 << 24) -> int:
    """Planes per slab: the traversal's own choice, else about ``voxels`` voxels of one alpha."""
    own = getattr(traversal, "default_chunk", None)
    if callable(own):
        return int(own())
    plane = int(np.prod(traversal.working_shape[1:]))
    return max(1, voxels // max(plane, 1))


def _component_means(eigen: EigenResult, traversal: TraversalLike, index: np.ndarray, count: int) -> np.ndarray:
    """``(R, K)`` the mean of each component map over each region's voxels in the eigen mask."""
    traversal.grid.check_same(eigen.grid, "the eigen analysis")
    at_mask = index[eigen.mask]  # the mask's voxels in C order, like the rows of eigen.projections
    inside = np.bincount(at_mask, minlength=count + 1)[1:].astype(np.float64)
    out = np.full((count, eigen.n_components), np.nan)
    for k in range(eigen.n_components):
        sums = np.bincount(at_mask, weights=eigen.projections[:, k], minlength=count + 1)[1:]
        np.divide(sums, inside, out=out[:, k], where=inside > 0)
    return out


# -- the automatic region ------------------------------------------------------------------------

@dataclass(frozen=True)
class CsfMask:
    """The automatic dark region of :func:`automatic_csf_mask`.

    Attributes
    ----------
    mask : numpy.ndarray
        Boolean: the dark voxels inside the eroded foreground.
    foreground : numpy.ndarray
        Boolean: the eroded foreground the threshold was computed in.
    threshold : float
        The intensity threshold (the lower three-class Otsu threshold).
    """

    mask: np.ndarray
    foreground: np.ndarray
    threshold: float


def automatic_csf_mask(volume: Volume | np.ndarray, within: np.ndarray | None = None,
                       erosion: int = AUTO_EROSION) -> CsfMask:
    """The dark voxels inside the head: a simple automatic CSF (ventricles and sulci) region.

    Exactly: the foreground is :func:`~napari_latent.volumes.foreground_mask` of the volume
    (Otsu threshold, holes filled, largest component; so the ventricles are inside it),
    intersected with ``within`` when given, then eroded by ``erosion`` voxels (a 6-connected
    structuring element, ``erosion`` iterations) so that the dark rim at the head's edge is
    left out. The threshold is the lower of the two three-class Otsu thresholds
    (:func:`skimage.filters.threshold_multiotsu`, 256 bins) of the eroded foreground's
    intensities; the region is the foreground voxels strictly below it. On a T1 MR the three
    classes are CSF, grey and white matter; on another contrast the darkest class may be
    something else, so look at the mask before trusting it.

    Parameters
    ----------
    volume : Volume or numpy.ndarray
        The baseline image (a traversal's frame at alpha 0).
    within : numpy.ndarray, optional
        Boolean mask to stay inside (e.g. the voxels the model produced).
    erosion : int
        Voxels of erosion of the foreground.

    Raises
    ------
    UserInputError
        The foreground is too small or too uniform to find three classes in.
    """
    data = volume.data if isinstance(volume, Volume) else np.asarray(volume, dtype=np.float32)
    foreground = foreground_mask(volume)
    if within is not None:
        foreground &= np.asarray(within, dtype=bool)
    if erosion > 0:
        foreground = ndimage.binary_erosion(foreground, iterations=int(erosion))
    inside = data[foreground]
    if inside.size < 3 or float(inside.max()) <= float(inside.min()):
        raise UserInputError("the automatic region found no usable foreground (too small or uniform)")
    try:
        threshold = float(filters.threshold_multiotsu(inside, classes=3, nbins=256)[0])
    except ValueError as exc:
        raise UserInputError(f"the automatic region cannot split the foreground into three classes ({exc})") from exc
    return CsfMask(foreground & (data < threshold), foreground, threshold)


def automatic_regions(traversal: TraversalLike) -> tuple[np.ndarray, list[str], float]:
    """Labels for ``--roi auto``: 1 = the automatic CSF mask, 2 = the rest of the eroded foreground.

    Computed on the traversal's baseline frame within the voxels the model produced (see
    :func:`automatic_csf_mask`). Returns the label volume, the region names and the CSF
    threshold (count voxels *below* it to measure the dark volume at each alpha).
    """
    found = automatic_csf_mask(Volume(np.asarray(traversal.baseline, dtype=np.float32), traversal.grid.affine),
                               within=traversal.modelled_mask())
    labels = np.zeros(traversal.grid.shape, dtype=np.int32)
    labels[found.foreground] = 2
    labels[found.mask] = 1
    if not found.mask.any():
        raise UserInputError("the automatic region is empty (no voxel darker than the threshold in the foreground)")
    return labels, ["csf (auto)", "rest of foreground (auto)"], found.threshold
