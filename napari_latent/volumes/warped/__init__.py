"""Cohorts warped from a real scan, with known factors.

Where the phantoms (:mod:`napari_latent.volumes.phantoms`) draw every head from shapes,
a warped cohort starts from one real T1-weighted brain scan (by default nibabel's
``anatomical.nii``) and makes each subject from it with known changes:

- the disease factor: the lateral ventricles (found automatically as the dark CSF region
  near the brain's centre) enlarged by a known volume factor, by a smooth diffeomorphic
  push of the tissue away from them (:mod:`.deform`);
- the nuisances: in-plane rotation, head size (isotropic scale), intensity gamma, a bias
  field and Rician noise.

All spatial changes are composed into one resampling per subject (linear interpolation,
once). :func:`make_warped_cohort` writes the subjects, their ventricle masks and a
``cohort.csv`` in the format of the phantom cohort (``path``, ``group`` and numeric factor
columns, plus the ventricle volume measured on each written subject).
"""

from .cohort import WarpedCohortInfo, make_warped_cohort, output_grid, warp_subject
from .deform import VentricleWarp
from .factors import WARPED_FACTOR_NAMES, WarpedFactors, sample_warped_factors
from .source import ANATOMICAL, WarpSource, anatomical_path, find_ventricles, prepare_source

__all__ = [
    "ANATOMICAL",
    "WARPED_FACTOR_NAMES",
    "VentricleWarp",
    "WarpSource",
    "WarpedCohortInfo",
    "WarpedFactors",
    "anatomical_path",
    "find_ventricles",
    "make_warped_cohort",
    "output_grid",
    "prepare_source",
    "sample_warped_factors",
    "warp_subject",
]
