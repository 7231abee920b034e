"""``napari-latent eigen --gallery DIRS --model MODEL``: the directions' gallery in the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_latent.analysis.gallery import direction_gallery
from napari_latent.cli import main
from tests.gui._results import make_results


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return make_results(tmp_path_factory.mktemp("eigen_gallery"))


def test_the_report_shows_the_gallery_of_the_directions(results, tmp_path: Path) -> None:
    out = tmp_path / "eigen"
    assert main(["eigen", str(results.traversal_path), "--out", str(out), "--components", "2", "--quiet",
                 "--gallery", str(results.directions_path), "--model", str(results.model_path),
                 "--gallery-amount", "3"]) == 0
    report = out / "report"
    page = (report / "report.html").read_text()
    assert "Gallery of the directions" in page and 'src="gallery.png"' in page
    facts = json.loads((report / "report.json").read_text())["gallery"]
    expected = direction_gallery(results.model, results.directions, amount=3.0)
    assert facts["figure"] == "gallery.png" and facts["amount"] == 3.0
    assert [row["name"] for row in facts["rows"]] == results.directions.names
    np.testing.assert_allclose([row["difference"] for row in facts["rows"]], expected.differences, rtol=1e-4)
    with Image.open(report / "gallery.png") as image:
        assert image.format == "PNG" and image.size[1] > 100


@pytest.mark.parametrize("extra, message", [
    (["--gallery", "DIRS"], "--gallery needs --model"),
    (["--model", "MODEL"], "--model is only used with --gallery"),
    (["--gallery", "DIRS", "--model", "MODEL", "--no-report"], "drop --no-report"),
])
def test_bad_gallery_options_exit_2_before_writing(results, tmp_path: Path, capsys, extra, message) -> None:
    extra = [str(results.directions_path) if a == "DIRS" else str(results.model_path) if a == "MODEL" else a
             for a in extra]
    out = tmp_path / "eigen"
    assert main(["eigen", str(results.traversal_path), "--out", str(out), "--quiet", *extra]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1
    assert not out.exists()
