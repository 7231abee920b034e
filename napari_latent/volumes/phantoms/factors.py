"""The known generating factors of a phantom, and how a cohort's groups sample them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from ...errors import DataError

#: The generating factors, in the order of the ``cohort.csv`` columns.
FACTOR_NAMES: tuple[str, ...] = ("ventricle_enlargement", "cortical_atrophy", "lesion_load",
                                 "rotation_inplane", "rotation_outofplane", "head_size", "contrast",
                                 "bias_field", "noise")

#: The subject groups :func:`sample_factors` knows.
GROUPS: tuple[str, ...] = ("healthy", "disease")

# Allowed range of every factor: (low, high). Values outside are rejected.
_FACTOR_RANGES: dict[str, tuple[float, float]] = {
    "ventricle_enlargement": (0.0, 1.0),
    "cortical_atrophy": (0.0, 1.0),
    "lesion_load": (0.0, 1.0),
    "rotation_inplane": (-45.0, 45.0),
    "rotation_outofplane": (-45.0, 45.0),
    "head_size": (0.7, 1.2),
    "contrast": (0.0, 2.0),
    "bias_field": (0.0, 0.5),
    "noise": (0.0, 0.5),
}


@dataclass(frozen=True)
class PhantomFactors:
    """The known, continuous factors that generate a phantom.

    Attributes
    ----------
    ventricle_enlargement : float
        0 = normal ventricles, 1 = strongly enlarged (about 2.7 times the volume). Range 0..1.
    cortical_atrophy : float
        0 = none, 1 = strong: the brain surface moves inward by up to 4.5 mm, sulci and the
        interhemispheric fissure widen, the cortex thins from 2.8 to 2.0 mm. Range 0..1.
    lesion_load : float
        0 = no lesions; the number and the size of ovoid T1-hypointense lesions in the
        periventricular and deep white matter grow with it (about 30 lesions at 1). Range 0..1.
    rotation_inplane : float
        Degrees of rotation about the superior-inferior axis (a turn of the head in the axial
        plane); positive turns the nose toward the subject's left (right-handed about +S).
        Range -45..45; the head stays inside the default field of view up to about 15.
    rotation_outofplane : float
        Degrees of pitch (nodding) about the left-right axis; positive lifts the chin
        (right-handed about +R). Range -45..45.
    head_size : float
        Scale factor of the whole head (1 = a head of 134 x 156 mm in the axial plane).
        Range 0.7..1.2; typical 0.9..1.1.
    contrast : float
        Scale of the grey/white-matter intensity difference (1 = grey matter at 0.64 of
        white matter). Range 0..2.
    bias_field : float
        Amplitude of a smooth multiplicative bias field: intensities are multiplied by a
        low-order field between ``1 - bias_field`` and ``1 + bias_field``. Range 0..0.5.
    noise : float
        Standard deviation of the Rician noise relative to the white-matter intensity
        (the magnitude of complex Gaussian noise). Range 0..0.5.
    """

    ventricle_enlargement: float = 0.0
    cortical_atrophy: float = 0.0
    lesion_load: float = 0.0
    rotation_inplane: float = 0.0
    rotation_outofplane: float = 0.0
    head_size: float = 1.0
    contrast: float = 1.0
    bias_field: float = 0.0
    noise: float = 0.02

    def __post_init__(self) -> None:
        check_factors(self, _FACTOR_RANGES, "phantom factor")

    def to_dict(self) -> dict[str, float]:
        """The factors as a plain dict, in :data:`FACTOR_NAMES` order."""
        values = asdict(self)
        return {name: float(values[name]) for name in FACTOR_NAMES}


def check_factors(factors: Any, ranges: Mapping[str, tuple[float, float]], what: str) -> None:
    """Make every field of a frozen factors dataclass a float within its range (in place).

    Raises
    ------
    DataError
        A field that is not a number, or outside ``ranges[name]``; ``what`` names it.
    """
    for f in fields(factors):
        value = getattr(factors, f.name)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise DataError(f"{what} {f.name} must be a number, got {value!r}") from None
        low, high = ranges[f.name]
        if not math.isfinite(number) or not low <= number <= high:
            raise DataError(f"{what} {f.name} must be between {low:g} and {high:g}, got {value!r}")
        object.__setattr__(factors, f.name, number)


def sample_factors(group: str, rng: np.random.Generator) -> PhantomFactors:
    """Draw the factors of one subject of a group.

    Disease (MS-like) subjects have larger ventricles, more atrophy and more lesions on
    average, with distributions that overlap those of healthy subjects, as in a real cohort.
    The nuisance factors (pose, head size, contrast, bias field, noise) have the same
    distribution in both groups.

    Parameters
    ----------
    group : {"healthy", "disease"}
        The subject's group.
    rng : numpy.random.Generator
        Source of randomness (a fixed number of draws per call).

    Returns
    -------
    PhantomFactors

    Raises
    ------
    DataError
        For an unknown group.
    """
    if group not in GROUPS:
        raise DataError(f"unknown group {group!r} (expected one of: {', '.join(GROUPS)})")
    z = rng.standard_normal(3)
    if group == "healthy":
        ventricle = 0.15 + 0.12 * z[0]
        atrophy = 0.15 + 0.12 * z[1]
        lesions = 0.06 * z[2]
    else:
        ventricle = 0.55 + 0.20 * z[0]
        atrophy = 0.50 + 0.20 * z[1]
        lesions = 0.50 + 0.25 * z[2]

    def clip(value: float, low: float, high: float) -> float:
        return float(min(max(value, low), high))

    return PhantomFactors(
        ventricle_enlargement=clip(ventricle, 0.0, 1.0),
        cortical_atrophy=clip(atrophy, 0.0, 1.0),
        lesion_load=clip(lesions, 0.0, 1.0),
        rotation_inplane=clip(rng.normal(0.0, 6.0), -15.0, 15.0),
        rotation_outofplane=clip(rng.normal(0.0, 4.0), -15.0, 15.0),
        head_size=clip(rng.normal(1.0, 0.04), 0.88, 1.12),
        contrast=clip(rng.normal(1.0, 0.08), 0.7, 1.3),
        bias_field=float(rng.uniform(0.0, 0.2)),
        noise=float(rng.uniform(0.01, 0.04)),
    )
