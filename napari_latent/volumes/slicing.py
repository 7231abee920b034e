"""Turning 3D volumes into batches of 2D model inputs, and model outputs back into volumes.

A :class:`SliceSpec` is the preprocessing a model was trained with (it is stored in the
model checkpoint). Applying it to a volume (:func:`slice_volume`) gives the image batch
``(n, 1, S, S)`` in [-1, 1] and a :class:`SliceGeometry` that remembers exactly what was
done to this volume, so that :meth:`SliceGeometry.to_volume` maps any model output back
onto the source voxel grid (undoing resize, padding, cropping, windowing and the
reorientation to the anatomical plane).

Steps of the forward transform:

1. reorient the volume (exactly, by axis flips and permutations) so that axis 0 is the
   plane's slice axis and the in-plane axes are in screen order (see
   :data:`~napari_latent.volumes.orientation.PLANE_CODES`): the same anatomy gives the
   same images whatever the file's array order;
2. one in-plane box for all slices: the bounding box of the foreground mask (or the
   whole plane), grown by a margin and made square in millimetres, padded where it
   leaves the array (so the 3D geometry is preserved across slices);
3. an intensity window mapped to [-1, 1]: percentiles of the foreground voxels (the
   default, for MR), or a fixed window in the source's units (``fixed_window``, for CT in
   Hounsfield units; see :mod:`~napari_latent.volumes.windows`), the same for every subject;
4. slices whose foreground covers less than ``min_foreground`` of the box are dropped;
5. each kept slice is resized to ``size x size`` (bilinear, anti-aliased).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import MismatchError, VolumeError
from .arrays import contiguous
from .grid import Grid
from .io import Volume
from .masks import bounding_box, foreground_mask
from .orientation import PLANE_CODES, Reorientation, reorientation
from .windows import check_window_values, format_window

PLANES = tuple(PLANE_CODES)
SUPPORTED_SIZES = (32, 64, 128, 256, 512)


@dataclass(frozen=True)
class SliceSpec:
    """Preprocessing from a 3D volume to 2D model images.

    Parameters
    ----------
    plane : {"axial", "coronal", "sagittal"}
        Anatomical plane of the slices (resolved from the affine, not the array axis).
    size : int
        Square image size in pixels.
    window : tuple of float
        Lower and upper percentile of the foreground intensities mapped to -1 and 1
        (per volume; used when ``fixed_window`` is None).
    crop : bool
        Crop (and pad) to the foreground's bounding box; otherwise use the whole plane.
    margin : float
        Margin added on each side of the bounding box, as a fraction of its size.
    min_foreground : float
        Minimum fraction of the box covered by foreground for a slice to be kept.
    fixed_window : tuple of float, optional
        Intensities in the source's units (e.g. Hounsfield units) mapped to -1 and 1 in
        every volume, instead of the per-volume percentiles of ``window``.
    window_name : str, optional
        Name of the fixed window's preset (``"lung"``), for display; only with
        ``fixed_window``.
    """

    plane: Literal["axial", "coronal", "sagittal"] = "axial"
    size: int = 64
    window: tuple[float, float] = (0.5, 99.5)
    crop: bool = True
    margin: float = 0.05
    min_foreground: float = 0.05
    fixed_window: tuple[float, float] | None = None
    window_name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "window", tuple(float(v) for v in self.window))
        if self.fixed_window is not None:
            object.__setattr__(self, "fixed_window", check_window_values(self.fixed_window))
        if self.window_name is not None:
            if self.fixed_window is None:
                raise VolumeError(f"window_name {self.window_name!r} is given without a fixed_window")
            if not isinstance(self.window_name, str) or not self.window_name.strip():
                raise VolumeError(f"window_name must be a non-empty name, got {self.window_name!r}")
        object.__setattr__(self, "size", int(self.size))
        if self.plane not in PLANE_CODES:
            raise VolumeError(f"unknown plane {self.plane!r}; use one of {', '.join(PLANES)}")
        if not 8 <= self.size <= 1024:
            raise VolumeError(f"image size {self.size} is out of range (8 to 1024)")
        lo, hi = self.window
        if not 0.0 <= lo < hi <= 100.0:
            raise VolumeError(f"intensity window {self.window} must be percentiles with 0 <= low < high <= 100")
        if not 0.0 <= self.margin <= 1.0:
            raise VolumeError(f"margin {self.margin} must be between 0 and 1")
        if not 0.0 <= self.min_foreground < 1.0:
            raise VolumeError(f"min_foreground {self.min_foreground} must be in [0, 1)")

    @property
    def window_text(self) -> str:
        """The window as ``--window`` reads it: ``auto``, a preset name or ``LOW:HIGH``."""
        return format_window(self.window_name, self.fixed_window)

    def describe_window(self) -> str:
        """One phrase for people: ``"lung (-1350 to 150)"`` or ``"auto (percentiles 0.5-99.5)"``."""
        if self.fixed_window is None:
            return f"auto (foreground percentiles {self.window[0]:g}-{self.window[1]:g})"
        low, high = self.fixed_window
        return f"{self.window_name + ' ' if self.window_name else ''}({low:g} to {high:g})"

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict.

        The fixed-window keys are left out when unset, so a percentile spec serialises
        exactly as before they existed (older readers load it, and the subject split,
        which hashes this dict, stays the same).
        """
        data = asdict(self)
        data["window"] = list(self.window)
        if self.fixed_window is None:
            del data["fixed_window"], data["window_name"]
        else:
            data["fixed_window"] = list(self.fixed_window)
            if self.window_name is None:
                del data["window_name"]
        return data

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> SliceSpec:
        """Rebuild from :meth:`to_json` output (unknown keys are an error; missing keys take defaults)."""
        known = set(cls.__dataclass_fields__)
        unknown = set(obj) - known
        if unknown:
            raise VolumeError(f"unknown slice settings: {', '.join(sorted(unknown))}")
        return cls(**obj)


