"""The Discover widget in a real napari viewer under Xvfb."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from napari_latent.gui.discover_widget import NEEDS_DATA, NO_MODEL, DiscoverWidget
from napari_latent.gui.session import get_session
from napari_latent.latent.directions import Directions
from napari_latent.models.base import build_model, model_fingerprint
from tests._plugin_method import plugin_method_fixture  # noqa: F401 (the plugin_method fixture)

pytestmark = pytest.mark.gui


@pytest.fixture
def widget(make_napari_viewer) -> DiscoverWidget:
    viewer = make_napari_viewer()
    widget = DiscoverWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Discover")
    return widget


def tiny_model():
    torch.manual_seed(0)
    model = build_model("vae", image_size=32, latent_dim=8, base_channels=8, max_channels=32).eval()
    model.fingerprint = model_fingerprint(model)
    return model


def shown(field) -> bool:
    """Not hidden by the widget (the viewer itself is not shown in tests)."""
    return not field.native.isHidden()


def cells(widget: DiscoverWidget, column: str) -> list:
    return list(widget.table[column])


def test_sefa_fills_the_table_and_the_session_and_names_are_editable(widget: DiscoverWidget, qtbot) -> None:
    session = get_session(widget.viewer)
    model = tiny_model()
    session.set_model(model, "test")
    assert widget.space.value == "z" and "vae" in widget.status.value
    widget.method.value = "sefa"
    assert shown(widget.count) and not shown(widget.steps) and not shown(widget.data)
    widget.count.value = 5
    widget.run()
    widget.runner.wait(60)
    assert widget.runner.last_error is None, widget.runner.last_error
    found = session.directions
    assert isinstance(found, Directions) and len(found) == 5 and found.method == "sefa"
    assert session.selected_direction == 0
    assert widget.table.shape == (5, len(found.table()[0]))
    assert cells(widget, "name") == ["sefa 1", "sefa 2", "sefa 3", "sefa 4", "sefa 5"]
    eigen = cells(widget, "eigenvalue")
    assert eigen == sorted(eigen, reverse=True) and eigen[0] == pytest.approx(found.scores["eigenvalue"][0], rel=1e-3)
    assert "Found 5 sefa directions" in widget.panel.status.value
    # renaming in the table renames the Directions object the session holds
    widget.rename(2, "ventricles")
    assert found.names[2] == "ventricles" and session.directions is found
    # a duplicate name is refused and the cell goes back
    widget.rename(3, "ventricles")
    assert found.names[3] == "sefa 4" and cells(widget, "name")[3] == "sefa 4"
    assert "already named" in widget.panel.status.value
    # selecting a row is what the Traverse step reads
    widget.table.native.selectRow(2)
    assert session.selected_direction == 2
    assert "2 ventricles" in widget.selected.value
    # score columns are read-only
    from qtpy.QtCore import Qt

    item = widget.table.native.item(0, widget.table.column_headers.index("eigenvalue"))
    assert not item.flags() & Qt.ItemFlag.ItemIsEditable


def test_pca_run_and_save(widget: DiscoverWidget, tmp_path: Path) -> None:
    session = get_session(widget.viewer)
    session.set_model(tiny_model(), "test")
    widget.method.value = "pca"
    widget.count.value = 3
    widget.run()
    widget.runner.wait(60)
    assert widget.runner.last_error is None, widget.runner.last_error
    found = session.directions
    assert found.method == "pca" and len(found) == 3
    ratios = cells(widget, "explained_variance_ratio")
    assert len(ratios) == 3 and ratios == sorted(ratios, reverse=True) and 0 < sum(ratios) <= 1.0
    widget.rename(0, "first")
    path = widget.save(tmp_path / "dirs.safetensors")
    assert path is not None and Directions.load(path).names[0] == "first"


def test_missing_model_and_missing_data_are_said_plainly(widget: DiscoverWidget, tmp_path: Path) -> None:
    widget.method.value = "sefa"
    assert widget.missing() == NO_MODEL
    widget.run()
    assert not widget.runner.running and "No model yet" in widget.panel.status.value
    get_session(widget.viewer).set_model(tiny_model(), "test")
    widget.method.value = "supervised"
    assert shown(widget.data) and shown(widget.column) and shown(widget.positive) and not shown(widget.count)
    assert widget.missing() == NEEDS_DATA
    widget.run()
    assert not widget.runner.running
    assert "needs labelled data" in widget.panel.status.value
    assert get_session(widget.viewer).directions is None
    widget.data.value = tmp_path  # a folder without cohort.csv
    widget.run()
    assert not widget.runner.running and "no cohort.csv" in widget.panel.status.value
    # the slice band of the supervised method: shown for it only, checked before any work
    assert shown(widget.slices) and widget.slices.value == "auto"
    (tmp_path / "cohort.csv").write_text("path,group\n")
    widget.slices.value = "0.8:0.2"
    widget.run()
    assert not widget.runner.running and "0 <= LOW < HIGH" in widget.panel.status.value
    widget.method.value = "sefa"
    assert not shown(widget.slices)


def test_cancel_stops_a_voynov_run_and_keeps_its_directions(widget: DiscoverWidget, qtbot) -> None:
    session = get_session(widget.viewer)
    session.set_model(tiny_model(), "test")
    widget.method.value = "voynov"
    assert shown(widget.steps) and not shown(widget.data)
    widget.count.value = 3
    widget.steps.value = 100_000
    widget.run()
    assert widget.runner.running
    qtbot.waitUntil(lambda: widget.runner.last_event is not None and widget.runner.last_event.stage == "discover",
                    timeout=60_000)
    widget.panel.cancel_button.changed.emit(True)  # the user presses Cancel
    widget.runner.wait(120)
    assert widget.runner.last_error is None, widget.runner.last_error
    found = session.directions
    assert found.method == "voynov" and len(found) == 3
    assert 0 < found.info["steps_done"] < 1000
    assert "stopped after" in widget.panel.status.value
    assert widget.table.shape[0] == 3


def test_fields_are_generated_from_the_method_descriptions(widget: DiscoverWidget) -> None:
    from magicgui.widgets import ComboBox, FileEdit, FloatSpinBox, LineEdit, SpinBox

    from napari_latent.latent.discovery import discovery_method, method_names

    for name in method_names():
        widget.method.value = name
        method = discovery_method(name)
        in_form = {s.name for s in method.settings if s.in_forms}
        assert {k for k, f in widget.form.fields.items() if shown(f)} == in_form, name
        assert shown(widget.data) == (method.data.kind != "none")
        for setting in method.settings:
            if setting.name in in_form and setting.kind in ("int", "float", "choice"):
                assert widget.form.fields[setting.name].value == pytest.approx(setting.default) \
                    if setting.kind == "float" else widget.form.fields[setting.name].value == setting.default
    widget.method.value = "voynov"
    assert widget.steps.value == 2000 and widget.count.value == 10
    assert isinstance(widget.form.fields["deformator"], ComboBox)
    assert widget.form.fields["deformator"].choices == ("linear", "orthonormal", "proj")
    assert isinstance(widget.form.fields["lr"], FloatSpinBox) and widget.form.fields["lr"].value == pytest.approx(1e-4)
    assert isinstance(widget.form.fields["state"], FileEdit) and isinstance(widget.steps, SpinBox)
    assert widget.form.fields["batch_size"].min == 2 and widget.form.fields["batch_size"].value == 32
    widget.method.value = "supervised"
    assert widget.steps.value == 100 and not shown(widget.count) and isinstance(widget.slices, LineEdit)
    assert widget.form.fields["classifier"].value == "svm"
    widget.method.value = "pca"
    assert widget.form.fields["batch_size"].min == 1 and widget.form.fields["batch_size"].value == 2048
    # only settings changed from the method's defaults are passed, converted
    assert widget.form.values("pca") == {}
    widget.count.value = 4
    widget.form.fields["samples"].value = 500
    assert widget.form.values("pca") == {"count": 4, "samples": 500}
    widget.method.value = "voynov"
    widget.form.fields["deformator"].value = "proj"
    widget.form.fields["state"].value = "/tmp/run.safetensors"
    assert widget.form.values("voynov") == {"deformator": "proj", "state": Path("/tmp/run.safetensors")}
    widget.method.value = "supervised"
    widget.slices.value = "0.2:0.8"
    widget.column.value = " age "
    assert widget.form.values("supervised") == {"slices": (0.2, 0.8), "column": "age"}
    widget.form.fields["classifier"].value = "ridge"
    widget.form.fields["target"].value = "ventricle_enlargement"
    assert widget.form.values("supervised") == {"slices": (0.2, 0.8), "column": "age", "classifier": "ridge",
                                                "target": "ventricle_enlargement"}


def test_a_plugin_method_gets_its_fields(make_napari_viewer, plugin_method: str) -> None:
    from magicgui.widgets import CheckBox

    widget = DiscoverWidget(make_napari_viewer())
    assert plugin_method in widget.method.choices
    widget.method.value = plugin_method
    assert "random unit directions" in widget.summary.value
    normalise = widget.form.fields["normalise"]
    assert isinstance(normalise, CheckBox) and shown(normalise) and normalise.value is True
    assert widget.count.value == 4 and not shown(widget.steps) and not shown(widget.data)
    get_session(widget.viewer).set_model(tiny_model(), "test")
    normalise.value = False
    widget.count.value = 2
    widget.run()
    widget.runner.wait(60)
    assert widget.runner.last_error is None, widget.runner.last_error
    found = get_session(widget.viewer).directions
    assert found.method == plugin_method and found.settings == {"count": 2, "seed": 0, "normalise": False}


def test_supervised_discovery_notifies_its_baselines_and_warnings(widget: DiscoverWidget, tiny_cohort: Path,
                                                                   monkeypatch) -> None:
    """An untrained model (reconstruction unknown) and 8 subjects (2 held out: never above chance) give warnings."""
    import napari.utils.notifications as notifications

    shown_warnings: list[str] = []
    monkeypatch.setattr(notifications, "show_warning", shown_warnings.append)
    get_session(widget.viewer).set_model(tiny_model(), "test")
    widget.method.value = "supervised"
    widget.data.value = tiny_cohort
    widget.slices.value = "all"
    widget.run()
    widget.runner.wait(120)
    assert widget.runner.last_error is None, widget.runner.last_error
    found = get_session(widget.viewer).directions
    assert "chance_accuracy" in found.scores and "baselines" in found.info
    kinds = [w.kind for w in widget.warnings]
    assert kinds[0] == "reconstruction_unknown"
    assert ("chance" in kinds) == (found.scores["accuracy"][0] <= found.scores["chance_accuracy_95"][0])
    assert shown_warnings == [f"napari-latent: {w.message}" for w in widget.warnings]
    assert f"chance {found.scores['chance_accuracy'][0]:.3f}" in widget.panel.status.value
    assert f"{len(widget.warnings)} warning(s)" in widget.panel.status.value
