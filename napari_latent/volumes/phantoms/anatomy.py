"""The anatomy of a phantom head and :func:`make_phantom`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ...errors import DataError
from .factors import PhantomFactors
from .shapes import (
    Canvas,
    densify,
    ellipse_sdf,
    ellipsoid_sdf,
    field,
    rotation,
    round_max,
    segment_distance,
    smooth_min,
    smoothstep,
    tube_sdf,
    waves,
    zero_set_distance,
)

#: Field of view (mm) along every axis when no spacing is given.
DEFAULT_FOV_MM = 192.0

MIN_SIZE = 16
MAX_SIZE = 512

# Voxels rendered at once (a slab of the grid); bounds the memory of large phantoms.
_SLAB_VOXELS = 1 << 21


@dataclass
class Phantom:
    """One synthetic T1-weighted head.

    Attributes
    ----------
    image : numpy.ndarray
        float32 ``(size, size, size)`` T1-like intensities: white matter about 1.0 (before
        bias and noise), grey matter about 0.64 (0.72 in the deep nuclei), CSF about 0.2,
        lesions about 0.38, skull about 0.07, scalp fat about 0.8, neck muscle about 0.45,
        air 0 (plus Rician noise).
    labels : numpy.ndarray
        uint8, same shape: see :attr:`LABEL_NAMES`.
    affine : numpy.ndarray
        4x4 voxel-to-world matrix (RAS+, mm). Array axes run left->right, posterior->anterior
        and inferior->superior (orientation ``RAS``); the array centre is the world origin.
    factors : PhantomFactors
        The factors the phantom was made with.
    """

    image: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    factors: PhantomFactors

    LABEL_NAMES: ClassVar[dict[int, str]] = {
        0: "background",
        1: "scalp",
        2: "skull",
        3: "csf",
        4: "grey matter",
        5: "white matter",
        6: "ventricles",
        7: "lesions",
    }

    @property
    def spacing(self) -> float:
        """Voxel size in mm (isotropic)."""
        return float(self.affine[0, 0])


# -- intensities and anatomy constants (mm in the head's own frame at head_size 1) --------------

_I_SCALP = 0.80
_I_MUSCLE = 0.45
_I_SKULL = 0.07
_I_MARROW = 0.50
_I_DISC = 0.32
_I_CSF = 0.20
_I_VENTRICLE = 0.18
_I_LESION = 0.38
_I_WM = 1.0
_GM_DROP = 0.36        # cortical grey matter = WM - contrast * 0.36
_DEEP_GM_DROP = 0.28   # deep grey nuclei
_STEM_DROP = 0.15      # brainstem
_CORD_DROP = 0.25      # spinal cord
_CB_WM = 0.96          # cerebellar white matter relative to cerebral

_CRANIUM = (67.0, 78.0, 66.0, 82.0)   # skin semi-axes: left-right, anterior-posterior, up, down
_SCALP_MM = 4.5
_SKULL_MM = 6.0
_BRAIN_CENTRE = (0.0, -4.0, 4.0)
_CEREBELLUM_CENTRE = (0.0, -36.0, -38.0)
_CC = (-2.0, -3.0, 34.0, 21.0)        # corpus callosum arch: centre v, w and semi-axes (outer)

# Lateral ventricle (right side) control points: u, v, w, radius u, radius v, radius w, tilt (deg).
_VENTRICLE_PATH = np.array([
    [3.0, 23.0, 1.0, 3.5, 4.0, 4.0, 40.0],    # frontal horn tip
    [3.4, 18.0, 3.5, 4.2, 4.0, 5.0, 40.0],
    [4.1, 12.0, 5.5, 4.8, 4.0, 4.8, 35.0],
    [5.3, 5.0, 7.0, 5.8, 4.0, 3.6, 28.0],     # body
    [6.0, -2.0, 7.5, 6.4, 4.0, 3.2, 25.0],
    [6.3, -9.0, 7.5, 6.6, 4.0, 3.2, 22.0],
    [7.4, -16.0, 7.0, 6.5, 4.0, 3.6, 18.0],
    [11.0, -22.0, 5.0, 6.0, 4.5, 5.0, 15.0],  # atrium
    [14.0, -27.0, 2.0, 5.5, 4.5, 6.0, 10.0],
    [16.0, -33.0, 0.0, 4.0, 4.0, 4.0, 5.0],   # occipital horn
    [17.0, -38.0, -1.0, 2.6, 3.5, 2.6, 0.0],
    [17.5, -42.0, -1.0, 1.6, 3.0, 1.6, 0.0],
])
_TEMPORAL_HORN_PATH = np.array([
    [15.0, -27.0, -1.0, 4.5, 4.0, 4.5, 0.0],
    [19.0, -26.0, -7.0, 3.5, 4.0, 3.5, 0.0],
    [22.0, -21.0, -13.0, 2.6, 4.0, 2.6, 0.0],
    [24.0, -14.0, -17.0, 2.0, 4.0, 2.0, 0.0],
    [25.0, -7.0, -19.0, 1.7, 3.5, 1.7, 0.0],
])
# Deep grey nuclei (right side): centre u, v, w and semi-axes.
_NUCLEI = (
    ((7.5, -11.0, -2.0), (6.5, 11.0, 7.0)),     # thalamus
    ((10.5, 14.0, 2.0), (4.5, 9.0, 7.5)),       # caudate head
    ((9.0, 2.0, 8.5), (2.8, 10.0, 3.0)),        # caudate body
    ((22.0, 3.0, -4.0), (5.0, 12.0, 8.0)),      # lentiform nucleus
    ((21.0, -14.0, -18.0), (4.5, 12.0, 4.0)),   # hippocampus
    ((0.0, 3.0, -17.0), (5.0, 7.0, 4.5)),       # hypothalamus (on the midline)
)
# Brainstem and spinal cord along the midline: u, v, w, radius u, radius v, radius w, tilt.
_STEM_PATH = np.array([
    [0.0, -14.0, -8.0, 8.5, 7.0, 6.0, 0.0],     # midbrain
    [0.0, -16.0, -16.0, 8.0, 7.5, 6.0, 0.0],
    [0.0, -15.5, -28.0, 10.0, 9.5, 10.0, 0.0],  # pons
    [0.0, -17.0, -42.0, 7.0, 6.5, 6.0, 0.0],    # medulla
    [0.0, -19.0, -56.0, 5.5, 5.5, 6.0, 0.0],
    [0.0, -21.0, -75.0, 5.0, 5.0, 6.0, 0.0],    # spinal cord
    [0.0, -23.0, -140.0, 5.0, 5.0, 6.0, 0.0],
])


# -- small geometry helpers ---------------------------------------------------------------------


def _check_size(size: int, spacing: float | None) -> tuple[int, float]:
    if isinstance(size, bool) or not isinstance(size, int | np.integer):
        raise DataError(f"size must be a whole number, got {size!r}")
    size = int(size)
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise DataError(f"size must be between {MIN_SIZE} and {MAX_SIZE} voxels, got {size}")
    if spacing is None:
        return size, DEFAULT_FOV_MM / size
    try:
        spacing = float(spacing)
    except (TypeError, ValueError):
        raise DataError(f"spacing must be a number of mm, got {spacing!r}") from None
    if not math.isfinite(spacing) or spacing <= 0:
        raise DataError(f"spacing must be a positive number of mm, got {spacing!r}")
    return size, spacing


def _phantom_affine(size: int, spacing: float) -> np.ndarray:
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = -(size - 1) / 2.0 * spacing
    return affine


def make_phantom(factors: PhantomFactors | None = None, size: int = 64, spacing: float | None = None,
                 seed: int | np.random.Generator | None = 0) -> Phantom:
    """Make one synthetic T1-weighted head.

    Parameters
    ----------
    factors : PhantomFactors, optional
        The generating factors (defaults: a healthy, upright, average head).
    size : int
        Voxels along each axis (16..512).
    spacing : float, optional
        Voxel size in mm; by default the field of view is 192 mm (``192 / size`` mm).
        The head (with margin for ``head_size`` up to 1.15 and rotations up to 15 degrees)
        fits in 192 mm; with a smaller field of view it is cut off.
    seed : int or numpy.random.Generator or None
        Chooses the subject's random anatomy (folding pattern, ventricle asymmetry, where
        lesions appear), the bias-field shape and the noise. The same seed and arguments
        give the same phantom.

    Returns
    -------
    Phantom
        The image, the tissue labels, the affine and the factors.

    Raises
    ------
    DataError
        For a size outside 16..512 or a non-positive spacing.
    """
    factors = PhantomFactors() if factors is None else factors
    if not isinstance(factors, PhantomFactors):
        raise DataError(f"factors must be a PhantomFactors, got {type(factors).__name__}")
    size, spacing = _check_size(size, spacing)
    rng = np.random.default_rng(seed)
    anatomy_rng, lesion_rng, bias_rng, noise_rng = rng.spawn(4)
    plan = _Plan.make(factors, anatomy_rng, lesion_rng)
    affine = _phantom_affine(size, spacing)
    axis = (affine[0, 3] + spacing * np.arange(size)).astype(np.float32)
    bias = _Bias(axis, factors.bias_field, bias_rng)

    # The grid points mapped into the head frame, q = R^T p / head_size, slab by slab (along
    # the first axis, so that every slab is a contiguous block of the output) to bound memory.
    rot = rotation(factors.rotation_inplane, factors.rotation_outofplane)
    inv = (rot.T / factors.head_size).astype(np.float32)
    ramp = spacing / factors.head_size
    image = np.empty((size, size, size), dtype=np.float32)
    labels = np.empty((size, size, size), dtype=np.uint8)
    step = max(1, _SLAB_VOXELS // (size * size))
    sigma = np.float32(factors.noise * _I_WM)
    for start in range(0, size, step):
        x = axis[start:start + step]
        local = [(inv[k, 0] * x[:, None, None] + inv[k, 1] * axis[None, :, None]
                  + inv[k, 2] * axis[None, None, :]).ravel() for k in range(3)]
        canvas = Canvas(len(local[0]), ramp)
        _paint_head(canvas, local, factors, plan)
        slab = canvas.image.reshape(len(x), size, size)
        if factors.bias_field > 0:
            slab *= bias.field(x)
        if factors.noise > 0:
            real = slab + sigma * noise_rng.standard_normal(slab.shape, dtype=np.float32)
            imag = sigma * noise_rng.standard_normal(slab.shape, dtype=np.float32)
            slab = np.sqrt(real * real + imag * imag)
        image[start:start + step] = slab
        labels[start:start + step] = canvas.labels.reshape(slab.shape)
    return Phantom(image, labels, affine, factors)


class _Bias:
    """A smooth multiplicative field fixed to the scanner: ``1 + amplitude * f`` with a
    random quadratic ``f`` scaled to span exactly [-1, 1] over the grid."""

    def __init__(self, axis: np.ndarray, amplitude: float, rng: np.random.Generator) -> None:
        self.amplitude = amplitude
        self.axis = axis
        self.half = max(float(np.abs(axis).max()), 1.0)
        self.coef = np.concatenate([rng.normal(size=3), 0.6 * rng.normal(size=3), 0.4 * rng.normal(size=3)])
        self.offset, self.scale = 0.0, 1.0
        if amplitude > 0:
            low, high = np.inf, -np.inf
            for x in axis:
                values = self._raw(np.array([x], dtype=np.float32))
                low, high = min(low, float(values.min())), max(high, float(values.max()))
            self.offset = 0.5 * (low + high)
            self.scale = max(0.5 * (high - low), 1e-6)

    def _raw(self, x: np.ndarray) -> np.ndarray:
        c = self.coef
        t = self.axis / self.half
        xx, y, z = (x / self.half)[:, None, None], t[None, :, None], t[None, None, :]
        return (c[0] * xx + c[1] * y + c[2] * z + c[3] * xx * xx + c[4] * y * y + c[5] * z * z
                + c[6] * xx * y + c[7] * y * z + c[8] * xx * z)

    def field(self, x: np.ndarray) -> np.ndarray:
        """The field on the slab of grid planes at first-axis coordinates ``x``."""
        f = (self._raw(x) - self.offset) / self.scale
        return (1.0 + self.amplitude * np.clip(f, -1.0, 1.0)).astype(np.float32)


@dataclass
class _Anatomy:
    """The random part of one subject's anatomy (drawn from the seed, never from the factors)."""

    jitter: np.ndarray
    sulci: tuple[np.ndarray, np.ndarray]
    warp: tuple[np.ndarray, np.ndarray]
    sulcal_depth: tuple[np.ndarray, np.ndarray]
    medial: tuple[np.ndarray, np.ndarray]
    folia: tuple[np.ndarray, np.ndarray]
    ventricles: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator) -> _Anatomy:
        return cls(jitter=rng.uniform(-1.0, 1.0, size=4),
                   sulci=waves(rng, 20, 23.0, spread=0.35),
                   warp=waves(rng, 9, 2.0 * math.pi / 28.0),
                   sulcal_depth=waves(rng, 8, 2.0 * math.pi / 45.0),
                   medial=waves(rng, 10, 11.0, dim=2),
                   folia=waves(rng, 16, 34.0),
                   ventricles=rng.normal(0.0, 1.0, size=(2, len(_VENTRICLE_PATH), 3)))