@dataclass(eq=False)
class SliceGeometry:
    """What the forward transform did to one volume; enough to map images back.

    Attributes
    ----------
    spec : SliceSpec
    grid : Grid
        The source volume's grid.
    box : tuple of int
        ``(row0, row1, col0, col1)`` of the square in-plane box in the plane-oriented array;
        it may extend beyond the array (padding).
    window_values : tuple of float
        Intensities mapped to -1 and +1.
    indices : numpy.ndarray
        Kept slice positions along the plane's slice axis in the plane orientation
        (axial: inferior to superior).
    """

    spec: SliceSpec
    grid: Grid
    box: tuple[int, int, int, int]
    window_values: tuple[float, float]
    indices: np.ndarray = field(repr=False)

    @property
    def reorientation(self) -> Reorientation:
        """From the source array order to the plane orientation."""
        return reorientation(self.grid, PLANE_CODES[self.spec.plane])

    @property
    def plane_shape(self) -> tuple[int, int, int]:
        """Shape of the plane-oriented volume (slices, rows, columns)."""
        return self.reorientation.target_shape

    @property
    def box_shape(self) -> tuple[int, int]:
        """Rows and columns of the in-plane box."""
        r0, r1, c0, c1 = self.box
        return r1 - r0, c1 - c0

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {"spec": self.spec.to_json(), "grid": self.grid.to_json(), "box": list(self.box),
                "window_values": list(self.window_values), "indices": [int(i) for i in self.indices]}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> SliceGeometry:
        """Rebuild from :meth:`to_json` output."""
        return cls(SliceSpec.from_json(obj["spec"]), Grid.from_json(obj["grid"]), tuple(obj["box"]),  # type: ignore[arg-type]
                   tuple(obj["window_values"]), np.asarray(obj["indices"], dtype=np.int64))  # type: ignore[arg-type]

    # -- forward -----------------------------------------------------------------------
    def images(self, volume: Volume | np.ndarray, indices: np.ndarray | None = None) -> torch.Tensor:
        """Apply this geometry to a volume on the same grid: ``(n, 1, S, S)`` in [-1, 1].

        Parameters
        ----------
        volume : Volume or numpy.ndarray
            Data on :attr:`grid` (for example another contrast of the same subject).
        indices : numpy.ndarray, optional
            Slice positions to take; the kept slices by default.
        """
        data = volume.data if isinstance(volume, Volume) else np.asarray(volume, dtype=np.float32)
        if tuple(data.shape) != self.grid.shape:
            raise MismatchError(f"volume of shape {data.shape} is not on this geometry's grid {self.grid.shape}")
        planes = self.reorientation.apply(data)
        take = self.indices if indices is None else np.asarray(indices)
        crops = _crop_padded(planes[take], self.box, self.window_values[0])
        lo, hi = self.window_values
        scaled = np.clip((crops - lo) / (hi - lo) * 2.0 - 1.0, -1.0, 1.0).astype(np.float32)
        tensor = torch.from_numpy(np.ascontiguousarray(scaled))[:, None]
        return resize_images(tensor, (self.spec.size, self.spec.size))

    # -- inverse -----------------------------------------------------------------------
    def to_volume(self, images: torch.Tensor | np.ndarray, indices: np.ndarray | None = None,
                  kind: Literal["intensity", "difference", "raw"] = "intensity",
                  fill: float | np.ndarray | Volume | None = None) -> np.ndarray:
        """Map model-space images back onto the source voxel grid.

        Parameters
        ----------
        images : torch.Tensor or numpy.ndarray
            ``(n, 1, S, S)`` or ``(n, S, S)`` images, one per slice in ``indices``.
        indices : numpy.ndarray, optional
            Slice positions of the images (plane orientation); the kept slices by default.
        kind : {"intensity", "difference", "raw"}
            ``"intensity"`` undoes the window (values back in scanner units);
            ``"difference"`` rescales without the offset (for differences of images);
            ``"raw"`` keeps values as they are (masks, component maps).
        fill : float, numpy.ndarray or Volume, optional
            Value outside the box and in slices without an image. Default: the window's
            lower value for intensities, 0 otherwise. An array or Volume on the source grid
            supplies the original voxels there.

        Returns
        -------
        numpy.ndarray
            float32 array of the source grid's shape, in the source's array order.
        """
        array = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        if array.ndim == 4:
            if array.shape[1] != 1:
                raise MismatchError(f"expected single-channel images, got shape {array.shape}")
            array = array[:, 0]
        if array.ndim != 3:
            raise MismatchError(f"expected images of shape (n, 1, S, S) or (n, S, S), got {array.shape}")
        take = self.indices if indices is None else np.asarray(indices)
        if len(take) != array.shape[0]:
            raise MismatchError(f"{array.shape[0]} images given for {len(take)} slice positions")
        rows, cols = self.box_shape
        resized = resize_images(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[:, None],
                                (rows, cols))[:, 0].numpy()
        lo, hi = self.window_values
        if kind == "intensity":
            resized = (resized + 1.0) * 0.5 * (hi - lo) + lo
            default_fill = lo
        elif kind == "difference":
            resized = resized * 0.5 * (hi - lo)
            default_fill = 0.0
        elif kind == "raw":
            default_fill = 0.0
        else:
            raise ValueError(f"unknown kind {kind!r}")
        planes = self._filled_planes(fill, default_fill)
        paste(planes, take, resized, self.box)
        return contiguous(self.reorientation.invert(planes))

    def _filled_planes(self, fill: float | np.ndarray | Volume | None, default: float) -> np.ndarray:
        if fill is None:
            return np.full(self.plane_shape, default, dtype=np.float32)
        if isinstance(fill, Volume | np.ndarray):
            data = fill.data if isinstance(fill, Volume) else np.asarray(fill, dtype=np.float32)
            if tuple(data.shape) != self.grid.shape:
                raise MismatchError(f"fill volume of shape {data.shape} is not on the grid {self.grid.shape}")
            return np.array(self.reorientation.apply(data), dtype=np.float32)
        return np.full(self.plane_shape, float(fill), dtype=np.float32)

    def slice_mask(self, indices: np.ndarray | None = None) -> np.ndarray:
        """Boolean mask on the source grid of the voxels that images map back to."""
        take = self.indices if indices is None else np.asarray(indices)
        planes = np.zeros(self.plane_shape, dtype=bool)
        r0, r1, c0, c1 = self.box  # the box, clipped to the planes (what ``paste`` keeps)
        _, height, width = self.plane_shape
        planes[take, max(r0, 0):min(r1, height), max(c0, 0):min(c1, width)] = True
        return contiguous(self.reorientation.invert(planes))


