"""``napari-latent eigen --roi``: regions.csv, regions.png and the report section; bad masks exit 2."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_latent.cli import main
from napari_latent.latent.traversal import Traversal
from napari_latent.volumes.grid import Grid

SHAPE = (10, 12, 14)
AFFINE = np.diag([0.5, 2.0, 3.0, 1.0])  # a voxel is 3 mm³
ALPHAS = np.array([0.0, 1.0, 2.0, 3.0, 4.0])


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A synthetic traversal (a bright block whose centre darkens with alpha) and a label mask."""
    folder = tmp_path_factory.mktemp("regions_cli")
    rng = np.random.default_rng(0)
    labels = np.zeros(SHAPE, dtype=np.int32)
    labels[2:8, 3:9, 3:11] = 2          # 6 * 6 * 8 = 288 voxels, less the 16 of label 1
    labels[4:6, 5:7, 5:9] = 1           # 2 * 2 * 4 = 16 voxels inside it
    base = np.where(labels > 0, 80.0, 0.0) + rng.normal(0, 0.5, SHAPE)
    images = np.stack([base - 10 * alpha * (labels == 1) for alpha in ALPHAS]).astype(np.float32)
    traversal = Traversal(images, ALPHAS, Grid(SHAPE, AFFINE))
    mask = folder / "labels.nii.gz"
    nib.save(nib.Nifti1Image(labels.astype(np.float32), AFFINE), mask)
    wrong = folder / "wrong.nii.gz"
    nib.save(nib.Nifti1Image(labels[:, :, :-1].astype(np.float32), AFFINE), wrong)
    return {"traversal": traversal.save(folder / "t.nii.gz"), "mask": mask, "wrong": wrong,
            "labels": labels, "base": base}  # type: ignore[dict-item]


def test_eigen_roi_writes_regions_csv_png_and_a_report_section(files: dict, tmp_path: Path) -> None:
    out = tmp_path / "eigen"
    assert main(["eigen", str(files["traversal"]), "--out", str(out), "--components", "2", "--quiet",
                 "--roi", str(files["mask"]), "--roi-threshold", "55", "--roi-below"]) == 0
    with open(out / "regions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["label"] for r in rows] == ["1"] * 5 + ["2"] * 5
    inner = [r for r in rows if r["label"] == "1"]
    expected = files["base"][files["labels"] == 1].mean() - 10 * ALPHAS
    np.testing.assert_allclose([float(r["mean_intensity"]) for r in inner], expected, rtol=1e-5)
    # below 55: none at alphas 0..2 (80 - 20 = 60), all 16 voxels (48 mm³) at alphas 3 and 4.
    assert [int(r["below_threshold_voxels"]) for r in inner] == [0, 0, 0, 16, 16]
    np.testing.assert_allclose([float(r["below_threshold_mm3"]) for r in inner], [0, 0, 0, 48, 48])
    assert float(rows[-1]["region_mm3"]) == pytest.approx(272 * 3.0)
    assert "component_2_mean" in rows[0]
    assert (out / "regions.png").stat().st_size > 0 and (out / "report" / "regions.png").is_file()
    assert "Regions of interest" in (out / "report" / "report.html").read_text()
    assert json.loads((out / "report" / "report.json").read_text())["regions"]["figure"] == "regions.png"


def test_eigen_roi_auto_measures_the_dark_volume(files: dict, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "auto"
    assert main(["eigen", str(files["traversal"]), "--out", str(out), "--components", "2", "--quiet",
                 "--no-report", "--roi", "auto"]) == 0
    with open(out / "regions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["region"] == "csf (auto)" and "below_threshold_mm3" in rows[0]
    assert "automatic" in capsys.readouterr().out


@pytest.mark.parametrize("roi, message", [("wrong", "grid shape"), ("missing", "no such file")])
def test_a_bad_roi_is_one_line_exit_2_and_writes_nothing(files: dict, tmp_path: Path, roi: str, message: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eigen"
    path = files.get(roi, tmp_path / "missing.nii.gz")
    assert main(["eigen", str(files["traversal"]), "--out", str(out), "--quiet", "--roi", str(path)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]
    assert not out.exists()


def test_roi_options_need_roi(files: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eigen"
    assert main(["eigen", str(files["traversal"]), "--out", str(out), "--quiet", "--roi-threshold", "3"]) == 2
    assert "--roi" in capsys.readouterr().err and not out.exists()
