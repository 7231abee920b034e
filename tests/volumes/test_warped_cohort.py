"""Cohorts warped from a real scan: the factors do what the table says, files are reproducible."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage, stats

from napari_latent.cli import main
from napari_latent.errors import DataError, VolumeError
from napari_latent.volumes import Volume, foreground_mask, load_cohort
from napari_latent.volumes.phantoms import PhantomFactors, make_phantom
from napari_latent.volumes.warped import (
    WARPED_FACTOR_NAMES,
    VentricleWarp,
    WarpedFactors,
    WarpSource,
    anatomical_path,
    make_warped_cohort,
    output_grid,
    prepare_source,
    sample_warped_factors,
    warp_subject,
)
from napari_latent.volumes.warped.deform import exponentiate, sample

SIZE = 40


@pytest.fixture(scope="module")
def source() -> WarpSource:
    return prepare_source(None)


@pytest.fixture(scope="module")
def warp(source: WarpSource) -> VentricleWarp:
    return VentricleWarp(source)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("warped")
    return make_warped_cohort(folder, n_subjects=8, size=SIZE, seed=4)


def render(source: WarpSource, warp: VentricleWarp, size: int = SIZE,
           **factors: float) -> tuple[np.ndarray, np.ndarray]:
    return warp_subject(source, warp, WarpedFactors(**factors), output_grid(source, size), rng=0)


def axial_angle(mask: np.ndarray) -> float:
    """Orientation (degrees, 0..180) of the principal axis of a mask's axial projection (RAS array)."""
    x, y = np.nonzero(mask.any(axis=2))
    values, vectors = np.linalg.eigh(np.cov(np.stack([x - x.mean(), y - y.mean()])))
    major = vectors[:, np.argmax(values)]
    return float(np.degrees(np.arctan2(major[1], major[0])) % 180)


# -- the source and its ventricles --------------------------------------------------------------


def test_the_default_source_is_nibabels_real_t1(source: WarpSource) -> None:
    assert source.path == anatomical_path()
    assert source.data.shape == (33, 41, 25)
    np.testing.assert_allclose(source.affine, nib.load(anatomical_path()).affine)


def test_the_ventricles_are_found_as_the_dark_region_near_the_centre(source: WarpSource) -> None:
    mask = source.ventricles
    assert 2000 < source.ventricle_volume_mm3 < 20000  # a few ml, as lateral ventricles are
    inside, tissue = source.data[mask], source.data[source.head & ~mask]
    assert np.median(inside) < 0.5 * np.median(tissue)  # CSF is dark in T1
    world = source.affine @ np.vstack([np.array(np.nonzero(mask), dtype=float), np.ones(int(mask.sum()))])
    assert abs(world[0].mean() - source.centre[0]) < 5.0  # the two ventricles straddle the midline
    left, right = (world[0] < source.centre[0]).sum(), (world[0] > source.centre[0]).sum()
    assert 0.6 < left / right < 1.6
    assert ndimage.label(mask)[1] <= 2


def test_the_ventricles_of_a_phantom_are_found_where_its_labels_put_them() -> None:
    phantom = make_phantom(PhantomFactors(ventricle_enlargement=0.6, noise=0.01), size=64, seed=2)
    found = prepare_source(Volume(phantom.image, phantom.affine, name="phantom")).ventricles
    truth = phantom.labels == 6
    dice = 2 * np.count_nonzero(found & truth) / (found.sum() + truth.sum())
    assert dice > 0.7


# -- the ventricle warp ---------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [0.9, 1.5, 2.0])
def test_the_push_is_calibrated_to_the_volume_factor(warp: VentricleWarp, factor: float) -> None:
    assert warp.factor(warp.alpha_for(factor)) == pytest.approx(factor, rel=3e-3)


