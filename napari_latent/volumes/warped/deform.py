"""Enlarging the ventricles by a known volume factor: a diffeomorphic push away from them.

The warp is the exponential of a stationary velocity field ``alpha * v``: ``v`` is minus the
gradient of the ventricle mask smoothed by a Gaussian (``smoothing_mm``), scaled to a peak
speed of 1 mm. It points away from the ventricles everywhere, is largest at their walls and
fades to nothing a few ``smoothing_mm`` away, so the walls move outward, the tissue around
them is pushed back and compressed, and the head's outline stays where it is. The
exponential of a smooth stationary field is a diffeomorphism (smooth, one to one, with a
smooth inverse, whose inverse is the exponential of ``-alpha * v``); it is computed by
scaling and squaring. ``alpha`` (mm of peak push per unit of time) is calibrated so that the
ventricles' volume grows by the asked factor; ``alpha < 0`` shrinks them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ...errors import DataError
from .source import WarpSource

#: Gaussian smoothing (mm) of the ventricle mask whose gradient is the push.
SMOOTHING_MM = 5.0

#: Most points along any axis of the grid the field lives on.
MAX_FIELD_POINTS = 128

#: Relative tolerance of the achieved volume factor.
FACTOR_TOLERANCE = 2e-3

#: Volume factors the calibration accepts.
FACTOR_RANGE = (0.5, 3.0)


@dataclass(frozen=True)
class FieldGrid:
    """An axis-aligned (RAS) isotropic grid in world coordinates that a displacement field lives on."""

    origin: np.ndarray
    spacing: float
    shape: tuple[int, int, int]

    def index(self, points: np.ndarray) -> np.ndarray:
        """Fractional grid indices of world points ``(3, ...)``."""
        return (points - self.origin.reshape((3,) + (1,) * (points.ndim - 1))) / self.spacing

    def points(self) -> np.ndarray:
        """World coordinates ``(3, *shape)`` of every grid point (float64)."""
        axes = [self.origin[a] + self.spacing * np.arange(n) for a, n in enumerate(self.shape)]
        return np.stack(np.meshgrid(*axes, indexing="ij"))

    @property
    def affine(self) -> np.ndarray:
        """The grid's 4x4 voxel-to-world matrix."""
        affine = np.diag([self.spacing] * 3 + [1.0])
        affine[:3, 3] = self.origin
        return affine


def sample(image: np.ndarray, affine: np.ndarray, points: np.ndarray, cval: float = 0.0) -> np.ndarray:
    """Linear interpolation of ``image`` (grid ``affine``) at world points ``(3, ...)``; ``cval`` outside."""
    inverse = np.linalg.inv(affine)
    flat = points.reshape(3, -1)
    index = inverse[:3, :3] @ flat + inverse[:3, 3:]
    values = ndimage.map_coordinates(image, index, order=1, mode="grid-constant", cval=cval, prefilter=False)
    return values.reshape(points.shape[1:])


def displace(field: np.ndarray, grid: FieldGrid, points: np.ndarray) -> np.ndarray:
    """Displacement ``(3, ...)`` of a field on ``grid``, interpolated at world points ``(3, ...)``."""
    index = grid.index(points).reshape(3, -1)
    return np.stack([ndimage.map_coordinates(field[c], index, order=1, mode="nearest", prefilter=False)
                     for c in range(3)]).reshape(points.shape).astype(points.dtype, copy=False)


def exponentiate(velocity: np.ndarray, spacing: float) -> np.ndarray:
    """The displacement of the exponential of a stationary velocity field (scaling and squaring).

    Parameters
    ----------
    velocity : numpy.ndarray
        ``(3, i, j, k)`` velocity in mm (world axes of an axis-aligned RAS grid).
    spacing : float
        The grid's voxel size in mm.

    Returns
    -------
    numpy.ndarray
        ``(3, i, j, k)`` displacement in mm of the map ``x -> x + u(x)``.
    """
    speed = float(np.sqrt((velocity.astype(np.float64) ** 2).sum(axis=0)).max())
    steps = max(4, math.ceil(math.log2(max(speed, 1e-12) / (0.25 * spacing))) + 1)
    u = (velocity / 2.0**steps).astype(np.float64)
    index = np.stack(np.meshgrid(*(np.arange(n, dtype=np.float64) for n in velocity.shape[1:]), indexing="ij"))
    for _ in range(steps):
        where = index + u / spacing
        u = u + np.stack([ndimage.map_coordinates(u[c], where, order=1, mode="nearest", prefilter=False)
                          for c in range(3)])
    return u.astype(np.float32)


