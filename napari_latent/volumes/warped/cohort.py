"""Rendering subjects from a real scan and writing a cohort of them with a ``cohort.csv``."""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..._atomic import write_json_atomic, write_text_atomic
from ...errors import DataError
from ..grid import Grid
from ..io import Volume, save_volume
from ..phantoms.cohort import CohortInfo
from .deform import VentricleWarp, displace, sample
from .factors import HEAD_SIZE, ROTATION_LIMIT, WARPED_FACTOR_NAMES, WarpedFactors, sample_warped_factors
from .source import WarpSource, prepare_source

MIN_SIZE = 16
MAX_SIZE = 512

#: Extra room around the most rotated, largest head in the cohort's field of view.
FOV_MARGIN = 0.04

#: The provenance file written beside ``cohort.csv``.
PROVENANCE_FILE = "warped_cohort.json"

# World points resampled at once (bounds the memory of large grids).
_SLAB_POINTS = 1 << 20


def output_grid(source: WarpSource, size: int | None = None) -> Grid:
    """The cohort's grid: an isotropic RAS cube centred on the head that holds every pose.

    The cube's side covers the head's bounding box turned by up to 10 degrees in plane and
    scaled by up to 1.1 (the cohort's largest pose), plus 4 %.

    Parameters
    ----------
    source : WarpSource
        The prepared scan.
    size : int, optional
        Voxels along each axis (16..512); by default the scan's finest voxel size sets it.

    Returns
    -------
    Grid
        Shape ``(n, n, n)`` and an affine ``diag(h, h, h)`` whose array centre is the head's
        centre, in the scan's world coordinates (an unwarped subject overlays the scan).

    Raises
    ------
    DataError
        For a size outside 16..512, or a default size above 512.
    """
    theta = math.radians(ROTATION_LIMIT)
    hx, hy, hz = (float(h) for h in source.half_extent)
    turned = max(hx * math.cos(theta) + hy * math.sin(theta), hx * math.sin(theta) + hy * math.cos(theta), hz)
    half = HEAD_SIZE[3] * turned * (1.0 + FOV_MARGIN)
    if size is None:
        spacing = source.spacing
        n = math.ceil(2.0 * half / spacing)
        if n > MAX_SIZE:
            raise DataError(f"the scan's field of view needs {n} voxels per side at its own voxel size; "
                            f"give a size of at most {MAX_SIZE}")
        n = max(n, MIN_SIZE)
    else:
        if isinstance(size, bool) or not isinstance(size, int | np.integer):
            raise DataError(f"size must be a whole number, got {size!r}")
        n = int(size)
        if not MIN_SIZE <= n <= MAX_SIZE:
            raise DataError(f"size must be between {MIN_SIZE} and {MAX_SIZE} voxels, got {n}")
        spacing = 2.0 * half / n
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = source.centre - (n - 1) / 2.0 * spacing
    return Grid((n, n, n), affine)


