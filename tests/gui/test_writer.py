"""The npe2 writer: image layers back to NIfTI with the source affine."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_latent.errors import UserInputError
from napari_latent.gui.layers import META_KEY
from napari_latent.gui.reader import read_files, read_nifti
from napari_latent.gui.writer import write_image
from napari_latent.latent.traversal import Traversal
from napari_latent.volumes import open_volume
from tests.conftest import reoriented_copy


def _state(layer_data):
    data, kwargs, _ = layer_data
    return data, {"name": kwargs["name"], "metadata": kwargs["metadata"], "scale": kwargs["scale"],
                  "translate": kwargs["translate"]}


def test_writer_round_trips_affine_and_data_of_any_orientation(anatomical_path: Path, tmp_path: Path) -> None:
    other = tmp_path / "pir.nii.gz"
    nib.save(reoriented_copy(nib.load(anatomical_path), ("P", "I", "R")), other)
    for source in (anatomical_path, other):
        data, meta = _state(read_nifti(str(source))[0])
        out = tmp_path / f"saved_{Path(source).name}"
        out = out.with_name(out.name.replace(".nii.gz", ".nii").replace(".nii", ".nii.gz"))
        assert write_image(str(out), data * 2.0, meta) == [str(out)]
        original, saved = nib.load(source), nib.load(out)
        np.testing.assert_allclose(saved.affine, original.affine)  # the file's own affine and array order
        np.testing.assert_allclose(np.asanyarray(saved.dataobj), 2.0 * open_volume(source).data, rtol=1e-6)
        assert int(saved.header["sform_code"]) >= 1
        # and it reopens exactly where the source is
        [(again, kwargs, _)] = read_nifti(str(out))
        np.testing.assert_allclose(again, data * 2.0, rtol=1e-6)
        assert kwargs["scale"] == pytest.approx(meta["scale"])
        assert kwargs["translate"] == pytest.approx(meta["translate"])
        assert not list(tmp_path.glob(".*tmp*"))  # atomic: no temporary files left


def test_writer_without_our_metadata_uses_scale_and_translate(tmp_path: Path) -> None:
    data = np.random.default_rng(0).random((6, 7, 8)).astype(np.float32)
    meta = {"name": "plain", "metadata": {}, "scale": (2.0, 1.5, 1.0), "translate": (10.0, -5.0, 3.0)}
    [path] = write_image(str(tmp_path / "plain.nii"), data, meta)
    [(again, kwargs, _)] = read_nifti(path)
    np.testing.assert_allclose(again, data)
    assert kwargs["scale"] == pytest.approx(meta["scale"])
    assert kwargs["translate"] == pytest.approx(meta["translate"])


def test_writer_saves_a_traversal_layer_that_reopens_as_a_traversal(tmp_path: Path) -> None:
    from tests.gui._results import make_results

    results = make_results(tmp_path / "results")
    [layer] = read_files(str(results.traversal_path))
    data, meta = _state(layer)
    written = write_image(str(tmp_path / "copy.nii.gz"), data, meta)
    assert [Path(p).name for p in written] == ["copy.nii.gz", "copy.json"]
    again = Traversal.load(tmp_path / "copy.nii.gz")
    np.testing.assert_allclose(again.images, results.traversal.images, atol=1e-6)
    np.testing.assert_allclose(again.alphas, results.traversal.alphas)
    np.testing.assert_allclose(nib.load(tmp_path / "copy.nii.gz").affine, results.volume.affine)
    assert again.direction.name == results.traversal.direction.name


def test_writer_refuses_bad_input(anatomical_path: Path, tmp_path: Path) -> None:
    data, meta = _state(read_nifti(str(anatomical_path))[0])
    with pytest.raises(UserInputError, match="NIfTI file name"):
        write_image(str(tmp_path / "out.tif"), data, meta)
    with pytest.raises(UserInputError, match="does not match"):
        write_image(str(tmp_path / "out.nii"), data[:-1], meta)
    bad = data.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(UserInputError, match="NaN"):
        write_image(str(tmp_path / "out.nii"), bad, meta)
    with pytest.raises(UserInputError, match="3D or 4D"):
        write_image(str(tmp_path / "out.nii"), data[0], meta)
    assert not list(tmp_path.iterdir())


@pytest.mark.gui
def test_napari_saves_a_layer_through_our_writer(make_napari_viewer, anatomical_path: Path, tmp_path: Path) -> None:
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(anatomical_path), plugin="napari-latent")
    assert META_KEY in layer.metadata
    out = tmp_path / "saved.nii.gz"
    written = viewer.layers.save(str(out), selected=False, plugin="napari-latent")
    assert written == [str(out)]
    np.testing.assert_allclose(nib.load(out).affine, nib.load(anatomical_path).affine)
    np.testing.assert_allclose(open_volume(out).data, open_volume(anatomical_path).data)


def test_writer_saves_lazy_traversal_layers_frame_by_frame(tmp_path: Path, monkeypatch) -> None:
    from napari_latent.gui.traverse_widget import traversal_layers
    from napari_latent.latent.traversal import StoredTraversal
    from napari_latent.latent.traversal.store import write_store
    from tests.gui._results import make_results

    results = make_results(tmp_path / "results")
    stored = StoredTraversal.open(write_store(results.traversal, tmp_path / "trav.zarr"))
    layer, difference = traversal_layers(stored, "subject")
    # every frame is read on its own, never the whole 4D array
    reads = []
    data = layer[0]

    class Frames:
        shape, dtype, ndim = data.shape, data.dtype, data.ndim

        def __getitem__(self, index):
            reads.append(index)
            assert isinstance(index, int), "the writer asked for more than one frame"
            return data[index]

        def __array__(self, *args, **kwargs):
            raise AssertionError("the writer read the whole layer")

    written = write_image(str(tmp_path / "copy.nii.gz"), Frames(), _state(layer)[1])
    assert [Path(p).name for p in written] == ["copy.nii.gz", "copy.json"] and reads == [0, 1, 2, 3, 4]
    again = Traversal.load(tmp_path / "copy.nii.gz")
    np.testing.assert_array_equal(again.images, results.traversal.images)
    np.testing.assert_allclose(nib.load(tmp_path / "copy.nii.gz").affine, results.volume.affine)
    assert again.direction.name == results.traversal.direction.name
    # the difference overlay (a lazy expression) too, as a plain 4D NIfTI on the source grid
    [path] = write_image(str(tmp_path / "difference.nii"), *_state(difference))
    saved = np.asanyarray(nib.load(path).dataobj)
    expected = results.traversal.images - results.traversal.baseline[None]
    np.testing.assert_allclose(np.moveaxis(saved, -1, 0), expected, atol=1e-6)
    assert not list(tmp_path.glob(".*tmp*"))
