"""Phantom heads and cohorts: the factors do what they claim, cohorts are reproducible."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_latent.errors import DataError
from napari_latent.volumes.phantoms import (
    FACTOR_NAMES,
    Phantom,
    PhantomFactors,
    make_phantom,
    make_phantom_cohort,
    sample_factors,
)

SIZE = 40
VENTRICLES, LESIONS, GREY, WHITE, CSF = 6, 7, 4, 5, 3


def count(phantom: Phantom, *labels: int) -> int:
    return int(np.isin(phantom.labels, labels).sum())


def test_ventricle_volume_grows_with_the_ventricle_factor() -> None:
    counts = [count(make_phantom(PhantomFactors(ventricle_enlargement=v), size=SIZE, seed=1), VENTRICLES)
              for v in (0.0, 0.5, 1.0)]
    assert counts[0] < counts[1] < counts[2]
    assert counts[2] > 1.8 * counts[0]


def test_brain_tissue_shrinks_with_atrophy_and_csf_grows() -> None:
    phantoms = [make_phantom(PhantomFactors(cortical_atrophy=a), size=SIZE, seed=1) for a in (0.0, 0.5, 1.0)]
    tissue = [count(p, GREY, WHITE) for p in phantoms]
    csf = [count(p, CSF) for p in phantoms]
    assert tissue[0] > tissue[1] > tissue[2]
    assert csf[0] < csf[2]


def test_lesions_appear_and_grow_with_lesion_load() -> None:
    counts = [count(make_phantom(PhantomFactors(lesion_load=v), size=SIZE, seed=2), LESIONS) for v in (0.0, 0.5, 1.0)]
    assert counts[0] == 0
    assert 0 < counts[1] < counts[2]


def _axial_angle(mask: np.ndarray, axis: int = 2) -> float:
    """Orientation (degrees) of the principal axis of a mask's projection along ``axis`` (2: axial)."""
    projection = mask.any(axis=axis)
    x, y = np.nonzero(projection)
    cov = np.cov(np.stack([x - x.mean(), y - y.mean()]))
    values, vectors = np.linalg.eigh(cov)
    major = vectors[:, np.argmax(values)]
    return float(np.degrees(np.arctan2(major[1], major[0])) % 180)


def test_in_plane_rotation_turns_the_head_by_that_angle() -> None:
    straight = make_phantom(PhantomFactors(), size=48, seed=1)
    turned = make_phantom(PhantomFactors(rotation_inplane=10.0), size=48, seed=1)
    brain = (GREY, WHITE, VENTRICLES)
    change = _axial_angle(np.isin(turned.labels, brain)) - _axial_angle(np.isin(straight.labels, brain))
    assert abs(abs(change) - 10.0) < 3.0


def test_out_of_plane_rotation_pitches_the_brain_in_the_sagittal_plane() -> None:
    straight = make_phantom(PhantomFactors(), size=48, seed=1)
    pitched = make_phantom(PhantomFactors(rotation_outofplane=12.0), size=48, seed=1)
    brain = (GREY, WHITE, VENTRICLES)
    before = _axial_angle(np.isin(straight.labels, brain), axis=0)
    change = _axial_angle(np.isin(pitched.labels, brain), axis=0) - before
    assert abs(abs(change) - 12.0) < 4.0


def test_head_size_scales_the_head_volume_by_the_cube() -> None:
    small = count(make_phantom(PhantomFactors(head_size=0.9), size=SIZE, seed=1), *range(1, 8))
    large = count(make_phantom(PhantomFactors(head_size=1.1), size=SIZE, seed=1), *range(1, 8))
    assert large / small == pytest.approx((1.1 / 0.9) ** 3, rel=0.15)


def test_intensities_look_t1_weighted() -> None:
    phantom = make_phantom(PhantomFactors(noise=0.0, bias_field=0.0), size=48, seed=4)
    mean = {label: phantom.image[phantom.labels == label].mean() for label in (WHITE, GREY, CSF, VENTRICLES)}
    assert mean[WHITE] > mean[GREY] > mean[CSF]
    assert mean[GREY] > mean[VENTRICLES]
    low = make_phantom(PhantomFactors(noise=0.0, contrast=0.5), size=48, seed=4)
    difference = lambda p: p.image[p.labels == WHITE].mean() - p.image[p.labels == GREY].mean()  # noqa: E731
    assert difference(low) < difference(phantom)


