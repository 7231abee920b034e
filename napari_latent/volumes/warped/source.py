"""The source scan of a warped cohort: normalised intensities, the head's box, the ventricles."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_multiotsu

from ...errors import DataError
from ..io import Volume, open_volume
from ..masks import foreground_mask

#: The name that stands for nibabel's real T1 scan (``nibabel/tests/data/anatomical.nii``).
ANATOMICAL = "anatomical"

#: Half-sizes of the central box searched for the lateral ventricles, as fractions of the
#: head's half-extent along left-right, posterior-anterior and inferior-superior.
VENTRICLE_BOX = (0.2, 0.3, 0.2)

#: A second dark component is kept (the other lateral ventricle) if it has at least this
#: fraction of the largest one's voxels.
SECOND_COMPONENT = 0.3

#: The chosen components grow along the same dark class by up to this many mm (the horns
#: and bodies of the ventricles that leave the central box).
GROW_MM = 40.0

#: The ventricles' median intensity is at most this fraction of the central box's median.
DARKNESS = 0.6

# Fewest voxels a head (foreground) and the ventricles may have.
_MIN_HEAD_VOXELS = 512
_MIN_VENTRICLE_VOXELS = 4


def anatomical_path() -> Path:
    """Path of nibabel's real T1 scan: ``nibabel/tests/data/anatomical.nii`` (33 x 41 x 25, 2 mm)."""
    import nibabel

    return Path(os.path.dirname(nibabel.__file__)) / "tests" / "data" / "anatomical.nii"


def resolve_source(source: str | os.PathLike[str] | None) -> Path:
    """The scan a cohort is warped from: a path, or nibabel's T1 for ``None`` or ``"anatomical"``.

    Raises
    ------
    DataError
        If nibabel's scan is asked for and is not installed.
    """
    if source is None or str(source) == ANATOMICAL:
        path = anatomical_path()
        if not path.is_file():
            raise DataError(f"nibabel's example T1 scan is not installed ({path} is missing); give a scan")
        return path
    return Path(source)


@dataclass
class WarpSource:
    """A scan prepared for warping.

    Attributes
    ----------
    path : Path
        The scan's file.
    data : numpy.ndarray
        float32 intensities on the scan's grid, divided by the 99th percentile of the head
        (so tissue is about 0..1) and clipped below at 0.
    affine : numpy.ndarray
        The scan's 4x4 voxel-to-world (RAS+, mm) matrix.
    head : numpy.ndarray
        bool, the head (foreground) on the scan's grid.
    ventricles : numpy.ndarray
        bool, the lateral ventricles on the scan's grid (:func:`find_ventricles`).
    centre : numpy.ndarray
        World position (mm) of the centre of the head's bounding box: rotations and head-size
        changes act about it.
    half_extent : numpy.ndarray
        Half-sides (mm) of the head's world bounding box, along x, y and z (voxel edges included).
    intensity_scale : float
        The raw intensity that became 1.0.
    """

    path: Path
    data: np.ndarray
    affine: np.ndarray
    head: np.ndarray
    ventricles: np.ndarray
    centre: np.ndarray
    half_extent: np.ndarray
    intensity_scale: float

    @property
    def voxel_volume(self) -> float:
        """Volume of one voxel of the scan in mm³."""
        return float(abs(np.linalg.det(self.affine[:3, :3])))

    @property
    def spacing(self) -> float:
        """The scan's finest voxel size in mm."""
        return float(np.linalg.norm(self.affine[:3, :3], axis=0).min())

    @property
    def ventricle_volume_mm3(self) -> float:
        """Volume of the ventricle mask in mm³."""
        return float(np.count_nonzero(self.ventricles)) * self.voxel_volume


def voxel_world(shape: tuple[int, ...], affine: np.ndarray, axis: int) -> np.ndarray:
    """World coordinate ``axis`` (0 x, 1 y, 2 z) of every voxel of a grid, as a float32 array."""
    i, j, k = (np.arange(n, dtype=np.float32) for n in shape)
    a = affine[axis].astype(np.float32)
    return (a[0] * i[:, None, None] + a[1] * j[None, :, None] + a[2] * k[None, None, :] + a[3]).astype(np.float32)


