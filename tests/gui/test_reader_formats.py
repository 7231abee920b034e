"""The napari reader on real-scan formats: DICOM folders, NRRD, MetaImage and MGZ open as layers
on the NIfTI copy's scale and translation; oblique scans warn; the bad-input corpus gives
notifications; DICOM identifiers never reach layer names or metadata; the Invert widget takes such
a layer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_latent.gui import reader
from napari_latent.gui.reader import get_reader, read_files
from napari_latent.volumes import Volume, open_volume, save_volume
from tests.volumes._series import PATIENT, rotated, write_dicom_series, write_itk, write_mgz
from tests.volumes.bad_inputs import CORPUS, small_volume


@pytest.fixture
def notes(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {"error": [], "warning": [], "info": []}
    monkeypatch.setattr(reader, "_notify_error", seen["error"].append)
    monkeypatch.setattr(reader, "_notify_warning", seen["warning"].append)
    monkeypatch.setattr(reader, "_notify_info", seen["info"].append)
    return seen


def _copies(volume: Volume, root: Path) -> dict[str, Path]:
    save_volume(volume, root / "scan.nii.gz")
    write_dicom_series(volume, root / "dicom", slope=1.0, intercept=0.0)
    return {"nifti": root / "scan.nii.gz", "dicom": root / "dicom", "nrrd": write_itk(volume, root / "scan.nrrd"),
            "mha": write_itk(volume, root / "scan.mha"), "mgz": write_mgz(volume, root / "scan.mgz")}


@pytest.mark.parametrize("oblique", [False, True])
def test_every_format_opens_on_the_nifti_layers_scale_and_translation(tmp_path: Path, notes, oblique: bool) -> None:
    base = small_volume(8)
    volume = Volume(np.round(base.data), rotated(base.affine, 20.0) if oblique else base.affine, None, {}, "scan")
    paths = _copies(volume, tmp_path)
    layers = {}
    for fmt, path in paths.items():
        assert get_reader(str(path)) is read_files, fmt
        [(data, kwargs, kind)] = read_files(str(path))
        assert kind == "image"
        layers[fmt] = (data, kwargs)
    data0, kwargs0 = layers["nifti"]
    for fmt, (data, kwargs) in layers.items():
        np.testing.assert_array_equal(data, data0, err_msg=fmt)
        np.testing.assert_allclose(kwargs["scale"], kwargs0["scale"], atol=1e-5, err_msg=fmt)
        np.testing.assert_allclose(kwargs["translate"], kwargs0["translate"], atol=1e-4, err_msg=fmt)
        assert kwargs["metadata"]["napari_latent"]["oblique"] is oblique
    assert notes["error"] == []
    if oblique:
        assert len(notes["warning"]) == len(paths)
        assert all("is oblique (20.0 degrees" in m for m in notes["warning"])
    else:
        assert notes["warning"] == []


def test_dicom_layers_hold_technical_facts_and_no_identifiers(tmp_path: Path, notes) -> None:
    write_dicom_series(small_volume(), tmp_path / "exam", description="Head CT")
    [(_data, kwargs, _kind)] = read_files(str(tmp_path / "exam"))
    assert kwargs["name"] == "exam"
    header = kwargs["metadata"]["napari_latent"]["header"]
    assert header["modality"] == "CT" and header["series_description"] == "Head CT"
    text = json.dumps(kwargs["metadata"], default=str) + kwargs["name"]
    for value in PATIENT.values():
        assert value not in text


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_each_bad_input_is_a_notification(name: str, tmp_path: Path, notes) -> None:
    path, pattern = CORPUS[name](tmp_path)
    assert get_reader(str(path)) is read_files, "claimed, so the user gets our specific message"
    assert read_files(str(path)) == reader.NULL_LAYERS
    [message] = notes["error"]
    assert path.name in message
    import re

    assert re.search(pattern, message), message


@pytest.mark.gui
def test_a_dicom_layer_in_napari_feeds_the_invert_widget(make_napari_viewer, tmp_path: Path) -> None:
    from napari_latent.gui.layers import volume_from_layer

    write_dicom_series(small_volume(16), tmp_path / "exam")
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(tmp_path / "exam"), plugin="napari-latent")
    assert layer.data.shape == (16, 16, 16)
    restored = volume_from_layer(layer.data, layer.metadata, layer.scale, layer.translate)
    source = open_volume(tmp_path / "exam")
    np.testing.assert_array_equal(restored.data, source.data)
    np.testing.assert_allclose(restored.affine, source.affine)
