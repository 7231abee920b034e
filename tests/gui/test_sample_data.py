"""The "Demo result" sample: ready layers at once, the session filled, the traversal in the background."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_latent.analysis.eigen import eigencomponents
from napari_latent.gui.layers import META_KEY
from napari_latent.gui.sample_data import DEMO_RESULT
from napari_latent.gui.session import get_session

pytestmark = pytest.mark.gui


def test_demo_result_opens_ready_and_its_traversal_reproduces_the_bundled_eigen_analysis(make_napari_viewer,
                                                                                         qtbot) -> None:
    viewer = make_napari_viewer()
    viewer.open_sample("napari-latent", "demo_result")
    info = json.loads((DEMO_RESULT / "sample.json").read_text(encoding="utf-8"))
    subject = viewer.layers[f"demo {info['subject_name']} (healthy)"]
    components = [layer for layer in viewer.layers
                  if layer.metadata.get(META_KEY, {}).get("kind") == "eigen_component"]
    assert len(components) == 5
    assert [layer.visible for layer in components].count(True) == 1  # the dynamic component only
    for layer in components:
        assert layer.data.shape == subject.data.shape
        np.testing.assert_allclose(layer.scale, subject.scale)
        np.testing.assert_allclose(layer.translate, subject.translate)
    session = get_session(viewer)
    codes = session.last_codes[1]
    assert session.model.fingerprint == codes.model_fingerprint == session.directions.model_fingerprint
    bundled = session.eigen
    # the traversal is computed in a background thread and then added as a 4D layer
    qtbot.waitUntil(lambda: session.traversal is not None and not session.background_workers, timeout=120_000)
    traversal = session.traversal
    layer = viewer.layers[f"{subject.name} traversal"]
    assert layer.data.shape == (len(info["alphas"]), *subject.data.shape)
    assert viewer.dims.axis_labels[0] == "alpha"
    np.testing.assert_allclose(layer.scale[1:], subject.scale)
    np.testing.assert_allclose(traversal.alphas, bundled.alphas)
    # the bundled eigen result is what the code computes from this traversal
    again = eigencomponents(traversal, n_components=bundled.n_components)
    np.testing.assert_allclose(again.eigenvalues[:3], bundled.eigenvalues[:3], rtol=1e-3)
    for k in range(2):
        r = np.corrcoef(again.maps[k][bundled.mask], bundled.maps[k][bundled.mask])[0, 1]
        assert r > 0.999, (k, r)
