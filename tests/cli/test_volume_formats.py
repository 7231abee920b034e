"""The command line on real-scan formats: every bad input of the corpus is one line and exit 2
with nothing written; --series; DICOM identifiers never reach what we print or write; a traversal of
a DICOM series overlays the traversal of the same scan as NIfTI exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_latent.cli import main
from napari_latent.latent.inversion import invert
from napari_latent.latent.traversal import traverse
from napari_latent.models.checkpoint import load_model
from napari_latent.volumes import Volume, open_volume, save_volume
from tests.volumes._series import PATIENT, write_dicom_series
from tests.volumes.bad_inputs import CORPUS, two_series
from tests.volumes.test_formats import canonical


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_each_bad_input_is_one_line_exit_2_and_nothing_written(name: str, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    path, _pattern = CORPUS[name](tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    assert main(["invert", "demo", str(path), "--out", str(out / "codes.safetensors"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert list(out.iterdir()) == []
    for value in PATIENT.values():
        assert value not in err


def test_series_option_and_folder_uid_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, _ = two_series(tmp_path)
    assert main(["info", str(folder)]) == 2
    assert "--series UID" in capsys.readouterr().err
    assert main(["info", str(folder), "--series", "1.2.826.0.1.3680043.8.498.2", "--json"]) == 0
    printed = capsys.readouterr().out
    assert '"modality": "MR"' in printed and '"series_description": "T2 axial"' in printed
    assert main(["info", f"{folder}::1.2.826.0.1.3680043.8.498.1"]) == 0
    printed += capsys.readouterr().out
    for value in PATIENT.values():
        assert value not in printed
    assert main(["info", f"{folder}::1.2.826.0.1.3680043.8.498.1", "--series", "1.2"]) == 2
    assert "not both" in capsys.readouterr().err


def _scan() -> Volume:
    """A healthy phantom as a CT-like integer volume."""
    from napari_latent.volumes.phantoms.anatomy import make_phantom

    phantom = make_phantom(size=48, seed=3)
    return Volume(np.round(phantom.image * 100.0), phantom.affine, None, {}, "scan")


def test_a_dicom_traversal_overlays_the_nifti_traversal_exactly(tmp_path: Path) -> None:
    from tests.volumes._series import rotated

    base = _scan()
    scan = Volume(base.data, rotated(base.affine, 12.0, axis=1), None, {}, "scan")
    save_volume(scan, tmp_path / "scan.nii.gz")
    write_dicom_series(scan, tmp_path / "dicom", slope=1.0, intercept=0.0)
    model = load_model("demo", device="cpu")
    results = []
    for source in (open_volume(tmp_path / "scan.nii.gz"), open_volume(tmp_path / "dicom")):
        codes = invert(model, source, method="encoder")
        direction = np.zeros(codes.codes.shape[1], dtype=np.float32)
        direction[0] = 1.0
        traversal = traverse(model, codes, direction, "-2:2:3", source=source)
        results.append(traversal)
    nifti, dicom = results
    assert nifti.images.shape == dicom.images.shape
    for a, b in zip(nifti.images, dicom.images, strict=True):
        data_a, affine_a = canonical(Volume(a, nifti.grid.affine))
        data_b, affine_b = canonical(Volume(b, dicom.grid.affine))
        np.testing.assert_allclose(affine_a, affine_b, atol=1e-4, rtol=0)
        np.testing.assert_allclose(data_a, data_b, atol=1e-4)
    written = tmp_path / "codes.safetensors"
    invert(model, open_volume(tmp_path / "dicom"), method="encoder").save(written)
    blob = written.read_bytes()
    for value in PATIENT.values():
        assert value.encode() not in blob
