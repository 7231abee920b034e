"""The whole workflow from the docked widgets, and "Copy as script" reproducing its layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_latent.gui.layers import META_KEY, array_from_layer

pytestmark = pytest.mark.gui


def test_model_invert_discover_traverse_eigen_export_and_the_script(make_napari_viewer, tiny_cohort: Path, tiny_vae,
                                                                    tmp_path: Path, monkeypatch) -> None:
    from napari_latent.gui.discover_widget import DiscoverWidget
    from napari_latent.gui.eigen_widget import EigenWidget
    from napari_latent.gui.export_widget import ExportWidget
    from napari_latent.gui.invert_widget import InvertWidget
    from napari_latent.gui.model_widget import ModelWidget
    from napari_latent.gui.session import get_session
    from napari_latent.gui.traverse_widget import TraverseWidget
    from napari_latent.models.checkpoint import save_checkpoint

    model_file = save_checkpoint(tmp_path / "model.safetensors", tiny_vae, slice_spec=tiny_vae.slice_spec)
    viewer = make_napari_viewer()
    [source] = viewer.open(str(tiny_cohort / "sub-002.nii.gz"), plugin="napari-latent")
    session = get_session(viewer)

    assert ModelWidget(viewer).load(model_file) is not None
    invert = InvertWidget(viewer)
    invert.layer.value = source.name
    invert.method.value = "encoder"
    invert.run()
    invert.runner.wait(120)
    assert invert.runner.last_error is None

    discover = DiscoverWidget(viewer)
    discover.method.value = "sefa"
    discover.count.value = 3
    discover.run()
    discover.runner.wait(120)
    assert discover.runner.last_error is None and len(session.directions) == 3

    traverse = TraverseWidget(viewer)
    traverse.codes.value = source.name
    traverse.direction.value = 0
    traverse.alphas.value = "0:2:4"
    traverse.units.value = "latent"
    traverse.run()
    traverse.runner.wait(120)
    assert traverse.runner.last_error is None
    traversal_layer = viewer.layers[f"{source.name} traversal"]
    assert traversal_layer.data.shape == (4, *source.data.shape)
    np.testing.assert_allclose(traversal_layer.scale[1:], source.scale)
    np.testing.assert_allclose(traversal_layer.translate[1:], source.translate)

    eigen = EigenWidget(viewer)
    eigen.components.value = 3
    eigen.run()
    eigen.runner.wait(120)
    assert eigen.runner.last_error is None
    components = [layer for layer in viewer.layers
                  if (layer.metadata.get(META_KEY) or {}).get("kind") == "eigen_component"]
    assert len(components) == 3
    for layer in components:
        assert layer.data.shape == source.data.shape
        np.testing.assert_allclose(layer.scale, source.scale)
        np.testing.assert_allclose(layer.translate, source.translate)

    export = ExportWidget(viewer)
    export.folder.value = tmp_path / "export"
    export.layers.value = [components[0].name]
    assert len(export.export_nifti()) == 1

    # The copied script repeats every step and gives the same traversal and components.
    text = export.copy_script()
    for call in ("nl.load_model(", "nl.invert(", "nl.discover(", "nl.traverse(", "nl.eigencomponents("):
        assert call in text
    namespace: dict = {}
    monkeypatch.chdir(tmp_path)  # the script streams its traversal into ./traversal.zarr, like the widget
    exec(compile(session.script.text(show=False), "session.py", "exec"), namespace)
    traversal, result = namespace["traversal"], namespace["eigen"]
    assert traversal.path == Path("traversal.zarr")
    frames, _ = array_from_layer(np.asarray(traversal_layer.data), traversal_layer.metadata,
                                 list(traversal_layer.scale)[1:], list(traversal_layer.translate)[1:])
    np.testing.assert_allclose(traversal.load().images, frames, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(result.eigenvalues, session.eigen.eigenvalues, rtol=1e-3, atol=1e-8)
    np.testing.assert_allclose(np.abs(result.maps), np.abs(session.eigen.maps), rtol=1e-3, atol=1e-4)