def bias_field(shape: tuple[int, int, int], amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth multiplicative field between ``1 - amplitude`` and ``1 + amplitude``.

    A random second-order polynomial of the grid coordinates (scaled to -1..1), normalised
    to a peak of 1 over the grid. Always draws nine numbers from ``rng``.
    """
    c = rng.standard_normal(9).astype(np.float32)
    x, y, z = (np.linspace(-1.0, 1.0, n, dtype=np.float32).reshape([-1 if a == b else 1 for b in range(3)])
               for a, n in enumerate(shape))
    third = np.float32(1.0 / 3.0)
    p = (c[0] * x + c[1] * y + c[2] * z + c[3] * x * y + c[4] * x * z + c[5] * y * z
         + c[6] * (x * x - third) + c[7] * (y * y - third) + c[8] * (z * z - third))
    peak = float(np.abs(p).max())
    return (1.0 + np.float32(amplitude / peak if peak > 0 else 0.0) * p).astype(np.float32)


def _rotation(degrees: float) -> np.ndarray:
    t = math.radians(degrees)
    return np.array([[math.cos(t), -math.sin(t), 0.0], [math.sin(t), math.cos(t), 0.0], [0.0, 0.0, 1.0]])


def warp_subject(source: WarpSource, warp: VentricleWarp, factors: WarpedFactors, grid: Grid,
                 rng: np.random.Generator | int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """Render one subject: every spatial change composed into a single resampling of the scan.

    A world point ``y`` of the output grid is mapped back through the pose (``z = c + R^T
    (y - c) / head_size`` about the head's centre ``c``) and through the inverse ventricle
    warp (``x = z + u(z)``), and the scan is interpolated linearly at ``x``, once. Then the
    intensity gamma, the bias field and Rician noise are applied.

    Parameters
    ----------
    source : WarpSource
        The prepared scan.
    warp : VentricleWarp
        Its ventricle warp (calibrated on first use).
    factors : WarpedFactors
        The subject's factors.
    grid : Grid
        The output grid (:func:`output_grid`).
    rng : numpy.random.Generator, int or None
        Randomness of the bias-field shape and the noise.

    Returns
    -------
    image : numpy.ndarray
        float32 on ``grid``.
    ventricles : numpy.ndarray
        float32 on ``grid``: the source ventricle mask carried through the same mapping
        (a partial-volume fraction per voxel, 0..1).
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    inverse = warp.inverse_displacement(warp.alpha_for(factors.ventricle_enlargement))
    back = _rotation(factors.rotation_inplane).T / factors.head_size
    centre = source.centre.reshape(3, 1)
    mask = source.ventricles.astype(np.float32)
    shape = grid.shape
    image = np.empty(shape, dtype=np.float32)
    ventricles = np.empty(shape, dtype=np.float32)
    rows = max(1, _SLAB_POINTS // (shape[1] * shape[2]))
    j, k = np.meshgrid(np.arange(shape[1], dtype=np.float64), np.arange(shape[2], dtype=np.float64), indexing="ij")
    for first in range(0, shape[0], rows):
        i = np.arange(first, min(first + rows, shape[0]), dtype=np.float64)
        index = np.stack(np.broadcast_arrays(i[:, None, None], j[None], k[None])).reshape(3, -1)
        y = grid.affine[:3, :3] @ index + grid.affine[:3, 3:]
        z = centre + back @ (y - centre)
        x = z + displace(inverse, warp.grid, z)
        image[first:first + len(i)] = sample(source.data, source.affine, x).reshape(len(i), *shape[1:])
        ventricles[first:first + len(i)] = sample(mask, source.affine, x).reshape(len(i), *shape[1:])
    np.clip(image, 0.0, None, out=image)
    if factors.gamma != 1.0:
        np.power(image, np.float32(factors.gamma), out=image)
    field = bias_field(shape, factors.bias_field, rng)
    if factors.bias_field > 0:
        image *= field
    if factors.noise > 0:
        sigma = np.float32(factors.noise)
        real = image + sigma * rng.standard_normal(shape, dtype=np.float32)
        imaginary = sigma * rng.standard_normal(shape, dtype=np.float32)
        image = np.sqrt(real * real + imaginary * imaginary)
    return image.astype(np.float32, copy=False), ventricles


@dataclass
class WarpedCohortInfo(CohortInfo):
    """What :func:`make_warped_cohort` wrote: :class:`~napari_latent.volumes.phantoms.CohortInfo`, and more.

    Attributes
    ----------
    factors : list of WarpedFactors
        The known factors per subject (the other fields as in ``CohortInfo``).
    ventricle_volumes_mm3 : list of float
        The ventricles' volume measured on each written subject (the ``ventricle_volume_mm3`` column).
    source : WarpSource
        The prepared scan (its path, ventricle mask, centre, ...).
    grid : Grid
        The grid of every subject.
    label_paths : list of Path
        The ventricle masks (empty without labels).
    """

    factors: list[WarpedFactors]  # type: ignore[assignment]
    ventricle_volumes_mm3: list[float]
    source: WarpSource
    grid: Grid
    label_paths: list[Path]


def _file_digest(path: Path) -> str | None:
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_arguments(n_subjects: int, seed: int, disease_fraction: float) -> tuple[int, int, float]:
    if isinstance(n_subjects, bool) or not isinstance(n_subjects, int | np.integer) or n_subjects < 1:
        raise DataError(f"n_subjects must be a whole number of at least 1, got {n_subjects!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise DataError(f"seed must be a non-negative whole number, got {seed!r}")
    try:
        fraction = float(disease_fraction)
    except (TypeError, ValueError):
        raise DataError(f"disease_fraction must be a number between 0 and 1, got {disease_fraction!r}") from None
    if not 0.0 <= fraction <= 1.0:
        raise DataError(f"disease_fraction must be between 0 and 1, got {disease_fraction!r}")
    return int(n_subjects), int(seed), fraction


def make_warped_cohort(out_dir: str | os.PathLike[str], source: str | os.PathLike[str] | Volume | None = None,
                       n_subjects: int = 40, seed: int = 0, size: int | None = None,
                       disease_fraction: float = 0.5, write_labels: bool = True,
                       progress: Callable[[int, int], None] | None = None) -> WarpedCohortInfo:
    """Write a cohort of healthy and disease subjects warped from one real scan, with a ``cohort.csv``.

    Every subject is the source scan with known changes: its lateral ventricles enlarged by
    a known volume factor (the disease factor), turned in plane, scaled, with an intensity
    gamma, a bias field and noise (the nuisances). See :func:`sample_warped_factors` for the
    distributions and :mod:`napari_latent.volumes.warped.deform` for the enlargement.

    Parameters
    ----------
    out_dir : path-like
        Output folder (created if missing). Files already there with the same names are replaced.
    source : path-like, Volume or None
        The scan: any format :func:`~napari_latent.volumes.open_volume` reads, or ``None``
        (or ``"anatomical"``) for nibabel's real T1 scan ``nibabel/tests/data/anatomical.nii``.
        It must be a T1-weighted brain (dark ventricles near the centre).
    n_subjects : int
        Number of subjects (at least 1).
    seed : int
        Seed of the groups, the factors, the bias fields and the noise. The same arguments
        write byte-identical files.
    size : int, optional
        Voxels along each axis of the cubic output grid (16..512); by default the scan's
        finest voxel size sets the grid.
    disease_fraction : float
        Fraction of disease subjects, 0..1: exactly ``round(n_subjects * disease_fraction)``,
        in an order shuffled by the seed.
    write_labels : bool
        Also write each subject's ventricle mask (uint8) as ``labels/sub-XXX_ventricles.nii.gz``.
    progress : callable, optional
        Called as ``progress(done, total)`` after each subject.

    Returns
    -------
    WarpedCohortInfo
        The folder, the table and, per subject, the path, group, factors and ventricle volume.

    Raises
    ------
    VolumeError
        If the scan cannot be read.
    DataError
        For bad arguments, or a scan without a head or ventricles to find.
    """
    n_subjects, seed, fraction = _check_arguments(n_subjects, seed, disease_fraction)
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder}: exists and is not a folder")
    prepared = prepare_source(source)
    grid = output_grid(prepared, size)
    warp = VentricleWarp(prepared)
    folder.mkdir(parents=True, exist_ok=True)

    n_disease = round(n_subjects * fraction)
    group_rng, factor_rng, subject_rng = np.random.default_rng(seed).spawn(3)
    groups = ["disease"] * n_disease + ["healthy"] * (n_subjects - n_disease)
    groups = [groups[i] for i in group_rng.permutation(n_subjects)]
    factors = [sample_warped_factors(g, factor_rng) for g in groups]
    subject_seeds = subject_rng.integers(0, 2**31 - 1, size=n_subjects)

    voxel_mm3 = float(abs(np.linalg.det(grid.affine[:3, :3])))
    width = max(3, len(str(n_subjects)))
    paths: list[Path] = []
    label_paths: list[Path] = []
    volumes: list[float] = []
    lines = [",".join(["path", "group", *WARPED_FACTOR_NAMES, "ventricle_volume_mm3", "labels"])]
    for i, (group, fac) in enumerate(zip(groups, factors)):
        name = f"sub-{i + 1:0{width}d}"
        image, ventricles = warp_subject(prepared, warp, fac, grid, int(subject_seeds[i]))
        volume_mm3 = float(ventricles.astype(np.float64).sum()) * voxel_mm3
        paths.append(save_volume(image, folder / f"{name}.nii.gz", affine=grid.affine,
                                 description=f"napari-latent warped {group}"))
        label_rel = ""
        if write_labels:
            label_rel = f"labels/{name}_ventricles.nii.gz"
            label_paths.append(save_volume((ventricles >= 0.5).astype(np.uint8), folder / label_rel,
                                           affine=grid.affine, dtype=np.uint8,
                                           description="napari-latent warped ventricles"))
        volumes.append(volume_mm3)
        values = [repr(float(v)) for v in fac.to_dict().values()]
        lines.append(",".join([f"{name}.nii.gz", group, *values, repr(round(volume_mm3, 3)), label_rel]))
        if progress is not None:
            progress(i + 1, n_subjects)
    csv_path = write_text_atomic(folder / "cohort.csv", "\n".join(lines) + "\n")
    write_json_atomic(folder / PROVENANCE_FILE, {
        "generator": "napari_latent.volumes.warped.make_warped_cohort",
        "source": str(prepared.path),
        "source_sha256": _file_digest(prepared.path),
        "source_shape": [int(n) for n in prepared.data.shape],
        "source_affine": prepared.affine.tolist(),
        "source_intensity_scale": prepared.intensity_scale,
        "source_ventricle_voxels": int(np.count_nonzero(prepared.ventricles)),
        "source_ventricle_volume_mm3": prepared.ventricle_volume_mm3,
        "head_centre_mm": [float(v) for v in prepared.centre],
        "smoothing_mm": warp.smoothing_mm,
        "grid_shape": list(grid.shape),
        "grid_affine": grid.affine.tolist(),
        "n_subjects": n_subjects,
        "n_disease": n_disease,
        "seed": seed,
        "factors": list(WARPED_FACTOR_NAMES),
    })
    return WarpedCohortInfo(folder, csv_path, paths, groups, factors, volumes, prepared, grid, label_paths)