def test_affine_is_ras_with_requested_spacing_and_an_offset_origin() -> None:
    phantom = make_phantom(PhantomFactors(), size=32, spacing=1.5, seed=0)
    assert nib.aff2axcodes(phantom.affine) == ("R", "A", "S")
    np.testing.assert_allclose(np.diag(phantom.affine)[:3], 1.5)
    assert np.abs(phantom.affine[:3, 3]).min() > 1.0
    default = make_phantom(PhantomFactors(), size=32, seed=0)
    assert default.spacing == pytest.approx(192.0 / 32)
    assert phantom.image.dtype == np.float32 and phantom.labels.dtype == np.uint8


def test_same_seed_same_phantom_and_other_seed_other_anatomy() -> None:
    a = make_phantom(PhantomFactors(lesion_load=0.5), size=32, seed=7)
    b = make_phantom(PhantomFactors(lesion_load=0.5), size=32, seed=7)
    c = make_phantom(PhantomFactors(lesion_load=0.5), size=32, seed=8)
    np.testing.assert_array_equal(a.image, b.image)
    assert not np.array_equal(a.labels, c.labels)


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_cohorts_are_reproducible_byte_for_byte(tmp_path: Path) -> None:
    make_phantom_cohort(tmp_path / "a", n_subjects=4, size=24, seed=3)
    make_phantom_cohort(tmp_path / "b", n_subjects=4, size=24, seed=3)
    make_phantom_cohort(tmp_path / "c", n_subjects=4, size=24, seed=4)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_cohort_table_lists_groups_and_factors(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    info = make_phantom_cohort(tmp_path, n_subjects=5, size=24, seed=0, disease_fraction=0.4,
                               progress=lambda done, total: calls.append((done, total)))
    with open(info.csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["path", "group", *FACTOR_NAMES, "labels"]
    assert len(rows) == 5 and sum(r["group"] == "disease" for r in rows) == 2
    assert calls[-1] == (5, 5)
    for row, factors in zip(rows, info.factors):
        assert (tmp_path / row["path"]).is_file() and (tmp_path / row["labels"]).is_file()
        assert float(row["ventricle_enlargement"]) == factors.ventricle_enlargement
    labels = nib.load(tmp_path / rows[0]["labels"])
    assert labels.get_data_dtype() == np.uint8


def test_groups_differ_in_disease_factors_but_overlap() -> None:
    rng = np.random.default_rng(0)
    healthy = [sample_factors("healthy", rng) for _ in range(200)]
    disease = [sample_factors("disease", rng) for _ in range(200)]
    for name in ("ventricle_enlargement", "cortical_atrophy", "lesion_load"):
        h = np.array([getattr(f, name) for f in healthy])
        d = np.array([getattr(f, name) for f in disease])
        assert d.mean() > h.mean() + 0.2
        assert h.max() > np.percentile(d, 5)  # the distributions overlap, like a real cohort
    for name in ("rotation_inplane", "head_size", "noise"):
        h = np.array([getattr(f, name) for f in healthy])
        d = np.array([getattr(f, name) for f in disease])
        assert abs(h.mean() - d.mean()) < 0.5 * (h.std() + d.std())  # nuisance factors do not differ


@pytest.mark.parametrize("kwargs, message", [
    ({"n_subjects": 0}, "n_subjects"),
    ({"size": 8}, "size"),
    ({"size": 1000}, "size"),
    ({"spacing": -1.0}, "spacing"),
    ({"disease_fraction": 1.5}, "disease_fraction"),
])
def test_bad_cohort_arguments_are_data_errors(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        make_phantom_cohort(tmp_path, **{"n_subjects": 2, "size": 24, **kwargs})


def test_bad_factors_and_groups_are_data_errors() -> None:
    with pytest.raises(DataError, match="ventricle_enlargement"):
        PhantomFactors(ventricle_enlargement=3.0)
    with pytest.raises(DataError, match="unknown group"):
        sample_factors("martian", np.random.default_rng(0))
