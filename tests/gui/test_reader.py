"""The npe2 reader and sample data, alone and in a real napari viewer."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_latent.errors import UserInputError, VolumeError
from napari_latent.gui.layers import META_KEY, grid_layer_data, volume_from_layer
from napari_latent.gui.reader import NULL_LAYERS, get_reader, layers_for, read_files, read_nifti
from napari_latent.gui.session import get_session
from napari_latent.volumes import open_volume, save_volume
from tests.conftest import reoriented_copy
from tests.volumes.test_readers import readers, register_npy, write_npy  # noqa: F401


def test_get_reader_claims_only_nifti(anatomical_path: Path) -> None:
    assert get_reader(str(anatomical_path)) is read_files
    assert get_reader("scan.nii.gz") is read_files
    assert get_reader("picture.png") is None
    assert get_reader(["a.nii", "b.tif"]) is None


def test_reader_layer_is_display_oriented_with_mm_scale(anatomical_path: Path) -> None:
    [(data, kwargs, kind)] = read_nifti(str(anatomical_path))
    assert kind == "image"
    assert data.shape == (25, 41, 33)  # (S, P, L)
    assert kwargs["scale"] == pytest.approx((2.0, 2.0, 2.0))
    assert kwargs["translate"] == pytest.approx((-16.0, -40.0, -32.0))
    entry = kwargs["metadata"][META_KEY]
    np.testing.assert_allclose(entry["grid"]["affine"], nib.load(anatomical_path).affine)
    assert entry["source_orientation"] == "LAS"
    back = volume_from_layer(data, kwargs["metadata"], kwargs["scale"], kwargs["translate"])
    np.testing.assert_array_equal(back.data, open_volume(anatomical_path).data)


def test_reader_series_has_a_frame_axis(example4d_path: Path) -> None:
    [(data, kwargs, _)] = read_nifti(str(example4d_path))
    assert data.ndim == 4 and data.shape[0] == 2
    assert kwargs["axis_labels"][0] == "frame"
    assert kwargs["metadata"][META_KEY]["oblique"] is True
    assert len(kwargs["scale"]) == 4


def test_reader_raises_specific_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.nii"
    bad.write_text("not an image")
    with pytest.raises(VolumeError, match="not a valid NIfTI"):
        read_nifti(str(bad))


@pytest.mark.gui
def test_layers_from_any_file_orientation_overlay_in_napari(make_napari_viewer, anatomical_path: Path,
                                                            tmp_path: Path) -> None:
    viewer = make_napari_viewer()
    other = tmp_path / "other.nii.gz"
    nib.save(reoriented_copy(nib.load(anatomical_path), ("P", "I", "R")), other)
    [a] = viewer.open(str(anatomical_path), plugin="napari-latent")
    [b] = viewer.open(str(other), plugin="napari-latent")
    np.testing.assert_array_equal(a.data, b.data)
    for index in [(0, 0, 0), (10, 20, 30), (24, 40, 32)]:
        np.testing.assert_allclose(a.data_to_world(index), b.data_to_world(index))
    # a map computed on the volume and added as a layer overlays voxel for voxel
    volume = open_volume(anatomical_path)
    derived = grid_layer_data(volume.data > volume.data.mean(), volume.grid, "mask", layer_type="labels")
    viewer._add_layer_from_data(derived[0].astype(np.uint8), derived[1], derived[2])
    mask_layer = viewer.layers["mask"]
    assert mask_layer.data.shape == a.data.shape
    np.testing.assert_allclose(mask_layer.scale, a.scale)
    np.testing.assert_allclose(mask_layer.translate, a.translate)
    # the world position napari reports for a voxel is its (S, P, L) position in mm per the affine
    index_volume = np.arange(volume.data.size).reshape(volume.shape)
    shown_index = grid_layer_data(index_volume, volume.grid, "index")[0]
    for display_voxel in [(3, 4, 5), (20, 30, 10)]:
        i, j, k = np.unravel_index(shown_index[display_voxel], volume.shape)
        x, y, z = (volume.affine @ np.array([i, j, k, 1.0]))[:3]
        np.testing.assert_allclose(a.data_to_world(display_voxel), [z, -y, -x])


@pytest.mark.gui
def test_sample_data_opens_in_napari(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    viewer.open_sample("napari-latent", "disease_phantom")
    names = [layer.name for layer in viewer.layers]
    assert "disease phantom" in names
    image = viewer.layers["disease phantom"]
    labels = viewer.layers["disease phantom tissue labels"]
    assert image.data.shape == labels.data.shape == (128, 128, 128)
    np.testing.assert_allclose(image.scale, labels.scale)
    assert set(np.unique(labels.data)) >= {0, 4, 5, 6, 7}  # grey, white matter, ventricles, lesions


def test_saved_map_reopens_on_the_source_grid(anatomical_path: Path, tmp_path: Path) -> None:
    volume = open_volume(anatomical_path)
    path = save_volume(volume.data * 0.5, tmp_path / "half.nii.gz", like=volume)
    [(data, kwargs, _)] = read_nifti(str(path))
    [(ref, ref_kwargs, _)] = read_nifti(str(anatomical_path))
    assert data.shape == ref.shape
    assert kwargs["scale"] == pytest.approx(ref_kwargs["scale"])
    assert kwargs["translate"] == pytest.approx(ref_kwargs["translate"])
    np.testing.assert_allclose(data, ref * 0.5)


# -- napari-latent's own result files -----------------------------------------------------------

@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from tests.gui._results import make_results

    return make_results(tmp_path_factory.mktemp("results"))


def test_get_reader_claims_result_files_and_eigen_folders(results, tmp_path: Path) -> None:
    for path in (results.traversal_path, results.codes_path, results.directions_path, results.model_path,
                 results.eigen_dir, results.eigen_dir / "eigen.json", results.eigen_dir / "component_2.nii.gz",
                 sidecar_of(results.traversal_path)):
        assert get_reader(str(path)) is read_files, path
    (tmp_path / "other.json").write_text('{"a": 1}')
    assert get_reader(str(tmp_path / "other.json")) is None  # somebody else's JSON
    assert get_reader(str(tmp_path)) is None  # a folder without eigen.json


def sidecar_of(path: Path) -> Path:
    from napari_latent.latent.traversal import sidecar_path

    return sidecar_path(path)


def test_traversal_reads_as_one_4d_layer_with_a_labelled_alpha_axis(results) -> None:
    from tests.gui._results import assert_on_grid

    [layer] = read_files(str(results.traversal_path))
    [source] = read_nifti(str(results.volume_path))
    data, kwargs, kind = layer
    assert kind == "image" and data.shape == (5, *source[0].shape)
    assert_on_grid(layer, source)
    assert kwargs["axis_labels"][0] == "alpha"
    # evenly spaced alphas -2..2: napari's slider runs over alpha values
    assert kwargs["scale"][0] == pytest.approx(1.0) and kwargs["translate"][0] == pytest.approx(-2.0)
    entry = kwargs["metadata"][META_KEY]
    assert entry["kind"] == "traversal" and entry["axis_labels"][0] == "alpha"
    np.testing.assert_allclose(entry["alphas"], [-2, -1, 0, 1, 2])
    assert entry["direction"]["name"] == results.directions.names[0]
    # the frames are the traversal's volumes, display-oriented like the source
    expected = np.stack([read_nifti_data(frame, results) for frame in results.traversal.images])
    np.testing.assert_allclose(data, expected, atol=1e-6)


def read_nifti_data(frame: np.ndarray, results) -> np.ndarray:
    return grid_layer_data(frame, results.volume.grid, "x")[0]


def test_eigen_folder_reads_as_diverging_overlays(results) -> None:
    from tests.gui._results import assert_on_grid

    layers = read_files(str(results.eigen_dir))
    [source] = read_nifti(str(results.volume_path))
    components = [item for item in layers if item[1]["metadata"][META_KEY]["kind"] == "eigen_component"]
    assert len(components) == 3
    for k, (data, kwargs, kind) in enumerate(components):
        assert kind == "image"
        assert_on_grid((data, kwargs, kind), source)
        lo, hi = kwargs["contrast_limits"]
        assert lo == pytest.approx(-hi) and hi > 0
        assert 0 < kwargs["opacity"] < 1
        np.testing.assert_allclose(data, read_nifti_data(results.eigen.maps[k], results), atol=1e-6)
        entry = kwargs["metadata"][META_KEY]
        assert entry["component"] == k + 1 and len(entry["eigenvector"]) == 5
    assert sum(bool(item[1]["visible"]) for item in components) == 1
    # a colormap that is transparent at zero and opaque at both ends
    colormap = components[0][1]["colormap"]
    assert colormap.map(np.array([0.5]))[0, 3] == pytest.approx(0.0)
    assert colormap.map(np.array([0.0]))[0, 3] == pytest.approx(1.0)
    # eigen.json itself, and one component file alone
    assert len(read_files(str(results.eigen_dir / "eigen.json"))) == len(layers)
    [(data, kwargs, _)] = read_files(str(results.eigen_dir / "component_2.nii.gz"))
    assert kwargs["metadata"][META_KEY]["component"] == 2
    np.testing.assert_allclose(data, components[1][0], atol=1e-6)


def test_session_files_make_no_layers_without_a_viewer(results, monkeypatch) -> None:
    import napari_latent.gui.reader as reader

    monkeypatch.setattr(reader, "current_viewer", lambda: None)
    errors: list[str] = []
    monkeypatch.setattr(reader, "_notify_error", errors.append)
    from napari_latent.analysis.result_files import load_result

    for path in (results.codes_path, results.directions_path):
        found, obj = load_result(path)
        assert layers_for(found, obj) == []
    assert read_files(str(results.codes_path)) == NULL_LAYERS
    assert "no viewer" in errors[0]


@pytest.mark.parametrize("content, message", [
    (b"not an image", "not a valid NIfTI"),
    (b"", "not a valid NIfTI"),
])
def test_bad_nifti_gives_a_notification_not_an_exception(tmp_path: Path, monkeypatch, content, message) -> None:
    import napari_latent.gui.reader as reader

    errors: list[str] = []
    monkeypatch.setattr(reader, "_notify_error", errors.append)
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(content)
    assert read_files(str(bad)) == NULL_LAYERS
    assert len(errors) == 1 and "broken.nii.gz" in errors[0] and message in errors[0]


def test_bad_result_files_say_what_is_wrong(results, tmp_path: Path, monkeypatch) -> None:
    import napari_latent.gui.reader as reader

    errors: list[str] = []
    monkeypatch.setattr(reader, "_notify_error", errors.append)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x80\x04 a pickle, not safetensors")
    assert read_files(str(junk)) == NULL_LAYERS
    assert "not a valid safetensors" in errors[-1]
    # a traversal whose sidecar lists the wrong number of alphas
    import json
    import shutil

    shutil.copy(results.traversal_path, tmp_path / "t.nii.gz")
    meta = json.loads(sidecar_of(results.traversal_path).read_text())
    meta["alphas"] = meta["alphas"][:2]
    (tmp_path / "t.json").write_text(json.dumps(meta))
    assert read_files(str(tmp_path / "t.nii.gz")) == NULL_LAYERS
    assert "5 frames but the sidecar lists 2 alphas" in errors[-1]
    # an eigen folder with a missing component file; the good file of the same call still opens
    shutil.copytree(results.eigen_dir, tmp_path / "eigen")
    (tmp_path / "eigen" / "component_3.nii.gz").unlink()
    layers = read_files([str(tmp_path / "eigen"), str(results.volume_path)])
    assert len(layers) == 1 and layers[0][1]["name"] == "subject"
    assert "component_3.nii.gz" in errors[-1]


@pytest.mark.gui
def test_result_files_open_in_napari_on_the_source_grid(make_napari_viewer, results) -> None:
    from napari_latent.gui.session import get_session
    from tests.gui._results import assert_on_grid

    viewer = make_napari_viewer()
    [source] = viewer.open(str(results.volume_path), plugin="napari-latent")
    [traversal] = viewer.open(str(results.traversal_path), plugin="napari-latent")
    assert traversal.data.shape == (5, *source.data.shape)
    assert_on_grid(traversal, source)
    assert viewer.dims.axis_labels[0] == "alpha"
    overlays = viewer.open(str(results.eigen_dir), plugin="napari-latent")
    assert len(overlays) == 4  # 3 components and one difference map
    for layer in overlays:
        assert_on_grid(layer, source)
        lo, hi = layer.contrast_limits
        assert lo == pytest.approx(-hi)
    # codes, directions and a model attach to the session; no layers
    count = len(viewer.layers)
    assert viewer.open(str(results.model_path), plugin="napari-latent") == []
    assert viewer.open(str(results.codes_path), plugin="napari-latent") == []
    assert viewer.open(str(results.directions_path), plugin="napari-latent") == []
    assert len(viewer.layers) == count
    session = get_session(viewer)
    assert session.model is not None and session.model.fingerprint == results.model.fingerprint
    name, codes = session.last_codes
    assert name == source.name == "subject"
    np.testing.assert_array_equal(codes.codes.numpy(), results.codes.codes.numpy())
    assert session.directions.names == results.directions.names


@pytest.mark.gui
def test_bad_file_in_napari_gives_an_error_notification(make_napari_viewer, tmp_path: Path) -> None:
    from napari.utils.notifications import notification_manager

    viewer = make_napari_viewer()
    seen: list = []
    notification_manager.notification_ready.connect(seen.append)
    try:
        bad = tmp_path / "broken.nii"
        bad.write_text("not an image")
        assert viewer.open(str(bad), plugin="napari-latent") == []
    finally:
        notification_manager.notification_ready.disconnect(seen.append)
    assert len(viewer.layers) == 0
    messages = [str(n.message) for n in seen]
    assert any("broken.nii" in m and "not a valid NIfTI" in m for m in messages), messages
    assert any(n.severity == "error" for n in seen)


@pytest.mark.usefixtures("readers")  # a copy of the reader registry for this test
def test_get_reader_claims_what_a_registered_volume_reader_accepts(tmp_path: Path) -> None:
    path = write_npy(tmp_path / "scan.npy", np.arange(60, dtype=np.float32).reshape(3, 4, 5))
    assert get_reader(str(path)) is None
    register_npy()
    assert get_reader(str(path)) is read_files
    [(data, kwargs, kind)] = read_files(str(path))
    assert kind == "image" and data.size == 60 and kwargs["name"] == "scan"


def test_a_traversal_store_reads_as_a_lazy_layer(make_napari_viewer, results, tmp_path: Path) -> None:
    import dask.array as da

    from napari_latent.analysis.result_files import identify
    from napari_latent.latent.traversal import StoredTraversal
    from napari_latent.latent.traversal.store import write_store
    from tests.gui._results import assert_on_grid

    store = write_store(results.traversal, tmp_path / "trav.zarr")
    assert identify(store).kind == "traversal" and get_reader(str(store)) is read_files
    [(data, kwargs, kind)] = read_files(str(store))
    assert kind == "image" and isinstance(data, da.Array) and kwargs["cache"] is False  # napari keeps no chunks
    entry = kwargs["metadata"][META_KEY]
    assert entry["store"] == str(store) and entry["path"] == str(store) and kwargs["name"] == "trav"
    [source] = read_nifti(str(results.volume_path))
    assert_on_grid((data, kwargs, kind), source)
    assert kwargs["scale"][0] == pytest.approx(1.0) and kwargs["translate"][0] == pytest.approx(-2.0)
    low, high = kwargs["contrast_limits"]
    baseline = results.traversal.images[results.traversal.baseline_index]
    assert baseline.min() <= low < high <= baseline.max()
    # in napari: the same lazy layer, and the store is the session's traversal
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(store), plugin="napari-latent")
    assert isinstance(layer.data, da.Array) and layer.axis_labels[0] == "alpha"
    assert isinstance(get_session(viewer).traversal, StoredTraversal)
    np.testing.assert_allclose(np.asarray(layer.data[1]), read_nifti_data(results.traversal.images[1], results),
                               atol=1e-6)
    # somebody else's Zarr folder is left to other readers, and says what it is when asked
    import zarr

    zarr.open_group(str(tmp_path / "other.zarr"), mode="w", zarr_format=3).attrs["x"] = 1
    assert get_reader(str(tmp_path / "other.zarr")) is None
    with pytest.raises(UserInputError, match="not a napari-latent traversal"):
        identify(tmp_path / "other.zarr")
