"""The known factors of a subject warped from a real scan, and how a cohort's groups sample them."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ...errors import DataError
from ..phantoms.factors import check_factors

#: The factors, in the order of the ``cohort.csv`` columns.
WARPED_FACTOR_NAMES: tuple[str, ...] = ("ventricle_enlargement", "rotation_inplane", "head_size", "gamma",
                                        "bias_field", "noise")

#: Allowed range of every factor: (low, high). Values outside are rejected.
WARPED_FACTOR_RANGES: dict[str, tuple[float, float]] = {
    "ventricle_enlargement": (0.5, 3.0),
    "rotation_inplane": (-30.0, 30.0),
    "head_size": (0.8, 1.25),
    "gamma": (0.5, 2.0),
    "bias_field": (0.0, 0.5),
    "noise": (0.0, 0.5),
}

#: What :func:`sample_warped_factors` draws (the cohort's grid is sized for these poses).
HEALTHY_ENLARGEMENT = (1.0, 0.05, 0.9, 1.12)     # mean, standard deviation, clipped to low..high
DISEASE_ENLARGEMENT = (1.4, 2.0)                  # uniform
ROTATION_LIMIT = 10.0                             # uniform in -limit..limit degrees
HEAD_SIZE = (1.0, 0.04, 0.9, 1.1)                 # mean, standard deviation, clipped to low..high
GAMMA = (0.8, 1.25)                               # log-uniform
BIAS_FIELD = (0.0, 0.15)                          # uniform
NOISE = (0.01, 0.03)                              # uniform


@dataclass(frozen=True)
class WarpedFactors:
    """The known factors of one subject warped from a real scan.

    Attributes
    ----------
    ventricle_enlargement : float
        Volume factor of the lateral ventricles in the subject's own anatomy (before the
        head-size change): 1 = the source scan's ventricles, 2 = twice their volume. Range 0.5..3.
    rotation_inplane : float
        Degrees of rotation about the superior-inferior axis through the head's centre
        (positive turns the nose toward the subject's left, right-handed about +S). Range -30..30.
    head_size : float
        Isotropic scale of the whole head about its centre. Range 0.8..1.25.
    gamma : float
        Intensity gamma: the normalised intensities (tissue about 0..1) are raised to this
        power, so gamma > 1 darkens grey matter and CSF relative to white matter. Range 0.5..2.
    bias_field : float
        Amplitude of a smooth multiplicative bias field, between ``1 - b`` and ``1 + b``. Range 0..0.5.
    noise : float
        Standard deviation of Rician noise relative to the normalised intensities. Range 0..0.5.
    """

    ventricle_enlargement: float = 1.0
    rotation_inplane: float = 0.0
    head_size: float = 1.0
    gamma: float = 1.0
    bias_field: float = 0.0
    noise: float = 0.0

    def __post_init__(self) -> None:
        check_factors(self, WARPED_FACTOR_RANGES, "factor")

    def to_dict(self) -> dict[str, float]:
        """The factors as a plain dict, in :data:`WARPED_FACTOR_NAMES` order."""
        values = asdict(self)
        return {name: float(values[name]) for name in WARPED_FACTOR_NAMES}


def _clip(value: float, low: float, high: float) -> float:
    return float(min(max(value, low), high))


def sample_warped_factors(group: str, rng: np.random.Generator) -> WarpedFactors:
    """Draw the factors of one subject of a group.

    Healthy subjects keep about the source's ventricles (a volume factor of N(1, 0.05)
    clipped to 0.9..1.12); disease subjects have enlarged ventricles (uniform in 1.4..2.0),
    so the groups are separable by the true factor. The nuisances have the same
    distribution in both groups: rotation uniform in ±10 degrees, head size N(1, 0.04)
    clipped to 0.9..1.1, gamma log-uniform in 0.8..1.25, bias field uniform in 0..0.15,
    noise uniform in 0.01..0.03.

    Parameters
    ----------
    group : {"healthy", "disease"}
        The subject's group.
    rng : numpy.random.Generator
        Source of randomness (the same number of draws for either group).

    Returns
    -------
    WarpedFactors

    Raises
    ------
    DataError
        For an unknown group.
    """
    if group not in ("healthy", "disease"):
        raise DataError(f"unknown group {group!r} (expected healthy or disease)")
    z, u = rng.standard_normal(), rng.uniform()
    if group == "healthy":
        mean, sd, low, high = HEALTHY_ENLARGEMENT
        enlargement = _clip(mean + sd * z, low, high)
    else:
        enlargement = DISEASE_ENLARGEMENT[0] + (DISEASE_ENLARGEMENT[1] - DISEASE_ENLARGEMENT[0]) * u
    mean, sd, low, high = HEAD_SIZE
    return WarpedFactors(
        ventricle_enlargement=enlargement,
        rotation_inplane=float(rng.uniform(-ROTATION_LIMIT, ROTATION_LIMIT)),
        head_size=_clip(rng.normal(mean, sd), low, high),
        gamma=float(np.exp(rng.uniform(np.log(GAMMA[0]), np.log(GAMMA[1])))),
        bias_field=float(rng.uniform(*BIAS_FIELD)),
        noise=float(rng.uniform(*NOISE)),
    )