def test_the_warp_is_a_diffeomorphism(warp: VentricleWarp) -> None:
    alpha = warp.alpha_for(2.0)
    inverse = warp.inverse_displacement(alpha)
    h = warp.grid.spacing
    jacobian = np.stack([np.stack(np.gradient(inverse[c], h)) for c in range(3)]) + np.eye(3)[:, :, None, None, None]
    det = np.linalg.det(np.moveaxis(jacobian, (0, 1), (-2, -1)))
    assert det.min() > 0.05  # orientation preserved everywhere: no folding
    assert det.min() < 0.8 and det.max() > 1.05  # expands the ventricles, compresses the tissue around
    # forward after inverse is the identity (to a fraction of a voxel)
    forward = exponentiate(alpha * warp.velocity, h)
    points = warp.grid.points()
    moved = points + inverse
    back = moved + np.stack([ndimage.map_coordinates(forward[c], warp.grid.index(moved), order=1, mode="nearest")
                             for c in range(3)])
    assert np.abs(back - points).max() < 0.3 * h
    # the head's outline does not move: the push fades away from the ventricles
    edge = np.zeros(warp.grid.shape, dtype=bool)
    edge[[0, -1]] = edge[:, [0, -1]] = edge[:, :, [0, -1]] = True
    assert np.abs(inverse[:, edge]).max() < 0.05 * h


def test_a_factor_outside_the_range_is_refused(warp: VentricleWarp) -> None:
    with pytest.raises(DataError, match=r"between 0\.5 and 3"):
        warp.alpha_for(5.0)
    with pytest.raises(DataError, match="ventricle_enlargement"):
        WarpedFactors(ventricle_enlargement=0.1)


# -- one subject: every factor does what it says -------------------------------------------------


def test_an_unwarped_subject_overlays_the_source(source: WarpSource, warp: VentricleWarp) -> None:
    image, ventricles = render(source, warp, size=64)
    grid = output_grid(source, 64)
    assert grid.orientation == ("R", "A", "S")
    assert grid.spacing[0] == pytest.approx(grid.spacing[1]) == pytest.approx(grid.spacing[2])
    assert grid.spacing[0] < source.spacing  # 64 voxels over the head: finer than the 2 mm scan
    # read the output back at the source's voxel centres (world coordinates): the source again
    ijk = np.array(np.nonzero(source.head), dtype=float)
    world = (source.affine @ np.vstack([ijk, np.ones(ijk.shape[1])]))[:3]
    again = sample(image, grid.affine, world)
    assert np.corrcoef(again, source.data[source.head])[0, 1] > 0.9
    # the ventricles sit where they were, in world coordinates
    vox = np.array(np.nonzero(ventricles >= 0.5), dtype=float)
    centroid = (grid.affine @ np.vstack([vox, np.ones(vox.shape[1])]))[:3].mean(axis=1)
    vox = np.array(np.nonzero(source.ventricles), dtype=float)
    expected = (source.affine @ np.vstack([vox, np.ones(vox.shape[1])]))[:3].mean(axis=1)
    np.testing.assert_allclose(centroid, expected, atol=1.0)
    volume = float(ventricles.sum()) * grid.spacing[0] ** 3
    assert volume == pytest.approx(source.ventricle_volume_mm3, rel=0.03)


def test_enlarged_ventricles_have_the_asked_volume_and_the_head_does_not_change(source: WarpSource,
                                                                                 warp: VentricleWarp) -> None:
    base_image, base = render(source, warp)
    image, ventricles = render(source, warp, ventricle_enlargement=1.8)
    assert ventricles.sum() / base.sum() == pytest.approx(1.8, rel=0.05)
    # the ventricles are darker and larger in the image itself, not only in the mask
    assert np.count_nonzero(image < 0.3) > np.count_nonzero(base_image < 0.3)
    assert foreground_mask(image, fill_holes=True).sum() == pytest.approx(foreground_mask(base_image).sum(),
                                                                          rel=0.02)


def test_head_size_scales_the_head(source: WarpSource, warp: VentricleWarp) -> None:
    sizes = (0.9, 1.0, 1.1)
    heads = [foreground_mask(render(source, warp, size=48, head_size=s)[0]).sum() for s in sizes]
    for s, head in zip(sizes, heads):
        assert (head / heads[1]) ** (1 / 3) == pytest.approx(s, rel=0.03)
    volumes = [render(source, warp, size=48, head_size=s)[1].sum() for s in (0.9, 1.1)]
    assert volumes[1] / volumes[0] == pytest.approx((1.1 / 0.9) ** 3, rel=0.05)


