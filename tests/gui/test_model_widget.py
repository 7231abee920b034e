"""The Model widget and the worker bridge, in a real napari viewer under Xvfb."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_latent.gui.model_widget import ModelWidget
from napari_latent.gui.session import get_session
from napari_latent.models.checkpoint import read_checkpoint

pytestmark = pytest.mark.gui


@pytest.fixture
def widget(make_napari_viewer) -> ModelWidget:
    viewer = make_napari_viewer()
    widget = ModelWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Model")
    return widget


def _configure(widget: ModelWidget, data: Path, out: Path, epochs: int) -> None:
    widget.data.value = data
    widget.output.value = out
    widget.model_type.value = "vae"
    widget.image_size.value = 32
    widget.epochs.value = epochs
    widget.latent_dim.value = 8
    widget.batch_size.value = 16
    widget.device.value = "cpu"


def test_demo_model_loads_into_the_session(widget: ModelWidget) -> None:
    model = widget.load_demo()
    assert model is not None
    assert get_session(widget.viewer).model is model
    assert "vae" in widget.info.value and "fingerprint" in widget.info.value


def test_a_tiny_training_run_completes_from_the_widget(widget: ModelWidget, tiny_cohort: Path, tmp_path: Path,
                                                       qtbot) -> None:
    out = tmp_path / "gui.safetensors"
    _configure(widget, tiny_cohort, out, epochs=2)
    widget.train()
    assert widget.runner.running
    assert not widget.train_button.enabled  # no second run while one is going
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=120_000)
    result = widget.runner.last_result
    assert widget.runner.last_error is None
    assert result.epochs_completed == 2 and not result.stopped
    assert out.is_file()
    assert get_session(widget.viewer).model is result.model
    assert "Trained vae for 2 epochs" in widget.panel.status.value
    assert widget.train_button.enabled
    assert widget.runner.last_event is not None and widget.runner.last_event.stage in ("train", "validate")


def test_a_time_limit_ends_the_run_and_says_so(widget: ModelWidget, tiny_cohort: Path, tmp_path: Path,
                                               qtbot) -> None:
    out = tmp_path / "timed.safetensors"
    _configure(widget, tiny_cohort, out, epochs=5000)
    widget.time_limit.value = 0.02  # 1.2 s of steps
    widget.train()
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=120_000)
    result = widget.runner.last_result
    assert widget.runner.last_error is None
    assert result.time_limited and not result.stopped and result.epochs_completed < 5000
    assert read_checkpoint(out, device="cpu").training["settings"]["time_limit"] == 0.02
    assert "(the time limit ended the last one)" in widget.panel.status.value
    assert "time_limit=0.02" in widget._train_call


def test_cancel_stops_at_the_next_step_and_keeps_the_checkpoint(widget: ModelWidget, tiny_cohort: Path,
                                                                 tmp_path: Path, qtbot) -> None:
    out = tmp_path / "cancelled.safetensors"
    _configure(widget, tiny_cohort, out, epochs=500)
    widget.train()
    qtbot.waitUntil(lambda: widget.runner.last_event is not None and widget.runner.last_event.stage == "train",
                    timeout=60_000)
    widget.panel.cancel_button.changed.emit(True)  # what a click does
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=60_000)
    result = widget.runner.last_result
    assert result.stopped and result.steps < 500 * 5
    checkpoint = read_checkpoint(out, device="cpu")
    assert checkpoint.state["step"] == result.steps
    assert "cancelled" in widget.panel.status.value
    assert get_session(widget.viewer).model is result.model


def test_bad_input_becomes_a_message_not_a_crash(widget: ModelWidget, tmp_path: Path, qtbot) -> None:
    widget.train()  # no data folder chosen
    assert not widget.runner.running
    assert "choose a folder" in widget.panel.status.value
    empty = tmp_path / "empty"
    empty.mkdir()
    _configure(widget, empty, tmp_path / "m.safetensors", epochs=1)
    widget.train()
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=60_000)
    assert "the folder is empty" in widget.panel.status.value
    assert widget.train_button.enabled
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model")
    assert widget.load(bad) is None
    assert "not a napari-latent model file" in widget.panel.status.value


def test_an_existing_model_file_is_replaced_only_when_asked(widget: ModelWidget, tiny_cohort: Path,
                                                            tmp_path: Path) -> None:
    existing = tmp_path / "kept.safetensors"
    existing.write_bytes(b"an earlier model")
    _configure(widget, tiny_cohort, existing, epochs=1)
    widget.train()
    assert not widget.runner.running
    assert "exists" in widget.panel.status.value and "replace an existing file" in widget.panel.status.value
    assert existing.read_bytes() == b"an earlier model"
    widget.overwrite.value = True
    widget.train()
    widget.runner.wait(timeout=300)
    assert widget.runner.last_error is None
    assert existing.read_bytes() != b"an earlier model"


def test_the_window_field_gives_the_training_spec(widget: ModelWidget) -> None:
    widget.image_size.value = 32
    assert widget.window.value == "auto" and not widget.custom_window.enabled
    spec = widget.slice_spec()
    assert spec.size == 32 and spec.fixed_window is None
    widget.window.value = "soft_tissue"
    assert widget.slice_spec().fixed_window == (-160.0, 240.0)
    assert widget.slice_spec().window_name == "soft_tissue"
    widget.window.value = "custom"
    assert widget.custom_window.enabled
    widget.custom_window.value = "-1000:400"
    spec = widget.slice_spec()
    assert spec.fixed_window == (-1000.0, 400.0) and spec.window_name is None


def test_a_bad_custom_window_is_a_message_not_a_crash(widget: ModelWidget, tiny_cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    _configure(widget, tiny_cohort, out, epochs=1)
    widget.window.value = "custom"
    widget.custom_window.value = "400:-1000"
    widget.train()
    assert not widget.runner.running
    assert "low < high" in widget.panel.status.value
    widget.custom_window.value = "wide"
    widget.train()
    assert "unknown intensity window 'wide'" in widget.panel.status.value
    assert not out.exists() and widget.train_button.enabled


def test_a_model_trained_with_a_window_keeps_it(widget: ModelWidget, tiny_cohort: Path, tmp_path: Path,
                                                qtbot) -> None:
    out = tmp_path / "ct.safetensors"
    _configure(widget, tiny_cohort, out, epochs=1)
    widget.window.value = "custom"
    widget.custom_window.value = "-160:240"
    widget.train()
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=120_000)
    assert widget.runner.last_error is None
    assert read_checkpoint(out, device="cpu").slice_spec.fixed_window == (-160.0, 240.0)
    assert get_session(widget.viewer).model.slice_spec.fixed_window == (-160.0, 240.0)
    assert "window (-160 to 240)" in widget.info.value
    assert "fixed_window=(-160.0, 240.0)" in widget._train_call


def test_an_official_stylegan2_ada_snapshot_opens_directly(widget: ModelWidget, tmp_path: Path) -> None:
    from tests.models.stylegan2_ada.test_import import tiny, write_snapshot
    from tests.models.stylegan2_ada.test_safety import call_pickle

    snapshot = write_snapshot(tmp_path, tiny())
    model = widget.load(snapshot)
    assert model is not None and model.name == "stylegan2-ada"
    assert get_session(widget.viewer).model is model
    assert "stylegan2-ada" in widget.info.value
    assert "*.pkl" in widget.checkpoint.filter
    # a hostile one is a message, not a crash, and nothing runs
    marker = tmp_path / "pwned"
    hostile = tmp_path / "evil" / "network-snapshot-000001.pkl"
    hostile.parent.mkdir()
    hostile.write_bytes(call_pickle("os", "system", f"touch {marker}"))
    assert widget.load(hostile) is None
    assert "os.system" in widget.panel.status.value and not marker.exists()
    assert get_session(widget.viewer).model is model


def test_a_preset_fills_the_form_and_sets_up_the_model(widget: ModelWidget, tiny_cohort: Path, tmp_path: Path) -> None:
    from napari_latent.gui.model_widget import NO_PRESET
    from napari_latent.training.presets import training_preset

    widget.model_type.value = "vae"
    widget.image_size.value = 128
    widget.preset.value = "quality"
    preset = training_preset("vae", "quality", 128)
    assert widget.epochs.value == preset.train["epochs"] and widget.latent_dim.value == preset.model["latent_dim"]
    assert "Preset quality for vae at 128 px" in widget.panel.status.value
    assert widget.chosen_preset() is preset
    widget.image_size.value = 256  # no preset at this size: said plainly, nothing else changes
    assert "made for 64 and 128 pixels" in widget.panel.status.value
    widget.data.value = tiny_cohort
    widget.output.value = tmp_path / "m.safetensors"
    widget.train()
    widget.runner.wait(60)
    assert "made for 64 and 128 pixels" in str(widget.runner.last_error) and not (tmp_path / "m.safetensors").exists()
    widget.preset.value = NO_PRESET
    assert widget.chosen_preset() is None
