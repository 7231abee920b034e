"""The Traverse widget in a real napari viewer under Xvfb."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_latent.gui.layers import META_KEY
from napari_latent.gui.session import get_session
from napari_latent.gui.traverse_widget import NO_CODES, NO_DIRECTIONS, NO_MODEL, TraverseWidget
from napari_latent.latent.directions import Directions
from napari_latent.latent.inversion import invert
from napari_latent.latent.traversal import Traversal
from napari_latent.models.base import build_model
from napari_latent.volumes import SliceSpec, open_volume

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    model = build_model("vae", image_size=32, latent_dim=8, base_channels=8, max_channels=32).eval()
    model.slice_spec = SliceSpec(size=32)
    return model


@pytest.fixture
def ready_viewer(make_napari_viewer, tiny_cohort: Path, small_model):
    """A viewer with a volume, the model, its codes and two directions in the session."""
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(tiny_cohort / "sub-001.nii.gz"), plugin="napari-latent")
    session = get_session(viewer)
    session.set_model(small_model, "test")
    codes = invert(small_model, open_volume(tiny_cohort / "sub-001.nii.gz"), method="encoder")
    session.codes = {layer.name: codes}
    session.last_codes = (layer.name, codes)
    directions = Directions(torch.eye(8)[:2], "z", small_model.name, small_model.fingerprint, "test",
                            code_std=[1.0, 0.5])
    session.directions = directions
    session.selected_direction = 1
    return viewer, layer


def test_traversal_layers_overlay_the_source(ready_viewer, qtbot) -> None:
    viewer, source = ready_viewer
    widget = TraverseWidget(viewer)
    assert widget.codes.value == source.name and widget.direction.value == 1
    widget.alphas.value = "0:2:5"
    widget.units.value = "direction_std"
    widget.run()
    widget.runner.wait(60)
    assert widget.runner.last_error is None, widget.runner.last_error
    traversal = get_session(viewer).traversal
    assert isinstance(traversal, Traversal) and len(traversal) == 5
    np.testing.assert_allclose(traversal.latent_alphas, np.linspace(0, 1, 5))  # code_std 0.5 of direction 1
    layer = viewer.layers[f"{source.name} traversal"]
    difference = viewer.layers[f"{source.name} traversal difference"]
    for item in (layer, difference):
        assert item.data.shape == (5, *source.data.shape)
        np.testing.assert_allclose(item.scale[1:], source.scale)
        np.testing.assert_allclose(item.translate[1:], source.translate)
    assert layer.axis_labels[0] == "alpha" and viewer.dims.axis_labels[0] == "alpha"
    assert layer.metadata[META_KEY]["kind"] == "traversal"
    # The difference overlay: zero at the baseline, symmetric limits, translucent over the anatomy.
    np.testing.assert_array_equal(difference.data[traversal.baseline_index], 0)
    low, high = difference.contrast_limits
    assert low == pytest.approx(-high) and high > 0 and difference.opacity < 1
    np.testing.assert_allclose(np.asarray(difference.data[-1]), np.asarray(layer.data[-1]) - np.asarray(layer.data[0]),
                               atol=1e-5)


def test_a_directions_file_overrides_the_session(ready_viewer, qtbot, small_model, tmp_path: Path) -> None:
    viewer, _source = ready_viewer
    other = Directions(torch.eye(8)[3:6], "z", small_model.name, small_model.fingerprint, "file")
    path = other.save(tmp_path / "dirs.safetensors")
    widget = TraverseWidget(viewer)
    widget.directions_file.value = str(path)
    assert len(widget.direction.choices) == 3
    widget.direction.value = 2
    widget.alphas.value = "-1,0,1"
    widget.units.value = "latent"
    widget.run()
    widget.runner.wait(60)
    traversal = get_session(viewer).traversal
    np.testing.assert_allclose(traversal.direction.vector, torch.eye(8)[5].numpy())
    assert traversal.baseline_index == 1


def test_it_says_what_is_missing(make_napari_viewer, tiny_cohort: Path, small_model, qtbot) -> None:
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(tiny_cohort / "sub-001.nii.gz"), plugin="napari-latent")
    widget = TraverseWidget(viewer)
    assert widget.status.value == NO_MODEL
    widget.run()
    assert NO_MODEL in widget.panel.status.value
    session = get_session(viewer)
    session.set_model(small_model, "test")
    assert widget.status.value == NO_CODES
    widget.run()
    assert NO_CODES in widget.panel.status.value
    codes = invert(small_model, open_volume(tiny_cohort / "sub-001.nii.gz"), method="encoder")
    session.codes = {layer.name: codes}
    assert widget.status.value == NO_DIRECTIONS
    widget.run()
    assert NO_DIRECTIONS in widget.panel.status.value
    session.directions = Directions(torch.eye(8)[:1], "z", small_model.name, small_model.fingerprint, "test")
    widget.alphas.value = "0:1"
    widget.run()
    assert "three parts" in widget.panel.status.value and not widget.runner.running
