"""Synthetic T1-weighted brain phantoms with known generating factors, and cohorts of them.

A phantom is a 3D T1-like head image built from implicit shapes (signed distance functions)
evaluated on the voxel grid: scalp, skull, cerebrospinal fluid, a folded cortical ribbon of
grey matter over white matter, an interhemispheric and a Sylvian fissure, lateral, third and
fourth ventricles, deep grey nuclei, a brainstem and a foliated cerebellum, plus optional
periventricular white-matter lesions. Every voxel is rendered with partial-volume
anti-aliasing (a one-voxel linear ramp across each surface), so thin sulci show as dark lines
even where they are thinner than a voxel.

Rotation and head size act on the *coordinates*: the shapes are evaluated at the grid points
mapped back into the head's own frame, so rotated phantoms are exact, with no resampling.
The random anatomy of a subject (the folding pattern, small ventricle asymmetries, where the
lesions may appear, the bias-field shape, the noise) comes from the seed alone; the factors
only change sizes, intensities and the pose. :func:`make_phantom` is a pure function of
``(factors, size, spacing, seed)``.

:func:`make_phantom_cohort` writes a folder of healthy and disease (MS-like) subjects with a
``cohort.csv`` that records every subject's group and factors: the embedded default data set
for training and for checking whether a method recovers the known factors.
"""

from .anatomy import Phantom, make_phantom
from .cohort import CohortInfo, make_phantom_cohort
from .factors import FACTOR_NAMES, GROUPS, PhantomFactors, sample_factors

__all__ = [
    "FACTOR_NAMES",
    "GROUPS",
    "CohortInfo",
    "Phantom",
    "PhantomFactors",
    "make_phantom",
    "make_phantom_cohort",
    "sample_factors",
]