def head_box(head: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre and half-sides (mm) of the world bounding box of a mask (voxel edges included)."""
    index = np.nonzero(head)
    low = np.array([ix.min() for ix in index], dtype=float) - 0.5
    high = np.array([ix.max() for ix in index], dtype=float) + 0.5
    corners = np.array([[c0, c1, c2, 1.0] for c0 in (low[0], high[0]) for c1 in (low[1], high[1])
                        for c2 in (low[2], high[2])])
    world = (affine @ corners.T)[:3]
    lo, hi = world.min(axis=1), world.max(axis=1)
    return (lo + hi) / 2.0, (hi - lo) / 2.0


def find_ventricles(data: np.ndarray, affine: np.ndarray, head: np.ndarray,
                    box: tuple[float, float, float] = VENTRICLE_BOX, grow_mm: float = GROW_MM) -> np.ndarray:
    """Find the lateral ventricles of a T1-weighted brain: the dark CSF region near its centre.

    1. The brain's centre is the centroid of the brightest of three intensity classes of
       the head (multi-level Otsu: white matter in T1; scalp fat too, which surrounds it).
    2. The intensities inside a central box (``box`` times the head's half-extent around
       that centre, in world axes) are split into three classes (CSF, grey matter, white
       matter); the box's voxels of the darkest class are labelled into 6-connected
       components; the largest one, and the second largest if it has at least 30 % of the
       largest's voxels (the two lateral ventricles when they do not touch), are kept if
       their median intensity is below 0.6 of the box's median.
    3. They grow by up to ``grow_mm`` along the same dark class (geodesic dilation: the
       horns and the bodies that leave the central box), and enclosed holes (choroid
       plexus) are filled.

    Parameters
    ----------
    data : numpy.ndarray
        The 3D scan.
    affine : numpy.ndarray
        Its 4x4 voxel-to-world (RAS+) matrix.
    head : numpy.ndarray
        bool mask of the head (the foreground).
    box : tuple of float
        Half-sizes of the searched box as fractions of the head's half-extent along x, y, z.
    grow_mm : float
        How far (mm, in steps of the finest voxel size) the seeds may grow along the dark
        class (0: no growing).

    Returns
    -------
    numpy.ndarray
        bool mask of the ventricles on the scan's grid.

    Raises
    ------
    DataError
        If the head is too small or constant, or no region near the centre is clearly
        darker than the tissue around it.
    """
    values = data[head]
    if values.size < _MIN_HEAD_VOXELS or float(values.max()) <= float(values.min()):
        raise DataError("the scan's head is too small or constant to find the ventricles in")
    _, half = head_box(head, affine)
    bright = np.nonzero(head & (data >= float(threshold_multiotsu(values, classes=3)[1])))
    ijk = np.vstack([np.array(bright, dtype=float).mean(axis=1, keepdims=True), [[1.0]]])
    centre = (affine @ ijk)[:3, 0]

    inside = head.copy()
    for axis in range(3):
        inside &= np.abs(voxel_world(data.shape, affine, axis) - np.float32(centre[axis])) \
            <= np.float32(box[axis] * half[axis])
    values = data[inside]
    if values.size < _MIN_HEAD_VOXELS // 8 or float(values.max()) <= float(values.min()):
        raise DataError("the centre of the scan's head is too small or constant to find the ventricles in")
    threshold = float(threshold_multiotsu(values, classes=3)[0])
    labels, count = ndimage.label(inside & (data < threshold))
    sizes = np.bincount(labels.ravel())[1:]
    if count == 0 or sizes.max() < _MIN_VENTRICLE_VOXELS:
        raise DataError("found no dark (CSF-like) region near the centre of the scan to take for the ventricles; "
                        "the source must be a T1-weighted brain scan")
    order = np.argsort(sizes)[::-1]
    keep = [order[0] + 1]
    if count > 1 and sizes[order[1]] >= SECOND_COMPONENT * sizes[order[0]]:
        keep.append(order[1] + 1)
    seeds = np.isin(labels, keep)
    if float(np.median(data[seeds])) > DARKNESS * float(np.median(values)):
        raise DataError("found no region near the centre of the scan clearly darker than the tissue around it to "
                        "take for the ventricles; the source must be a T1-weighted brain scan")
    steps = round(grow_mm / float(np.linalg.norm(affine[:3, :3], axis=0).min()))
    if steps > 0:
        seeds = ndimage.binary_dilation(seeds, iterations=steps, mask=head & (data < threshold))
    return ndimage.binary_fill_holes(seeds)


def prepare_source(source: str | os.PathLike[str] | Volume | None = None) -> WarpSource:
    """Read a scan and find its head and ventricles.

    Parameters
    ----------
    source : path-like, Volume or None
        A scan any registered reader opens (NIfTI, MGH, NRRD, MetaImage, a DICOM series
        folder), a :class:`~napari_latent.volumes.Volume`, or ``None`` / ``"anatomical"`` for
        nibabel's real T1 scan.

    Returns
    -------
    WarpSource

    Raises
    ------
    VolumeError
        If the scan cannot be read.
    DataError
        If it has too small a head, a constant head, or no ventricles to find.
    """
    if isinstance(source, Volume):
        volume = source
        path = volume.path or Path(volume.name)
    else:
        path = resolve_source(source)
        volume = open_volume(path)
    head = foreground_mask(volume)
    if np.count_nonzero(head) < _MIN_HEAD_VOXELS:
        raise DataError(f"{path}: the head (foreground) has fewer than {_MIN_HEAD_VOXELS} voxels; "
                        "the scan is too small to warp")
    scale = float(np.percentile(volume.data[head], 99.0))
    if not scale > 0:
        raise DataError(f"{path}: the head's intensities are not positive; a T1-weighted scan is needed")
    data = np.clip(volume.data / np.float32(scale), 0.0, None).astype(np.float32)
    ventricles = find_ventricles(data, volume.affine, head)
    centre, half = head_box(head, volume.affine)
    return WarpSource(Path(path), data, np.array(volume.affine, dtype=float), head, ventricles, centre, half, scale)