def _crop_padded(slices: np.ndarray, box: tuple[int, int, int, int], pad_value: float) -> np.ndarray:
    """Crop ``(n, rows, cols)`` to ``box``, padding with ``pad_value`` outside the array."""
    r0, r1, c0, c1 = box
    n, rows, cols = slices.shape
    out = np.full((n, r1 - r0, c1 - c0), pad_value, dtype=np.float32)
    sr0, sr1 = max(r0, 0), min(r1, rows)
    sc0, sc1 = max(c0, 0), min(c1, cols)
    if sr1 > sr0 and sc1 > sc0:
        out[:, sr0 - r0:sr1 - r0, sc0 - c0:sc1 - c0] = slices[:, sr0:sr1, sc0:sc1]
    return out


def paste(planes: np.ndarray, indices: np.ndarray, crops: np.ndarray, box: tuple[int, int, int, int]) -> None:
    """Write box-shaped crops into ``planes`` at ``indices``, dropping what lies outside.

    Parameters
    ----------
    planes : numpy.ndarray
        ``(n, rows, cols)`` planes in the slicing orientation (views are written through).
    indices : numpy.ndarray
        The planes to write, one per crop.
    crops : numpy.ndarray
        ``(len(indices), r1 - r0, c1 - c0)`` crops of the box.
    box : tuple of int
        ``(r0, r1, c0, c1)``, the box in plane coordinates; it may reach outside the planes.
    """
    r0, r1, c0, c1 = box
    _, rows, cols = planes.shape
    sr0, sr1 = max(r0, 0), min(r1, rows)
    sc0, sc1 = max(c0, 0), min(c1, cols)
    if sr1 > sr0 and sc1 > sc0:
        planes[np.asarray(indices), sr0:sr1, sc0:sc1] = crops[:, sr0 - r0:sr1 - r0, sc0 - c0:sc1 - c0]


