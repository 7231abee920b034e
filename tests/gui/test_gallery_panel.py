"""The Discover widget's gallery: computed in the background, shown as a layer, exported as a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_latent.gui.discover_widget import DiscoverWidget
from napari_latent.gui.gallery_panel import GALLERY_LAYER, GAP
from napari_latent.gui.session import get_session
from tests.gui.test_discover_widget import tiny_model

pytestmark = pytest.mark.gui


def test_gallery_layer_and_export(make_napari_viewer, tmp_path: Path) -> None:
    viewer = make_napari_viewer()
    widget = DiscoverWidget(viewer)
    panel = widget.gallery
    assert not panel.button.enabled and not panel.export_button.enabled
    assert panel.export(tmp_path / "early.png") is None and "no gallery yet" in str(widget.runner.last_error)
    model = tiny_model()
    get_session(viewer).set_model(model, "test")
    widget.method.value = "sefa"
    widget.count.value = 3
    widget.run()
    widget.runner.wait(60)
    assert panel.button.enabled
    panel.amount.value = 3.0
    panel.run()
    widget.runner.wait(60)
    assert widget.runner.last_error is None, widget.runner.last_error
    gallery = panel.gallery
    assert gallery is not None and gallery.images.shape == (3, 3, 32, 32) and gallery.amount == 3.0
    assert gallery.start == "mean latent"
    layer = viewer.layers[GALLERY_LAYER]
    size = 32
    assert layer.data.shape == (3 * size + 2 * GAP, 3 * size + 2 * GAP)
    assert tuple(layer.contrast_limits) == (-1.0, 1.0)
    first_row = layer.data[:size]
    minus, zero, plus = (first_row[:, c * (size + GAP):c * (size + GAP) + size] for c in range(3))
    np.testing.assert_array_equal(zero, gallery.images[0, 1])
    assert np.abs(plus - minus).mean() > 1e-3 and np.abs(plus - zero).mean() > 1e-4
    assert layer.metadata["gallery"]["rows"][0]["name"] == "sefa 1"
    assert panel.export_button.enabled
    assert panel.export(tmp_path / "bad.jpg") is None and ".png" in str(widget.runner.last_error)
    written = panel.export(tmp_path / "gallery.png")
    assert written is not None
    with Image.open(written) as image:
        assert image.format == "PNG"
    panel.run()  # a second gallery replaces the layer's data
    widget.runner.wait(60)
    assert [layer.name for layer in viewer.layers].count(GALLERY_LAYER) == 1