@pytest.mark.parametrize("degrees", [-10.0, 7.0])
def test_rotation_turns_the_head_in_plane_by_the_angle(source: WarpSource, warp: VentricleWarp,
                                                       degrees: float) -> None:
    still = axial_angle(render(source, warp, size=64)[0] > 0.05)
    turned = axial_angle(render(source, warp, size=64, rotation_inplane=degrees)[0] > 0.05)
    # positive turns the nose (+y) toward the subject's left (-x): counter-clockwise seen from above
    assert (turned - still + 90) % 180 - 90 == pytest.approx(degrees, abs=1.5)


def test_gamma_is_a_power_of_the_normalised_intensities(source: WarpSource, warp: VentricleWarp) -> None:
    plain, _ = render(source, warp)
    bent, _ = render(source, warp, gamma=1.25)
    np.testing.assert_allclose(bent, plain ** 1.25, rtol=1e-5, atol=1e-6)


def test_bias_and_noise_change_intensities_by_their_amounts(source: WarpSource, warp: VentricleWarp) -> None:
    plain, _ = render(source, warp)
    biased, _ = render(source, warp, bias_field=0.2)
    ratio = biased[plain > 0.3] / plain[plain > 0.3]
    assert 0.79 < ratio.min() < 0.95 and 1.05 < ratio.max() < 1.21
    noisy, _ = render(source, warp, noise=0.05)
    background = plain == 0
    # Rician noise in the background: Rayleigh with mean sigma * sqrt(pi / 2)
    assert noisy[background].mean() == pytest.approx(0.05 * np.sqrt(np.pi / 2), rel=0.1)


# -- the cohort ---------------------------------------------------------------------------------


