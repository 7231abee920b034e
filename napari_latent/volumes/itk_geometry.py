"""Geometry between ITK images (SimpleITK) and our volumes: ITK's LPS origin, spacing and
direction to and from the RAS+ voxel-to-world affine, and the voxel order.

ITK describes an image by its ``origin`` (the world position of voxel 0), ``spacing`` (mm
per voxel along each index axis) and ``direction`` (a 3x3 matrix whose *columns* are the
index axes' unit vectors), all in DICOM patient coordinates, LPS (x to the patient's left,
y to posterior, z to superior). Our affines are RAS+ (nibabel's convention), so::

    affine_ras = diag(-1, -1, 1, 1) @ [[direction @ diag(spacing), origin], [0, 0, 0, 1]]

SimpleITK's ``GetArrayFromImage`` returns the voxels in ``(k, j, i)`` (z, y, x) order; a
:class:`~napari_latent.volumes.io.Volume` holds them in index order ``(i, j, k)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import SimpleITK as sitk

#: LPS <-> RAS: flip x and y.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def affine_from_itk(origin: tuple[float, ...], spacing: tuple[float, ...],
                    direction: tuple[float, ...]) -> np.ndarray:
    """The RAS+ affine of a 3D ITK geometry.

    Parameters
    ----------
    origin : tuple of float
        World (LPS, mm) position of voxel 0; the first three values are used.
    spacing : tuple of float
        mm per voxel along each index axis; the first three values are used.
    direction : tuple of float
        The direction matrix, row-major, ``n * n`` values for an ``n``-D image (the
        spatial 3x3 block is used).

    Returns
    -------
    numpy.ndarray
        4x4 float64 voxel-to-world (RAS+, mm) matrix.
    """
    n = round(len(direction) ** 0.5)
    if n * n != len(direction) or n < 3:
        raise ValueError(f"a direction of {len(direction)} values is not a square matrix of 3 or more dimensions")
    matrix = np.asarray(direction, dtype=np.float64).reshape(n, n)[:3, :3]
    lps = np.eye(4)
    lps[:3, :3] = matrix * np.asarray(spacing[:3], dtype=np.float64)[None, :]
    lps[:3, 3] = np.asarray(origin[:3], dtype=np.float64)
    return LPS_TO_RAS @ lps


def itk_from_affine(affine: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """ITK ``(origin, spacing, direction)`` of a RAS+ affine (the inverse of :func:`affine_from_itk`).

    A sheared affine has no exact ITK form: its columns are normalised and ITK keeps the
    non-orthogonal direction as given.
    """
    lps = LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)
    columns = lps[:3, :3]
    spacing = np.linalg.norm(columns, axis=0)
    direction = columns / spacing[None, :]
    return (tuple(float(v) for v in lps[:3, 3]), tuple(float(v) for v in spacing),
            tuple(float(v) for v in direction.ravel()))


def array_from_itk(image: sitk.Image) -> np.ndarray:
    """The voxels of a 3D or 4D SimpleITK image in index order ``(i, j, k[, t])``, float32."""
    import SimpleITK as sitk

    array = sitk.GetArrayViewFromImage(image)
    return np.ascontiguousarray(np.asarray(array, dtype=np.float32).transpose(tuple(range(array.ndim))[::-1]))


def itk_from_array(data: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """A 3D SimpleITK image of index-ordered voxels ``(i, j, k)`` on a RAS+ affine.

    Used to write NRRD and MetaImage copies of volumes (tests, conversions); the voxel type
    is kept.
    """
    import SimpleITK as sitk

    data = np.asarray(data)
    if data.ndim != 3:
        raise ValueError(f"a 3D array is needed, got shape {data.shape}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    origin, spacing, direction = itk_from_affine(affine)
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    return image