def resize_images(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(n, c, h, w)`` images, anti-aliased when shrinking."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    shrinking = size[0] < images.shape[-2] or size[1] < images.shape[-1]
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=shrinking)


def _square_box(extent: tuple[int, int, int, int], spacing: tuple[float, float],
                margin: float) -> tuple[int, int, int, int]:
    """Grow a (row0, row1, col0, col1) extent into a box square in millimetres."""
    r0, r1, c0, c1 = extent
    sr, sc = spacing
    side_mm = max((r1 - r0) * sr, (c1 - c0) * sc) * (1.0 + 2.0 * margin)
    # Round up, but not for float noise: spacings read from DICOM or ITK headers differ from
    # the NIfTI copy's in the sixth decimal, and the same scan must get the same box.
    rows = max(1, math.ceil(side_mm / sr - 1e-6))
    cols = max(1, math.ceil(side_mm / sc - 1e-6))
    # Same parity as the extent, so the box is centred exactly and flipping the array
    # flips the box (no rounding bias toward one side).
    rows += (rows - (r1 - r0)) % 2
    cols += (cols - (c1 - c0)) % 2
    top = r0 - (rows - (r1 - r0)) // 2
    left = c0 - (cols - (c1 - c0)) // 2
    return top, top + rows, left, left + cols