def test_the_cohort_table_reads_with_load_cohort(cohort) -> None:
    read = load_cohort(cohort.folder)
    assert len(read) == 8
    assert read.groups == ["disease", "healthy"]
    assert [s.group for s in read.subjects] == cohort.groups
    assert read.factor_names == [*WARPED_FACTOR_NAMES, "ventricle_volume_mm3"]
    for name in WARPED_FACTOR_NAMES:
        np.testing.assert_allclose(read.column(name), [getattr(f, name) for f in cohort.factors])
    np.testing.assert_allclose(read.column("ventricle_volume_mm3"), cohort.ventricle_volumes_mm3, rtol=1e-6)
    with open(cohort.csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["path"] == "sub-001.nii.gz" and rows[0]["labels"] == "labels/sub-001_ventricles.nii.gz"


def test_cohort_files_have_the_grid_affine(cohort) -> None:
    for path in cohort.paths[:2]:
        image = nib.load(path)
        assert image.shape == (SIZE,) * 3
        assert image.get_data_dtype() == np.float32
        np.testing.assert_allclose(image.affine, cohort.grid.affine, atol=1e-4)
        assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
    labels = nib.load(cohort.label_paths[0])
    assert labels.get_data_dtype() == np.uint8
    np.testing.assert_allclose(labels.affine, cohort.grid.affine, atol=1e-4)


def test_the_ventricle_volume_follows_the_disease_factor(cohort) -> None:
    factors = np.array([f.ventricle_enlargement for f in cohort.factors])
    head = np.array([f.head_size for f in cohort.factors])
    volumes = np.array(cohort.ventricle_volumes_mm3)
    disease = np.array([g == "disease" for g in cohort.groups])
    assert disease.sum() == 4
    assert factors[disease].min() >= 1.4 > 1.12 >= factors[~disease].max()
    # head size is a nuisance of the raw volume (volume ~ head_size cubed); normalised by it, the
    # volume follows the factor (as ventricle volume over intracranial volume does)
    assert stats.pearsonr(factors, volumes).statistic > 0.85
    assert stats.spearmanr(factors, volumes / head**3).statistic > 0.95
    # the measured volume is the source's, times the factor, times the head's scale cubed
    expected = cohort.source.ventricle_volume_mm3 * factors * head**3
    np.testing.assert_allclose(volumes, expected, rtol=0.06)
    assert volumes[disease].min() > volumes[~disease].max()
    # the written masks agree with the column
    voxel = abs(np.linalg.det(cohort.grid.affine[:3, :3]))
    counted = np.array([np.asarray(nib.load(p).dataobj).sum() * voxel for p in cohort.label_paths])
    assert np.all((counted < 1.02 * volumes) & (counted > 0.85 * volumes))  # thin parts fall under 0.5


def test_the_nuisances_vary_and_stay_in_their_ranges(cohort) -> None:
    table = np.array([[getattr(f, n) for n in WARPED_FACTOR_NAMES[1:]] for f in cohort.factors])
    rotation, head, gamma, bias, noise = table.T
    assert np.all(np.abs(rotation) <= 10) and rotation.std() > 2
    assert head.min() >= 0.9 and head.max() <= 1.1 and head.std() > 0.01
    assert gamma.min() >= 0.8 and gamma.max() <= 1.25 and gamma.std() > 0.03
    assert bias.min() >= 0 and bias.max() <= 0.15 and noise.min() >= 0.01 and noise.max() <= 0.03


def test_sampling_draws_the_same_numbers_for_either_group() -> None:
    a, b = np.random.default_rng(1), np.random.default_rng(1)
    healthy, disease = sample_warped_factors("healthy", a), sample_warped_factors("disease", b)
    assert healthy.rotation_inplane == disease.rotation_inplane and healthy.noise == disease.noise
    with pytest.raises(DataError, match="unknown group"):
        sample_warped_factors("other", a)


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_cohorts_are_reproducible_byte_for_byte(tmp_path: Path) -> None:
    make_warped_cohort(tmp_path / "a", n_subjects=3, size=32, seed=7)
    make_warped_cohort(tmp_path / "b", n_subjects=3, size=32, seed=7)
    make_warped_cohort(tmp_path / "c", n_subjects=3, size=32, seed=8)
    first = _digests(tmp_path / "a")
    assert set(first) >= {"cohort.csv", "warped_cohort.json", "sub-001.nii.gz", "labels/sub-003_ventricles.nii.gz"}
    assert first == _digests(tmp_path / "b")
    assert first["cohort.csv"] != _digests(tmp_path / "c")["cohort.csv"]


@pytest.mark.parametrize("kwargs, error, match", [
    ({"n_subjects": 0}, DataError, "n_subjects"),
    ({"seed": -1}, DataError, "seed"),
    ({"size": 8}, DataError, "size must be between 16 and 512"),
    ({"disease_fraction": 1.5}, DataError, "disease_fraction"),
    ({"source": "missing.nii.gz"}, VolumeError, "no such file"),
])
def test_bad_arguments_are_refused(tmp_path: Path, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        make_warped_cohort(tmp_path / "out", **{"n_subjects": 2, "size": 32, **kwargs})


def test_a_scan_without_dark_ventricles_is_refused(tmp_path: Path) -> None:
    bright = np.zeros((32, 32, 32), dtype=np.float32)
    bright[4:28, 4:28, 4:28] = 1.0 + 0.01 * np.random.default_rng(0).random((24, 24, 24))
    with pytest.raises(DataError, match="ventricles"):
        prepare_source(Volume(bright, np.eye(4)))


# -- the command line ----------------------------------------------------------------------------


def test_the_phantoms_command_warps_a_scan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "warped"
    assert main(["phantoms", str(out), "--from-scan", "anatomical", "--subjects", "4", "--size", "32",
                 "--seed", "1", "--quiet"]) == 0
    assert "wrote 4 volumes (2 disease, 2 healthy) warped from anatomical.nii" in capsys.readouterr().out
    read = load_cohort(out)
    assert len(read) == 4 and "ventricle_enlargement" in read.factor_names
    # a scan given by path works the same
    assert main(["phantoms", str(tmp_path / "again"), "--from-scan", str(anatomical_path()), "--subjects", "4",
                 "--size", "32", "--seed", "1", "--quiet"]) == 0
    assert (tmp_path / "again" / "cohort.csv").read_bytes() == (out / "cohort.csv").read_bytes()


@pytest.mark.parametrize("extra, message", [
    (["--from-scan", "missing.nii"], "no such file"),
    (["--from-scan", "anatomical", "--spacing", "2"], "--spacing"),
    (["--from-scan", "anatomical", "--size", "8"], "size must be between"),
    (["--from-scan", ""], "--from-scan"),
])
def test_the_phantoms_command_refuses_bad_scans_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            extra: list[str], message: str) -> None:
    assert main(["phantoms", str(tmp_path / "x"), "--subjects", "2", "--quiet", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err
