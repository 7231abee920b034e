"""The Invert widget in a real napari viewer under Xvfb."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from napari_latent.gui.invert_widget import InvertWidget
from napari_latent.gui.layers import META_KEY
from napari_latent.gui.session import get_session
from napari_latent.models.base import build_model
from napari_latent.volumes import SliceSpec
from napari_latent.volumes.orientation import display_geometry

pytestmark = pytest.mark.gui


@pytest.fixture
def viewer_with_volume(make_napari_viewer, tiny_cohort: Path):
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(tiny_cohort / "sub-001.nii.gz"), plugin="napari-latent")
    return viewer, layer


def test_inversion_adds_a_reconstruction_on_the_source_grid(viewer_with_volume, qtbot) -> None:
    viewer, source = viewer_with_volume
    widget = InvertWidget(viewer)
    assert "No model" in widget.status.value
    model = build_model("vae", image_size=32, latent_dim=8, base_channels=8, max_channels=32).eval()
    model.slice_spec = SliceSpec(size=32)
    get_session(viewer).set_model(model, "test")
    assert widget.space.value == "z"
    widget.layer.value = source.name
    widget.method.value = "hybrid"
    widget.steps.value = 5
    widget.run()
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=60_000)
    assert widget.runner.last_error is None
    result = viewer.layers[f"{source.name} reconstruction"]
    assert result.data.shape == source.data.shape
    np.testing.assert_allclose(result.scale, source.scale)
    np.testing.assert_allclose(result.translate, source.translate)
    entry = result.metadata[META_KEY]
    assert entry["method"] == "hybrid" and len(entry["slice_mse"]) == len(entry["slice_indices"]) > 0
    codes = get_session(viewer).codes[source.name]
    assert codes.codes.shape == (len(entry["slice_indices"]), 8)
    # shown lazily from a store in the session folder (a CT-sized reconstruction takes no memory)
    assert isinstance(result.data, da.Array)
    assert Path(entry["store"]).parent == get_session(viewer).stores.folder
    expected = display_geometry(codes.geometry.grid).to_display(codes.reconstruct(model))
    np.testing.assert_allclose(np.asarray(result.data), expected, atol=1e-6)
    # an untrained model has no validation metrics: the widget says its quality is unknown
    assert [w.kind for w in widget.warnings] == ["reconstruction_unknown"]
    assert "1 warning(s): see the notifications" in widget.panel.status.value


def test_inversion_without_a_model_or_with_a_wrong_method_says_why(viewer_with_volume, qtbot) -> None:
    viewer, source = viewer_with_volume
    widget = InvertWidget(viewer)
    widget.layer.value = source.name
    widget.run()
    assert not widget.runner.running
    assert "No model yet" in widget.panel.status.value
    gan_like = build_model("vae", image_size=32, latent_dim=8, base_channels=8, max_channels=32)
    gan_like.slice_spec = SliceSpec(size=64)  # a model whose slicing does not fit its size
    get_session(viewer).set_model(gan_like, "test")
    widget.run()
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=30_000)
    assert "does not match the model's image size" in widget.panel.status.value