def _paint_head(canvas: Canvas, local: list[np.ndarray], factors: PhantomFactors, plan: _Plan) -> None:
    """Paint every tissue of one head, outside in, at the points ``local`` (head frame, mm)."""
    anatomy = plan.anatomy
    u, v, w = local
    ramp = canvas.ramp
    f = factors
    atrophy = f.cortical_atrophy
    gm = _I_WM - f.contrast * _GM_DROP

    # Skin: an egg-shaped cranium (wider at the back) merged with the neck.
    a, b, c_up, c_down = _CRANIUM
    a = a * (1.0 + 0.02 * anatomy.jitter[0])
    b = b * (1.0 + 0.015 * anatomy.jitter[1])
    cranium = ellipsoid_sdf(u, v, w, a * (1.0 - 0.05 * v / b), b, np.where(w > 0, c_up, c_down).astype(np.float32))
    neck = np.maximum(ellipse_sdf(u, v + 14.0, 44.0, 46.0), w + 30.0)
    head = smooth_min(cranium, neck, 12.0)
    canvas.paint(None, head, _I_SCALP, 1)
    canvas.paint(None, head + _SCALP_MM, _I_MUSCLE, 1)
    _paint_neck(canvas, u, v, w)

    # Skull: a shell under the scalp and the skull base under the three cranial fossae.
    v_pf = -6.0 - 0.35 * np.abs(u)                       # front of the posterior fossa (petrous ridge)
    middle = -44.0 + 16.0 * (1.0 - smoothstep((np.abs(u) - 5.0) / 16.0))   # temporal fossae, sella
    floor = -95.0 + (middle + 95.0) * smoothstep((v - v_pf) / 7.0)
    floor += (-20.0 - floor) * smoothstep((v - 18.0) / 10.0)                # anterior fossa
    bone_out = cranium + _SCALP_MM
    inner = bone_out + _SKULL_MM
    base = np.maximum(bone_out, np.maximum(w - floor, floor - 5.0 - w))
    clivus = np.maximum.reduce([segment_distance(v, w, (4.0, -22.0), (-14.0, -64.0)) - 4.0, np.abs(u) - 9.0,
                                bone_out])
    canvas.paint(None, np.minimum.reduce([np.maximum(bone_out, -inner), base, clivus]), _I_SKULL, 2)
    sinus = ellipsoid_sdf(u, v - 9.0, w + 38.0, 8.0, 7.0, 5.5)      # sphenoid sinus
    canvas.paint(None, sinus, 0.02, 0)
    canvas.paint(None, np.maximum(clivus + 1.5, -inner), _I_MARROW, 2)
    intracranial = np.maximum.reduce([inner, floor - w, -clivus])
    canvas.paint(None, intracranial, _I_CSF, 3)

    # Everything below lies inside the skull: work on those points only.
    sel = np.flatnonzero(intracranial < ramp + 1.0)
    p = np.stack([u[sel], v[sel], w[sel]], axis=1)
    gap = 1.6 + 3.0 * atrophy                               # CSF between skull and brain
    hull = intracranial[sel] + gap                          # the brain's outer surface
    convexity = inner[sel] + gap                            # the same without the skull base
    fossa = np.maximum(p[:, 1] - v_pf[sel],                # under the tentorium
                       p[:, 2] - (-15.0 - 0.25 * np.abs(p[:, 0]) - 0.2 * np.maximum(0.0, -(p[:, 1] + 20.0))))
    white = _paint_cerebrum(canvas, sel, p, hull, convexity, fossa, gm, atrophy, anatomy)
    _paint_cerebellum(canvas, sel, p, hull, fossa, gm, atrophy, anatomy)
    _paint_stem(canvas, u, v, w, f)
    _paint_deep(canvas, sel, p, white, f, plan)