def slice_geometry(volume: Volume, spec: SliceSpec, mask: np.ndarray | None = None) -> SliceGeometry:
    """Decide the box, intensity window and kept slices of ``volume`` under ``spec``.

    Parameters
    ----------
    volume : Volume
    spec : SliceSpec
    mask : numpy.ndarray, optional
        Foreground mask on the volume's grid; computed with
        :func:`~napari_latent.volumes.masks.foreground_mask` when omitted.

    Raises
    ------
    VolumeError
        If the volume has no foreground or no slice meets ``min_foreground``.
    """
    grid = volume.grid
    if mask is None:
        mask = foreground_mask(volume)
    elif mask.shape != volume.shape:
        raise MismatchError(f"mask of shape {mask.shape} is not on the volume's grid {volume.shape}")
    if not mask.any():
        raise VolumeError(f"{volume.name}: the volume has no foreground")
    reo = reorientation(grid, PLANE_CODES[spec.plane])
    plane_mask = reo.apply(mask)
    plane_spacing = np.linalg.norm(reo.target_affine(grid.affine)[:3, :3], axis=0)
    n_slices, rows, cols = plane_mask.shape
    if spec.crop:
        (_, _), (r0, r1), (c0, c1) = bounding_box(plane_mask)  # type: ignore[misc]
    else:
        r0, r1, c0, c1 = 0, rows, 0, cols
    box = _square_box((r0, r1, c0, c1), (float(plane_spacing[1]), float(plane_spacing[2])), spec.margin)
    box_rows, box_cols = box[1] - box[0], box[3] - box[2]
    cropped_mask = _crop_padded(plane_mask.astype(np.float32), box, 0.0)
    coverage = cropped_mask.reshape(n_slices, -1).mean(axis=1)
    indices = np.flatnonzero(coverage >= max(spec.min_foreground, 1e-9)).astype(np.int64)
    if indices.size == 0:
        raise VolumeError(f"{volume.name}: no {spec.plane} slice has at least {spec.min_foreground:.0%} foreground "
                          f"(largest is {coverage.max():.1%}); lower min_foreground")
    if spec.fixed_window is not None:
        lo, hi = spec.fixed_window  # the same mapping for every subject (e.g. Hounsfield units)
    else:
        values = volume.data[mask]
        lo, hi = (float(v) for v in np.percentile(values, spec.window))
        if hi <= lo:
            lo, hi = float(values.min()), float(values.max())
        if hi <= lo:
            raise VolumeError(f"{volume.name}: the foreground is constant ({lo:g}); there is no contrast to model")
    del box_rows, box_cols
    return SliceGeometry(spec, grid, box, (lo, hi), indices)


def slice_volume(volume: Volume, spec: SliceSpec, mask: np.ndarray | None = None) -> tuple[torch.Tensor, SliceGeometry]:
    """Forward transform: a volume to ``(n, 1, S, S)`` images in [-1, 1] and their geometry.

    Parameters
    ----------
    volume : Volume
        The 3D volume, in any orientation.
    spec : SliceSpec
        The preprocessing (usually the model's).
    mask : numpy.ndarray, optional
        A foreground mask on the volume's grid (computed when omitted).

    Returns
    -------
    images : torch.Tensor
        float32 ``(n, 1, size, size)`` in [-1, 1], one per kept slice.
    geometry : SliceGeometry
        Use ``geometry.indices`` for the slice positions and ``geometry.to_volume`` to map
        images back onto ``volume``'s grid.
    """
    geometry = slice_geometry(volume, spec, mask)
    return geometry.images(volume), geometry
