"""Unsupervised discovery on the demo model finds a direction that moves one known phantom factor clearly."""

from __future__ import annotations

import numpy as np
import pytest

from napari_latent.analysis.direction_evaluation import evaluate_directions, fit_factor_readouts
from napari_latent.latent.discovery import discover

#: The factors the issue names; a factor counts only where its code readout is trustworthy.
TARGETS = ("rotation_inplane", "ventricle_enlargement")
#: The head's in-plane angle measured directly in the decoded images (no regressor involved).
IMAGE_ROTATION = "image_angle_deg"
MIN_READOUT_R2 = 0.5
#: "Clearly more than the others": the best direction's effect at least twice the second best's.
MIN_GAP = 0.5


@pytest.mark.slow
def test_an_unsupervised_method_isolates_rotation_or_ventricles(demo_cohort_codes) -> None:
    """On the tests' cohort (32 subjects, 64 cubed, seed 0). Measured 2026-12-01 on 32-subject cohorts of seeds 1 and
    5 too: axes z17 isolates rotation (gaps 0.76-0.83, rotation readout R^2 0.75-0.81; ventricle R^2 stays negative).
    With 16 subjects it held on seed 0 and not on seed 5 (image-angle gaps axes 0.41, pca 0.15, sefa 0.004)."""
    model, codes = demo_cohort_codes
    readouts = fit_factor_readouts(codes)
    trusted = [f for f in TARGETS if readouts.r2[f] >= MIN_READOUT_R2] + [IMAGE_ROTATION]
    found = {}
    for label, method, settings in (("sefa", "sefa", {}), ("pca of the cohort's codes", "pca", {"data": codes}),
                                    ("axes", "axes", {"data": codes.cohort})):
        directions = discover(model, method, count=8, **settings)
        evaluation = evaluate_directions(model, directions, codes, base_count=64, readouts=readouts)
        for factor in trusted:
            k = evaluation.factors.index(factor)
            best = evaluation.best[factor]
            found[(label, factor)] = (evaluation.gap[factor], directions.names[best],
                                      float(evaluation.effects[best, k]))
    clear = {key: value for key, value in found.items() if value[0] >= MIN_GAP}
    assert clear, f"no method has a direction that changes {trusted} clearly more than the others: {found}"
    # the clear direction also moves the factor by a visible amount: >= 0.3 subject SDs (regressed factors) or
    # >= 1 degree (the image angle) per spread of shift
    assert any(abs(v[2]) >= (1.0 if key[1] == IMAGE_ROTATION else 0.3) for key, v in clear.items()), clear
    assert np.isfinite([v[2] for v in found.values()]).all()
