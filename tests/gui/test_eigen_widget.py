"""The Eigen widget in a real napari viewer under Xvfb."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import torch

from napari_latent.analysis.eigen import EigenResult, eigencomponents
from napari_latent.gui.eigen_widget import NO_TRAVERSAL, SESSION_TRAVERSAL, EigenWidget, traversal_from_layer
from napari_latent.gui.layers import META_KEY
from napari_latent.gui.result_layers import traversal_layer_data
from napari_latent.gui.session import get_session
from napari_latent.latent.directions import Directions
from napari_latent.latent.inversion import invert
from napari_latent.latent.traversal import StoredTraversal, traverse
from napari_latent.latent.traversal.store import write_store
from napari_latent.models.base import build_model
from napari_latent.volumes import SliceSpec, open_volume

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def traversal(tiny_cohort: Path):
    torch.manual_seed(0)
    model = build_model("vae", image_size=32, latent_dim=8, base_channels=8, max_channels=32).eval()
    model.slice_spec = SliceSpec(size=32)
    volume = open_volume(tiny_cohort / "sub-001.nii.gz")
    codes = invert(model, volume, method="encoder")
    directions = Directions(torch.eye(8)[:1], "z", model.name, model.fingerprint, "test")
    return traverse(model, codes, directions, "0:2:6", source=volume)


def _check_overlays(viewer, source, prefix_layers, components: int) -> None:
    maps = [layer for layer in viewer.layers
            if layer.metadata.get(META_KEY, {}).get("kind") == "eigen_component"]
    assert len(maps) == components
    for layer in maps + prefix_layers:
        assert layer.data.shape == source.data.shape
        np.testing.assert_allclose(layer.scale, source.scale)
        np.testing.assert_allclose(layer.translate, source.translate)
        low, high = layer.contrast_limits
        assert low == pytest.approx(-high) and high > 0
        assert 0 < layer.opacity < 1
        colors = layer.colormap.map(np.array([0.0, 0.5, 1.0]))
        assert colors[0, 2] > colors[0, 0] and colors[2, 0] > colors[2, 2]  # blue below zero, red above
        assert colors[1, 3] < 0.1  # transparent at zero: the anatomy shows through


def test_eigen_of_the_session_traversal_adds_overlays_on_the_anatomy(make_napari_viewer, tiny_cohort: Path,
                                                                     traversal, qtbot) -> None:
    viewer = make_napari_viewer()
    [source] = viewer.open(str(tiny_cohort / "sub-001.nii.gz"), plugin="napari-latent")
    widget = EigenWidget(viewer)
    assert widget.status.value == NO_TRAVERSAL
    widget.run()
    assert NO_TRAVERSAL in widget.panel.status.value
    get_session(viewer).traversal = traversal
    assert widget.traversal.value == SESSION_TRAVERSAL
    widget.components.value = 3
    widget.run()
    widget.runner.wait(60)
    assert widget.runner.last_error is None, widget.runner.last_error
    result = get_session(viewer).eigen
    assert isinstance(result, EigenResult) and result.n_components == 3
    reference = eigencomponents(traversal, n_components=3)
    np.testing.assert_allclose(result.eigenvalues, reference.eigenvalues, rtol=1e-6)
    differences = [layer for layer in viewer.layers
                   if layer.metadata.get(META_KEY, {}).get("kind") == "eigen_difference"]
    assert len(differences) == 1
    _check_overlays(viewer, source, differences, 3)
    assert "3 components" in widget.panel.status.value


def test_eigen_of_a_traversal_layer_opened_from_a_file(make_napari_viewer, tiny_cohort: Path, traversal,
                                                       tmp_path: Path, qtbot) -> None:
    path = traversal.save(tmp_path / "trav.nii.gz")
    viewer = make_napari_viewer()
    [source] = viewer.open(str(tiny_cohort / "sub-001.nii.gz"), plugin="napari-latent")
    [layer] = viewer.open(str(path), plugin="napari-latent")
    rebuilt = traversal_from_layer(layer)
    np.testing.assert_array_equal(rebuilt.images, traversal.images)
    np.testing.assert_allclose(rebuilt.grid.affine, traversal.grid.affine)
    widget = EigenWidget(viewer)
    assert layer.name in widget.traversal.choices
    widget.traversal.value = layer.name
    widget.center.value = "baseline subtracted"
    widget.components.value = 2
    widget.run()
    widget.runner.wait(60)
    assert widget.runner.last_error is None, widget.runner.last_error
    result = get_session(viewer).eigen
    assert result.center == "baseline"
    _check_overlays(viewer, source, [], 2)
    # A mask layer on another grid is refused with a plain message.
    viewer.add_image(np.ones((5, 5, 5), np.float32), name="tiny mask")
    widget.mask.value = "tiny mask"
    widget.run()
    assert "grid" in widget.panel.status.value and not widget.runner.running


def test_eigen_streams_a_stored_traversal_with_the_eager_numbers(make_napari_viewer, tiny_cohort: Path, traversal,
                                                                 tmp_path: Path, qtbot, monkeypatch) -> None:
    store = write_store(traversal, tmp_path / "trav.zarr")
    stored = StoredTraversal.open(store)
    viewer = make_napari_viewer()
    [source] = viewer.open(str(tiny_cohort / "sub-001.nii.gz"), plugin="napari-latent")
    [layer] = viewer.open(str(store), plugin="napari-latent")
    assert isinstance(layer.data, da.Array)
    # Never rebuilt in memory: the analysis reads the store's slabs.
    monkeypatch.setattr(StoredTraversal, "load", lambda self: pytest.fail("the store was loaded whole"))
    chosen = traversal_from_layer(layer)
    assert isinstance(chosen, StoredTraversal) and chosen.path == store
    reference = eigencomponents(traversal, n_components=3)
    widget = EigenWidget(viewer)
    for choice, expected_layer in ((layer.name, layer.name), (SESSION_TRAVERSAL, layer.name)):
        if choice == SESSION_TRAVERSAL:
            get_session(viewer).traversal = stored
        widget.traversal.value = choice
        assert isinstance(widget.chosen_traversal(), StoredTraversal)
        widget.components.value = 3
        widget.run()
        widget.runner.wait(60)
        assert widget.runner.last_error is None, widget.runner.last_error
        result = get_session(viewer).eigen
        np.testing.assert_allclose(result.eigenvalues, reference.eigenvalues, rtol=1e-6)
        np.testing.assert_allclose(np.abs(result.eigenvectors), np.abs(reference.eigenvectors), atol=1e-6)
        assert widget._anatomy.name == expected_layer  # the overlays sit on the traversal's layer
        _check_overlays(viewer, source, [], 3)
    # The component maps are shown lazily from a store in the session folder, and equal the result's maps;
    # the second run's layers replaced the first's, whose store was deleted.
    maps = [item for item in viewer.layers if item.metadata.get(META_KEY, {}).get("kind") == "eigen_component"]
    stores = {item.metadata[META_KEY]["store"] for item in maps}
    assert len(stores) == 1 and all(isinstance(item.data, da.Array) for item in maps)
    [maps_store] = stores
    folder = get_session(viewer).stores.folder
    assert sorted(p.name for p in folder.iterdir()) == [Path(maps_store).name]
    geometry = stored.display
    for k, item in enumerate(maps):
        np.testing.assert_array_equal(np.asarray(item.data), geometry.to_display(result.component_map(k)))


def test_a_lazy_layer_without_a_store_is_refused(make_napari_viewer, traversal) -> None:
    viewer = make_napari_viewer()
    data, kwargs, _ = traversal_layer_data(traversal, "lazy")
    viewer.add_image(da.from_array(data), **{k: v for k, v in kwargs.items() if k != "cache"})
    widget = EigenWidget(viewer)
    widget.traversal.value = "lazy"
    widget.run()
    assert "names no traversal store" in widget.panel.status.value and not widget.runner.running
