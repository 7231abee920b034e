"""Implicit shapes (signed distance functions) and the anti-aliased canvas phantoms are painted on."""

from __future__ import annotations

import math

import numpy as np


def ellipsoid_sdf(x: np.ndarray, y: np.ndarray, z: np.ndarray, a, b, c) -> np.ndarray:
    """Approximate signed distance (mm, negative inside) to an axis-aligned ellipsoid."""
    xa, yb, zc = x / a, y / b, z / c
    k0 = np.sqrt(xa * xa + yb * yb + zc * zc)
    xa /= a
    yb /= b
    zc /= c
    k1 = np.sqrt(xa * xa + yb * yb + zc * zc)
    num = k0 * (k0 - 1.0)
    inner = -float(min(np.min(a), np.min(b), np.min(c)))
    return np.divide(num, k1, out=np.full_like(num, inner), where=k1 > 0)


def ellipse_sdf(x: np.ndarray, y: np.ndarray, a: float, b: float) -> np.ndarray:
    """Approximate signed distance (mm) to an ellipse in a plane."""
    xa, yb = x / a, y / b
    k0 = np.sqrt(xa * xa + yb * yb)
    k1 = np.sqrt((xa / a) ** 2 + (yb / b) ** 2)
    num = k0 * (k0 - 1.0)
    return np.divide(num, k1, out=np.full_like(num, -float(min(np.min(a), np.min(b)))), where=k1 > 0)


def segment_distance(x: np.ndarray, y: np.ndarray, p0: tuple[float, float], p1: tuple[float, float]) -> np.ndarray:
    """Distance (mm) from points of a plane to a line segment."""
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    t = np.clip(((x - p0[0]) * dx + (y - p0[1]) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    return np.hypot(x - p0[0] - t * dx, y - p0[1] - t * dy)


def smooth_min(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Union of two shapes with a fillet of about ``k`` mm."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def round_max(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection of two shapes with a rounded edge (exact for perpendicular planes)."""
    outside = (a > 0) & (b > 0)
    return np.where(outside, np.hypot(np.maximum(a, 0), np.maximum(b, 0)), np.maximum(a, b))


def smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def rotation(inplane_deg: float, pitch_deg: float) -> np.ndarray:
    """Head-to-world rotation: pitch about +x (R), then turn about +z (S)."""
    a, b = math.radians(inplane_deg), math.radians(pitch_deg)
    rz = np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(b), -math.sin(b)], [0.0, math.sin(b), math.cos(b)]])
    return rz @ rx


def densify(path: np.ndarray, step: float) -> np.ndarray:
    """Resample a polyline of control rows (xyz + attributes) every ``step`` mm or less."""
    seg = np.linalg.norm(np.diff(path[:, :3], axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0.0, arc[-1], max(2, math.ceil(arc[-1] / step) + 1))
    return np.stack([np.interp(t, arc, path[:, j]) for j in range(path.shape[1])], axis=1)


def tube_sdf(points: np.ndarray, path: np.ndarray, chunk: int = 32768) -> np.ndarray:
    """Approximate SDF of a union of ellipsoids placed densely along a path.

    ``path`` rows are ``u, v, w, ru, rv, rw, tilt``; the tilt (radians) turns the cross-section
    about the v axis. Returns ``(smallest normalised radius - 1) * smallest semi-axis``.
    """
    reach = path[:, 3:6].max() + 4.0
    inside = np.all((points >= path[:, :3].min(axis=0) - reach) & (points <= path[:, :3].max(axis=0) + reach), axis=1)
    out = np.full(len(points), 1e3, dtype=np.float32)
    box = np.flatnonzero(inside)
    points = points[box]
    c = path[:, :3].astype(np.float32)
    inv = (1.0 / path[:, 3:6]).astype(np.float32)
    cos_t = (np.cos(path[:, 6]) * inv[:, 0]).astype(np.float32)
    sin_t = (np.sin(path[:, 6]) * inv[:, 0]).astype(np.float32)
    cos_w = (np.cos(path[:, 6]) * inv[:, 2]).astype(np.float32)
    sin_w = (np.sin(path[:, 6]) * inv[:, 2]).astype(np.float32)
    rmin = path[:, 3:6].min(axis=1).astype(np.float32)
    for start in range(0, len(points), chunk):
        p = points[start:start + chunk]
        du = p[:, 0:1] - c[:, 0]
        dv = (p[:, 1:2] - c[:, 1]) * inv[:, 1]
        dw = p[:, 2:3] - c[:, 2]
        ru = du * cos_t + dw * sin_t
        rw = dw * cos_w - du * sin_w
        q = ru * ru + dv * dv + rw * rw
        k = np.argmin(q, axis=1)
        out[box[start:start + chunk]] = (np.sqrt(q[np.arange(len(p)), k]) - 1.0) * rmin[k]
    return out


def waves(rng: np.random.Generator, n: int, kappa: float, dim: int = 3,
           spread: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Random wave vectors (n x dim, length ``kappa`` +- ``spread``) and phases of a smooth random field."""
    directions = rng.normal(size=(n, dim))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    lengths = kappa * rng.uniform(1.0 - spread, 1.0 + spread, size=n)
    phases = rng.uniform(0.0, 2.0 * math.pi, size=n)
    return (directions * lengths[:, None]).astype(np.float32), phases.astype(np.float32)


def zero_set_distance(x: np.ndarray, waves: np.ndarray, phases: np.ndarray,
                       radial: bool = False) -> np.ndarray:
    """Distance (mm) to the zero set of ``n(x) = sum cos(k . x + phase)``, as ``|n| / |grad n|``.

    With ``radial`` the field is evaluated on the directions ``s = x / |x|`` (a field on the
    sphere), so its zero set is a network of sheets through the centre, like sulci; the
    gradient is then the tangential one, scaled by ``1 / |x|``.
    """
    if radial:
        r = np.sqrt(np.einsum("ij,ij->i", x, x))
        x = x / np.maximum(r, 1e-3)[:, None]
    arg = x @ waves.T + phases
    value = np.cos(arg).sum(axis=1)
    grad = np.sin(arg) @ waves
    if radial:
        grad -= np.einsum("ij,ij->i", grad, x)[:, None] * x
        grad /= np.maximum(r, 1e-3)[:, None]
    gnorm = np.sqrt(np.einsum("ij,ij->i", grad, grad))
    return np.abs(value) / np.maximum(gnorm, 1e-4)


def field(x: np.ndarray, waves: np.ndarray, phases: np.ndarray) -> np.ndarray:
    """A smooth random field with values mostly in [-1, 1]."""
    return np.cos(x @ waves.T + phases).sum(axis=1) / math.sqrt(len(phases) / 2.0) / 2.0


class Canvas:
    """Paints shapes given by signed distances, with a one-voxel anti-aliasing ramp.

    Later shapes cover earlier ones; the label of a voxel is that of the last shape whose
    signed distance is negative there.
    """

    def __init__(self, n: int, ramp: float) -> None:
        self.image = np.zeros(n, dtype=np.float32)
        self.labels = np.zeros(n, dtype=np.uint8)
        self.ramp = ramp

    def paint(self, idx: np.ndarray | None, sdf: np.ndarray, value: float, label: int) -> None:
        alpha = np.clip(0.5 - sdf / self.ramp, 0.0, 1.0).astype(np.float32)
        touched = np.flatnonzero(alpha > 0)
        ii = touched if idx is None else idx[touched]
        a = alpha[touched]
        self.image[ii] += a * (np.float32(value) - self.image[ii])
        self.labels[ii[sdf[touched] < 0]] = label

# -- the phantom ----------------------------------------------------------------------------
