"""MIG, SAP and DCI on synthetic codes whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from napari_latent.analysis.disentanglement import dci, mutual_information_gap, separated_attribute_predictability
from napari_latent.errors import MismatchError


@pytest.fixture(scope="module")
def factors() -> np.ndarray:
    return np.random.default_rng(0).uniform(-1.0, 1.0, size=(3000, 2))


def disentangled(factors: np.ndarray) -> np.ndarray:
    """Code dimension i is factor i (plus two dimensions of pure noise)."""
    noise = np.random.default_rng(1).normal(size=(len(factors), 2))
    return np.hstack([factors, noise])


def rotated(factors: np.ndarray) -> np.ndarray:
    """Every code dimension mixes both factors equally (a 45 degree rotation): fully entangled."""
    return factors @ (np.array([[1.0, 1.0], [-1.0, 1.0]]) / np.sqrt(2.0))


def random_codes(factors: np.ndarray) -> np.ndarray:
    return np.random.default_rng(2).normal(size=(len(factors), 4))


def test_mig_is_high_for_disentangled_codes_and_near_zero_otherwise(factors) -> None:
    good = mutual_information_gap(disentangled(factors), factors)
    assert good["mig"] > 0.9 and len(good["per_factor"]) == 2
    mi = np.array(good["mutual_information"])
    assert mi.shape == (4, 2) and mi[0, 0] > 10 * mi[1, 0] and mi[1, 1] > 10 * mi[0, 1]
    assert mutual_information_gap(random_codes(factors), factors)["mig"] < 0.05
    assert mutual_information_gap(rotated(factors), factors)["mig"] < 0.15


def test_sap_is_high_for_disentangled_codes_and_near_zero_otherwise(factors) -> None:
    good = separated_attribute_predictability(disentangled(factors), factors)
    assert good["sap"] > 0.95
    assert np.array(good["r2"]).shape == (4, 2)
    assert separated_attribute_predictability(random_codes(factors), factors)["sap"] < 0.01
    # each rotated dimension explains half of each factor: nothing separates them
    assert separated_attribute_predictability(rotated(factors), factors)["sap"] < 0.05


def test_dci_scores(factors) -> None:
    subset = factors[:1200]
    good = dci(disentangled(subset), subset, trees=20)
    assert good["disentanglement"] > 0.85 and good["completeness"] > 0.8 and good["informativeness"] > 0.95
    importance = np.array(good["importance"])
    assert importance.shape == (4, 2) and importance[0, 0] > 0.8 and importance[1, 1] > 0.8
    bad = dci(random_codes(subset), subset, trees=20)
    assert bad["informativeness"] < 0.1
    assert bad["disentanglement"] < 0.3 and bad["completeness"] < 0.3
    entangled = dci(rotated(subset), subset, trees=20)
    assert entangled["informativeness"] > 0.9  # the information is there ...
    assert entangled["disentanglement"] < 0.5 < good["disentanglement"]  # ... but not one factor per dimension


def test_groups_keep_the_informativeness_split_apart(factors) -> None:
    # codes that memorise the group (not the factor) predict the factor only within seen groups
    groups = np.repeat(np.arange(40), 30)
    per_group = np.random.default_rng(3).uniform(-1, 1, size=(40, 1))[groups]
    codes = np.hstack([groups[:, None].astype(float), np.random.default_rng(4).normal(size=(1200, 1))])
    by_group = dci(codes, per_group, groups=groups, trees=20)
    by_sample = dci(codes, per_group, trees=20)
    assert by_sample["informativeness"] > 0.6 and by_group["informativeness"] < 0.0


def test_bad_shapes_are_errors() -> None:
    with pytest.raises(MismatchError, match="do not match"):
        mutual_information_gap(np.zeros((20, 2)), np.zeros((19, 1)))
    with pytest.raises(MismatchError, match="at least 10"):
        separated_attribute_predictability(np.zeros((5, 2)), np.zeros(5))
