"""Full garbage collections stay off the heap that existed before our runs started."""

from __future__ import annotations

import gc

import pytest

from napari_latent.gui import quiet_gc
from napari_latent.gui.model_widget import ModelWidget

pytestmark = pytest.mark.gui


def test_hold_and_release_nest_and_unfreeze_at_the_last_release() -> None:
    assert quiet_gc.running() == 0 and gc.get_freeze_count() == 0
    try:
        quiet_gc.hold()
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # the test process's objects are now out of the collector's walk
        quiet_gc.hold()
        quiet_gc.release()
        # still frozen after the inner release (frozen objects that die in the meantime, e.g. in
        # another thread, leave the permanent generation: the count may fall a little, not to 0)
        assert quiet_gc.running() == 1 and gc.get_freeze_count() > 0.9 * frozen
        quiet_gc.release()
        assert quiet_gc.running() == 0 and gc.get_freeze_count() == 0
        quiet_gc.release()  # an extra release is harmless
        assert quiet_gc.running() == 0
    finally:
        while quiet_gc.running():  # never leave the heap frozen for the next test in this process
            quiet_gc.release()


def test_a_widget_run_freezes_the_heap_until_it_ends(make_napari_viewer, tiny_cohort, tmp_path) -> None:
    widget = ModelWidget(make_napari_viewer())
    widget.data.value = tiny_cohort
    widget.image_size.value = 32
    widget.epochs.value = 1
    widget.latent_dim.value = 4
    widget.device.value = "cpu"
    widget.output.value = tmp_path / "m.safetensors"
    seen = []
    widget.runner.panel.bar.changed.connect(lambda _value: seen.append(gc.get_freeze_count()))
    widget.train()
    widget.runner.wait(timeout=300)
    assert widget.runner.last_error is None
    assert seen and min(seen) > 1000
    assert gc.get_freeze_count() == 0 and quiet_gc.running() == 0