class VentricleWarp:
    """The ventricle enlargement of one source scan, with its calibration.

    Parameters
    ----------
    source : WarpSource
        The scan and its ventricle mask.
    smoothing_mm : float
        Gaussian smoothing of the mask (mm): how far from the walls the push reaches.
    """

    def __init__(self, source: WarpSource, smoothing_mm: float = SMOOTHING_MM) -> None:
        self.source = source
        self.smoothing_mm = float(smoothing_mm)
        centre, half = source.centre, source.half_extent + 4.0 * self.smoothing_mm
        spacing = max(source.spacing, float(2.0 * half.max()) / MAX_FIELD_POINTS)
        shape = tuple(math.ceil(2.0 * float(h) / spacing) + 1 for h in half)
        origin = centre - (np.array(shape) - 1) / 2.0 * spacing
        self.grid = FieldGrid(origin, spacing, shape)  # type: ignore[arg-type]
        self._mask = source.ventricles.astype(np.float32)
        self._points = self.grid.points()
        fuzzy = sample(self._mask, source.affine, self._points)
        smooth = ndimage.gaussian_filter(fuzzy.astype(np.float64), self.smoothing_mm / spacing)
        push = -np.stack(np.gradient(smooth, spacing))
        peak = float(np.sqrt((push**2).sum(axis=0)).max())
        if not peak > 0:
            raise DataError("the ventricle mask is empty; nothing to enlarge")
        self.velocity = (push / peak).astype(np.float32)
        self.base_volume_mm3 = self._volume(np.zeros_like(self.velocity))
        self._table: dict[float, float] = {0.0: 1.0}
        self._last: tuple[float, np.ndarray] | None = None

    def inverse_displacement(self, alpha: float) -> np.ndarray:
        """``(3, *grid.shape)`` displacement (mm) of the inverse warp for push ``alpha``.

        A point ``z`` of the warped anatomy came from ``z + u(z)`` in the source anatomy.
        """
        alpha = float(alpha)
        if alpha == 0.0:
            return np.zeros_like(self.velocity)
        if self._last is None or self._last[0] != alpha:
            self._last = (alpha, exponentiate(-alpha * self.velocity, self.grid.spacing))
        return self._last[1]

    def _volume(self, inverse: np.ndarray) -> float:
        warped = sample(self._mask, self.source.affine, self._points + inverse)
        return float(warped.astype(np.float64).sum()) * self.grid.spacing**3

    def factor(self, alpha: float) -> float:
        """Volume factor of the ventricles under push ``alpha`` (warped volume / source volume)."""
        alpha = float(alpha)
        if alpha not in self._table:
            self._table[alpha] = self._volume(self.inverse_displacement(alpha)) / self.base_volume_mm3
        return self._table[alpha]

    def alpha_for(self, factor: float) -> float:
        """The push ``alpha`` that scales the ventricles' volume by ``factor`` (within 0.2 %).

        Brackets the root by doubling, then refines it by regula falsi (Illinois): the volume
        factor grows monotonically with ``alpha``.

        Raises
        ------
        DataError
            For a factor outside 0.5..3.0, or one the warp cannot reach.
        """
        factor = float(factor)
        if not FACTOR_RANGE[0] <= factor <= FACTOR_RANGE[1]:
            raise DataError(f"a ventricle volume factor must be between {FACTOR_RANGE[0]:g} and "
                            f"{FACTOR_RANGE[1]:g}, got {factor!r}")
        if abs(factor - 1.0) <= FACTOR_TOLERANCE:
            return 0.0
        sign = 1.0 if factor > 1.0 else -1.0
        lo, f_lo = 0.0, 1.0
        known = sorted((a, f) for a, f in self._table.items() if a * sign > 0)
        hi = next((a for a, f in (known if sign > 0 else known[::-1]) if (f - factor) * sign >= 0), None)
        step = sign * self.grid.spacing
        for a, f in known:
            if (f - factor) * sign < 0 and abs(a) > abs(lo):
                lo, f_lo = a, f
        while hi is None:
            candidate = lo + step if lo else step
            f = self.factor(candidate)
            if (f - factor) * sign >= 0:
                hi = candidate
            elif abs(candidate) > 4.0 * float(self.source.half_extent.max()):
                raise DataError(f"cannot change the ventricles' volume by a factor {factor:g} in this scan")
            else:
                lo, f_lo, step = candidate, f, step * 2.0
        f_hi = self.factor(hi)
        g_lo, g_hi = f_lo - factor, f_hi - factor
        alpha = hi
        for _ in range(60):
            alpha = hi - g_hi * (hi - lo) / (g_hi - g_lo)
            g = self.factor(alpha) - factor
            if abs(g) <= FACTOR_TOLERANCE * factor:
                return alpha
            if g * g_hi < 0:
                lo, g_lo = hi, g_hi
            else:
                g_lo /= 2.0
            hi, g_hi = alpha, g
        return alpha
