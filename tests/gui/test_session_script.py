""""Copy as script": the recorded steps, and a script that reproduces a session's layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_latent.gui.session_script import SessionScript, variable


def test_steps_replace_by_key_and_a_new_model_starts_over() -> None:
    script = SessionScript()
    script.record("model", ["model = nl.load_model('demo')"], show={"model": "model"})
    script.record("invert a", ["codes_a = 1"], show={"codes": "codes_a"})
    script.record("invert b", ["codes_b = 2"])
    script.record("invert a", ["codes_a = 3"], show={"codes": "codes_a"})
    assert [s.key for s in script.steps] == ["model", "invert b", "invert a"]
    text = script.text()
    assert "codes_a = 3" in text and "codes_a = 1" not in text
    assert text.strip().endswith("napari_latent.gui.show(model=model, codes=codes_a)")
    assert "napari_latent.gui.show" not in script.text(show=False)
    compile(text, "session.py", "exec")
    script.record("model", ["model = nl.load_model('other.safetensors')"])
    assert [s.key for s in script.steps] == ["model"]


def test_variable_names_are_identifiers() -> None:
    for name in ("sub-001", "3 T1 / map", "", "é"):
        assert variable("codes", name).isidentifier()
    assert variable("volume", "sub-001") == "volume_sub_001"


@pytest.mark.gui
def test_the_copied_script_reproduces_the_session(make_napari_viewer, tiny_cohort: Path, tiny_vae, tmp_path: Path,
                                                  qtbot) -> None:
    from napari_latent.gui.export_widget import ExportWidget
    from napari_latent.gui.invert_widget import InvertWidget
    from napari_latent.gui.layers import volume_from_layer
    from napari_latent.gui.model_widget import ModelWidget
    from napari_latent.gui.session import get_session
    from napari_latent.models.checkpoint import save_checkpoint

    model_file = save_checkpoint(tmp_path / "model.safetensors", tiny_vae, slice_spec=tiny_vae.slice_spec)
    viewer = make_napari_viewer()
    [source] = viewer.open(str(tiny_cohort / "sub-001.nii.gz"), plugin="napari-latent")
    model_widget = ModelWidget(viewer)
    assert model_widget.load(model_file) is not None
    invert = InvertWidget(viewer)
    invert.layer.value = source.name
    invert.method.value = "hybrid"
    invert.steps.value = 4
    invert.run()
    invert.runner.wait(timeout=120)
    assert invert.runner.last_error is None
    export = ExportWidget(viewer)
    export.folder.value = tmp_path / "export"
    text = export.copy_script()
    assert (tmp_path / "export" / "session_script.py").read_text() == text
    from qtpy.QtWidgets import QApplication

    assert QApplication.clipboard().text() == text

    namespace: dict = {}
    exec(compile(get_session(viewer).script.text(show=False), "session.py", "exec"), namespace)
    codes = namespace["codes_sub_001"]
    session_codes = get_session(viewer).codes[source.name]
    np.testing.assert_array_equal(codes.indices, session_codes.indices)
    np.testing.assert_allclose(codes.codes, session_codes.codes, rtol=1e-5, atol=1e-5)
    layer = viewer.layers[f"{source.name} reconstruction"]
    shown = volume_from_layer(np.asarray(layer.data), layer.metadata, layer.scale, layer.translate).data
    np.testing.assert_allclose(codes.reconstruct(namespace["model"]), shown, rtol=1e-4, atol=1e-4)