def _paint_neck(canvas: Canvas, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> None:
    """Vertebral bodies with discs, and the airway, below the skull base."""
    cand = np.flatnonzero((w < -40.0) & (np.abs(u) < 16.0) & (v > -16.0) & (v < 20.0))
    cu, cv, cw = u[cand], v[cand], w[cand]
    level = np.mod(cw + 62.0, 17.0) - 8.5
    body = np.maximum(ellipse_sdf(cu, cv + 4.0, 9.0, 7.5), np.maximum(np.abs(level) - 7.0, cw + 54.0))
    canvas.paint(cand, np.maximum(ellipse_sdf(cu, cv + 4.0, 9.5, 8.0), cw + 53.0), _I_DISC, 1)
    canvas.paint(cand, body, _I_SKULL, 2)
    canvas.paint(cand, body + 1.2, _I_MARROW, 2)
    canvas.paint(cand, np.maximum(ellipse_sdf(cu, cv - 10.0, 6.0, 4.5), cw + 52.0), 0.0, 0)


def _paint_cerebrum(canvas: Canvas, sel: np.ndarray, p: np.ndarray, hull: np.ndarray, convexity: np.ndarray,
                    fossa: np.ndarray, gm: float, atrophy: float, anatomy: _Anatomy) -> np.ndarray:
    """Cortex, white matter and the fissures of the cerebrum; returns the white-matter SDF."""
    pu, pv, pw = p[:, 0], p[:, 1], p[:, 2]
    ramp = canvas.ramp
    au = np.abs(pu)

    # Basal cistern between the temporal lobes, under the diencephalon.
    cistern = ellipsoid_sdf(pu, pv - 6.0, pw + 27.0, 5.5, 9.0, 5.5)
    cerebrum = np.maximum.reduce([hull, 1.0 - fossa, -cistern])

    # Interhemispheric fissure: a midline sheet, spared around the corpus callosum and diencephalon.
    fissure_half = 0.6 + 1.0 * atrophy
    midline = pu
    am = np.abs(midline)
    cc_v, cc_w, cc_a, cc_b = _CC
    spared = np.minimum(ellipse_sdf(pv - cc_v, pw - cc_w, cc_a, cc_b),
                        np.maximum(np.abs(pv + 6.0) - 17.0, np.abs(pw + 11.0) - 12.0))
    spared = np.maximum(spared, -ellipse_sdf(pv + 32.0, pw + 9.0, 8.0, 8.0))   # quadrigeminal cistern
    fissure = np.maximum(am - fissure_half, -spared)

    # Sylvian fissure: the insular cistern and the lateral sulcus reaching the surface.
    sylvian_w = -7.0 - 0.9 * (pv - 0.7 * (au - 33.0))
    in_range = np.maximum(pv - 20.0, -14.0 - pv)
    insula_u = 33.0 - 0.012 * (pv - 1.0) ** 2 - 0.03 * (pw + 5.0) ** 2
    insula = np.maximum.reduce([np.abs(au - insula_u) - (0.6 + 0.8 * atrophy), np.abs(pw + 5.0) - 8.0, in_range])
    lateral = np.maximum.reduce([(np.abs(pw - sylvian_w) - (0.8 + 1.0 * atrophy)) * 0.75, 33.0 - au,
                                 np.maximum(-24.0 - pw, pw - 12.0)])
    sylvian = np.minimum(insula, lateral)

    # Sulci. On the convexity: radial sheets from the brain centre, bent by a smooth warp;
    # on the medial surface: sheets across the midline plane, plus the cingulate,
    # parieto-occipital and calcarine sulci. Depth varies from sulcus to sulcus.
    convex_depth = -convexity
    basal = (pw < cc_w - 6.0) & (np.abs(pv + 6.0) < 26.0)
    medial_depth = np.where((spared < 0) | basal, np.inf, am - fissure_half).astype(np.float32)
    depth = np.minimum(convex_depth, medial_depth)
    band = np.flatnonzero((depth < 18.0) & (cerebrum < ramp + 4.0))
    q = p[band] - np.asarray(_BRAIN_CENTRE, dtype=np.float32)
    warp_k, warp_phase = anatomy.warp
    q += 9.0 * np.sin(q @ warp_k.T + warp_phase).reshape(len(q), 3, 3).sum(axis=2) / math.sqrt(3.0)
    d = depth[band]
    on_medial = medial_depth[band] < convex_depth[band]
    bv, bw = pv[band], pw[band]
    dist = zero_set_distance(q, *anatomy.sulci, radial=True)
    max_depth = 13.0 * np.clip(1.0 + 0.45 * field(q, *anatomy.sulcal_depth), 0.45, 1.3)
    # Medial sulci radiate from the corpus callosum (a field of the angle about its centre,
    # turned differently in each hemisphere) outside the cingulate sulcus, an arc around the
    # callosum; the parieto-occipital and calcarine sulci are deep straight clefts.
    side = np.sign(midline[band])[:, None]
    around = q[:, 1:] + np.array([_BRAIN_CENTRE[1] - cc_v, _BRAIN_CENTRE[2] - cc_w], dtype=np.float32)
    turn = np.float32(0.2) * side
    around = np.concatenate([around[:, :1] * np.cos(turn) - around[:, 1:] * np.sin(turn),
                             around[:, :1] * np.sin(turn) + around[:, 1:] * np.cos(turn)], axis=1)
    radiating = zero_set_distance(around, *anatomy.medial, radial=True)
    offset = 9.0 + (1.2 + anatomy.jitter[2]) * side[:, 0]
    lateral_mm = am[band]
    cingulate = ellipse_sdf(bv - cc_v, bw - cc_w - 0.4 * lateral_mm, cc_a + offset, cc_b + offset)
    radiating = np.where(cingulate > 3.0, radiating, 1e3)
    cingulate = np.where((bw > cc_w - 4.0) & (bv > -22.0), np.abs(cingulate), 1e3)
    shifted = bv + (1.5 + anatomy.jitter[3]) * side[:, 0] - 0.7 * lateral_mm
    deep_clefts = np.minimum(segment_distance(shifted, bw, (-31.0, -2.0), (-52.0, 36.0)),
                             segment_distance(bv, bw - 0.6 * lateral_mm, (-33.0, -4.0), (-74.0, -8.0)))
    medial = np.minimum.reduce([radiating, cingulate, deep_clefts])
    medial_max = np.where(deep_clefts <= medial, 10.0, np.where(cingulate <= medial, 5.0, 0.6 * max_depth))
    dist = np.where(on_medial, medial, dist)
    max_depth = np.where(on_medial, medial_max, max_depth)
    shallow = np.clip(1.0 - d / max_depth, 0.0, 1.0)
    half_width = (0.35 + 0.45 * atrophy) + (np.where(on_medial, 1.1, 0.6) + 1.3 * atrophy) * shallow * shallow
    sulcus = np.full(len(p), 1e3, dtype=np.float32)
    sulcus[band] = round_max(dist - half_width, d - max_depth)

    tissue = np.maximum.reduce([cerebrum, -fissure, -sylvian, -sulcus])
    white = tissue + (3.2 - 0.8 * atrophy)
    canvas.paint(sel, tissue, gm, 4)
    canvas.paint(sel, white, _I_WM, 5)
    return white


def _paint_cerebellum(canvas: Canvas, sel: np.ndarray, p: np.ndarray, hull: np.ndarray, fossa: np.ndarray,
                      gm: float, atrophy: float, anatomy: _Anatomy) -> None:
    """Two cerebellar hemispheres and the vermis: folia around a white-matter core."""
    q = p - np.asarray(_CEREBELLUM_CENTRE, dtype=np.float32)
    lobes = np.minimum(ellipsoid_sdf(np.abs(q[:, 0]) - 19.0, q[:, 1], q[:, 2], 28.0, 26.0, 21.0),
                       ellipsoid_sdf(q[:, 0], q[:, 1] - 4.0, q[:, 2] + 1.0, 12.0, 17.0, 16.0))   # vermis
    notch = np.maximum(np.abs(q[:, 0]) - 1.0 - atrophy, q[:, 1] + 16.0)     # posterior midline notch
    shape = np.maximum.reduce([hull, fossa + 1.0, lobes, -notch])
    near = np.flatnonzero(shape < canvas.ramp + 10.0)
    fissures = zero_set_distance(q[near] - np.array([0.0, 10.0, 4.0], dtype=np.float32), *anatomy.folia,
                                  radial=True)
    tissue = shape.copy()
    tissue[near] = np.maximum(shape[near], -round_max(fissures - (0.3 + 0.5 * atrophy), -shape[near] - 10.0))
    canvas.paint(sel, tissue, gm, 4)
    core = ellipsoid_sdf(np.abs(q[:, 0]) - 17.0, q[:, 1] - 4.0, q[:, 2] - 3.0, 11.0, 7.0, 6.0)
    branches = np.maximum(tissue + 1.0, 3.5 + shape)
    canvas.paint(sel, np.maximum(np.minimum(core, branches), tissue + 0.9), _I_WM * _CB_WM, 5)


def _paint_stem(canvas: Canvas, u: np.ndarray, v: np.ndarray, w: np.ndarray, f: PhantomFactors) -> None:
    """Brainstem and spinal cord in its CSF-filled canal."""
    cand = np.flatnonzero((np.abs(u) < 16.0) & (v > -36.0) & (v < 8.0) & (w < 0.0))
    pts = np.stack([u[cand], v[cand], w[cand]], axis=1)
    dense = densify(_STEM_PATH, 2.0)
    canal = dense[dense[:, 2] < -46.0].copy()
    canal[:, 3:5] += 3.0
    canvas.paint(cand, tube_sdf(pts, canal), _I_CSF, 3)
    stem = tube_sdf(pts, dense)
    canvas.paint(cand, stem, _I_WM - f.contrast * _STEM_DROP, 5)
    canvas.paint(cand, np.maximum(stem, pts[:, 2] + 50.0), _I_WM - f.contrast * _CORD_DROP, 5)


@dataclass
class _Lesion:
    centre: np.ndarray
    direction: np.ndarray
    semi_long: float
    semi_short: float


@dataclass
class _Plan:
    """Everything about one phantom that does not depend on the grid: the random anatomy,
    the ventricle paths and the lesions."""

    anatomy: _Anatomy
    ventricles: list[np.ndarray]
    lesions: list[_Lesion]

    @classmethod
    def make(cls, f: PhantomFactors, anatomy_rng: np.random.Generator, lesion_rng: np.random.Generator) -> _Plan:
        anatomy = _Anatomy.draw(anatomy_rng)

        # Lateral ventricles: tubes of tilted ellipses along a C-shaped path. Enlargement
        # widens them laterally (the septum stays put) and a larger factor always gives a
        # superset: each ellipse grows about its medial end.
        e = f.ventricle_enlargement
        grow = 1.0 + 0.7 * e
        paths = []
        for s_i, side in enumerate((1.0, -1.0)):
            ctrl = _VENTRICLE_PATH.copy()
            ctrl[:, 0] += 0.25 * anatomy.ventricles[s_i, :, 0]
            ctrl[:, 2] += 0.6 * anatomy.ventricles[s_i, :, 1]
            ctrl[:, 3:6] *= 1.0 + 0.06 * anatomy.ventricles[s_i, :, 2:3]
            for part in (ctrl, _TEMPORAL_HORN_PATH):
                dense = densify(part, 1.5)
                dense[:, 6] = np.radians(dense[:, 6])
                shift = dense[:, 3] * (grow - 1.0)
                dense[:, 0] += shift * np.cos(dense[:, 6])
                dense[:, 2] += shift * np.sin(dense[:, 6])
                dense[:, 3] *= grow
                dense[:, 5] *= grow
                dense[:, 4] *= 1.0 + 0.15 * e
                dense[:, 0] *= side
                dense[:, 6] *= side
                paths.append(dense)

        # Lesions: ovoids in the white matter, most of them next to the lateral ventricles and
        # perpendicular to their walls (Dawson's fingers), some in the deep white matter. Where
        # they may appear and the load at which each appears come from the seed; all of them
        # grow with the load, so more load never means fewer lesion voxels.
        n = 30
        thresholds = np.sort(lesion_rng.uniform(0.02, 1.0, size=n))
        which = lesion_rng.integers(0, 2, size=n) * 2                   # lateral path of either side
        along = lesion_rng.uniform(0.05, 0.95, size=n)
        angle = (np.where(lesion_rng.uniform(size=n) < 0.5, 0.0, 0.5 * math.pi)
                 + lesion_rng.normal(0.0, 0.3, size=n))
        gap = lesion_rng.uniform(0.5, 6.0, size=n)
        length = lesion_rng.uniform(4.0, 9.0, size=n)
        deep = lesion_rng.uniform(0.0, 1.0, size=n) < 0.25
        deep_pos = lesion_rng.uniform(-1.0, 1.0, size=(n, 3))
        scale = 0.55 + 0.75 * f.lesion_load
        lesions = []
        for i in np.flatnonzero(f.lesion_load > thresholds):
            path = paths[which[i]]
            row = path[int(along[i] * (len(path) - 1))]
            side = 1.0 if row[0] >= 0 else -1.0
            direction = np.array([side * math.cos(angle[i]), 0.0, math.sin(angle[i])], dtype=np.float32)
            if deep[i]:
                centre = np.array([side * (15.0 + 9.0 * abs(deep_pos[i, 0])), 18.0 * deep_pos[i, 1],
                                   22.0 + 6.0 * deep_pos[i, 2]])
            else:
                centre = row[:3] + (max(row[3], row[5]) + gap[i] + 0.3 * length[i]) * direction
            lesions.append(_Lesion(centre.astype(np.float32), direction, 0.5 * length[i] * scale,
                                   0.32 * length[i] * scale))
        return cls(anatomy, paths, lesions)


def _paint_deep(canvas: Canvas, sel: np.ndarray, p: np.ndarray, white: np.ndarray, f: PhantomFactors,
                plan: _Plan) -> None:
    """Deep grey nuclei, lesions and the ventricles."""
    core = np.flatnonzero((np.abs(p[:, 0]) < 45.0) & (p[:, 1] > -60.0) & (p[:, 1] < 40.0)
                          & (p[:, 2] > -40.0) & (p[:, 2] < 32.0))
    pts = p[core]
    idx = sel[core]
    pu, pv, pw = pts[:, 0], pts[:, 1], pts[:, 2]

    nuclei = np.full(len(pts), 1e3, dtype=np.float32)
    for (cu, cv, cw), (ra, rb, rc) in _NUCLEI:
        for side in (-1.0, 1.0):
            nuclei = np.minimum(nuclei, ellipsoid_sdf(pu - side * cu, pv - cv, pw - cw, ra, rb, rc))
    canvas.paint(idx, np.maximum(nuclei, white[core] - 2.0), _I_WM - f.contrast * _DEEP_GM_DROP, 4)

    e = f.ventricle_enlargement
    vent = np.full(len(pts), 1e3, dtype=np.float32)
    for path in plan.ventricles:
        vent = np.minimum(vent, tube_sdf(pts, path))
    vent = np.maximum(vent, 0.5 - np.abs(pu))                       # septum pellucidum
    third = ellipsoid_sdf(pu, pv + 6.0, pw + 7.0, 1.5 + 1.5 * e, 12.0, 8.5)
    fourth = ellipsoid_sdf(pu, pv + 24.0, pw + 33.0, 4.0 + 2.0 * e, 3.0 + 1.0 * e, 6.0)
    vent = np.minimum.reduce([vent, third, fourth])

    if plan.lesions:
        lesion = np.full(len(pts), 1e3, dtype=np.float32)
        for les in plan.lesions:
            reach = les.semi_long + 3.0
            near = np.flatnonzero(np.all(np.abs(pts - les.centre) < reach, axis=1))
            dp = pts[near] - les.centre
            axial = dp @ les.direction
            radial2 = np.einsum("ij,ij->i", dp, dp) - axial * axial
            rho = np.sqrt((axial / les.semi_long) ** 2 + radial2 / les.semi_short ** 2)
            lesion[near] = np.minimum(lesion[near], (rho - 1.0) * les.semi_short)
        canvas.paint(idx, np.maximum.reduce([lesion, white[core], -nuclei, -vent]), _I_LESION, 7)
    canvas.paint(idx, vent, _I_VENTRICLE, 6)
