"""The Traverse widget in a real napari viewer under Xvfb."""

from __future__ import annotations

import os
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import torch

from napari_latent.gui.layers import META_KEY, volume_from_layer
from napari_latent.gui.session import get_session
from napari_latent.gui.stores import SessionStores, collect_unshown
from napari_latent.gui.traverse_widget import NO_CODES, NO_DIRECTIONS, NO_MODEL, TraverseWidget
from napari_latent.latent.directions import Directions
from napari_latent.latent.inversion import invert
from napari_latent.latent.traversal import LazyTraversal, StoredTraversal
from napari_latent.models.base import build_model
from napari_latent.progress import StopFlag, run_operation
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


def _store_folder(viewer) -> Path:
    folder = get_session(viewer).stores.folder
    assert folder is not None
    return folder


def test_the_traversal_streams_into_a_store_shown_lazily(ready_viewer, qtbot, small_model) -> None:
    viewer, source = ready_viewer
    widget = TraverseWidget(viewer)
    assert widget.codes.value == source.name and widget.direction.value == 1
    widget.alphas.value = "0:2:5"
    widget.units.value = "direction_std"
    widget.run()
    widget.runner.wait(60)
    assert widget.runner.last_error is None, widget.runner.last_error
    traversal = get_session(viewer).traversal
    assert isinstance(traversal, StoredTraversal) and len(traversal) == 5
    assert traversal.path.parent == _store_folder(viewer) and (traversal.path / "zarr.json").is_file()
    assert not [p for p in traversal.path.parent.iterdir() if p.name.startswith(".")]  # no temporary folder
    np.testing.assert_allclose(traversal.latent_alphas, np.linspace(0, 1, 5))  # code_std 0.5 of direction 1
    layer = viewer.layers[f"{source.name} traversal"]
    difference = viewer.layers[f"{source.name} traversal difference"]
    # Lazy: the layers' data are dask arrays reading the store.
    for item in (layer, difference):
        assert isinstance(item.data, da.Array)
        assert item.data.shape == (5, *source.data.shape)
        np.testing.assert_allclose(item.scale[1:], source.scale)
        np.testing.assert_allclose(item.translate[1:], source.translate)
        assert item.metadata[META_KEY]["store"] == str(traversal.path)
    np.testing.assert_allclose(layer.scale[0], 0.5)  # evenly spaced alphas: the slider shows alpha values
    assert layer.contrast_limits == pytest.approx(source.contrast_limits)
    assert layer.axis_labels[0] == "alpha" and viewer.dims.axis_labels[0] == "alpha"
    assert layer.metadata[META_KEY]["kind"] == "traversal"
    # The layer's voxels are the store's frames in the display orientation, and today's eager voxels.
    display = traversal.display
    eager = LazyTraversal(small_model, get_session(viewer).codes[source.name], get_session(viewer).directions,
                          "0:2:5", index=1, units="direction_std",
                          source=volume_from_layer(source.data, source.metadata, source.scale, source.translate)
                          ).compute()
    rng = np.random.default_rng(0)
    for index in (0, 2, 4):
        shown = display.from_display(np.asarray(layer.data[index]))
        np.testing.assert_array_equal(shown, traversal.frame(index))
        np.testing.assert_array_equal(shown, eager.images[index])
    # The difference overlay: each frame minus the baseline at sampled voxels, zero at the baseline.
    base = traversal.baseline_index
    for _ in range(20):
        a, s, r, c = (int(rng.integers(n)) for n in difference.data.shape)
        expected = float(layer.data[a, s, r, c].compute()) - float(layer.data[base, s, r, c].compute())
        assert float(difference.data[a, s, r, c].compute()) == pytest.approx(expected, abs=1e-6)
    np.testing.assert_array_equal(np.asarray(difference.data[base]), 0)
    low, high = difference.contrast_limits
    assert low == pytest.approx(-high) and high > 0 and difference.opacity < 1
    assert "saved to" not in widget.panel.status.value
    # the untrained model has no validation metrics: the traversal's warning says its quality is unknown
    assert [w.kind for w in widget.warnings] == ["reconstruction_unknown"]
    assert "1 warning(s): see the notifications" in widget.panel.status.value


def test_save_to_keeps_the_store_and_a_rerun_deletes_the_unshown_one(ready_viewer, qtbot, tmp_path: Path) -> None:
    viewer, source = ready_viewer
    widget = TraverseWidget(viewer)
    widget.alphas.value = "-1:1:3"
    widget.run()
    widget.runner.wait(60)
    first = get_session(viewer).traversal.path
    assert first.is_dir()
    # Again into "save to": the new layers replace the old ones, whose temporary store goes.
    widget.save_to.value = str(tmp_path / "kept")
    widget.run()
    widget.runner.wait(60)
    assert widget.runner.last_error is None, widget.runner.last_error
    kept = get_session(viewer).traversal
    assert kept.path == tmp_path / "kept.zarr" and len(kept) == 3
    assert f"saved to {kept.path}" in widget.panel.status.value
    assert not first.exists()
    assert viewer.layers[f"{source.name} traversal"].metadata[META_KEY]["store"] == str(kept.path)
    # A store that is shown is never collected; a saved one is never deleted, even with the viewer.
    session = get_session(viewer)
    assert collect_unshown(viewer, session) == []
    widget.save_to.value = str(tmp_path)  # an existing folder that is not a store: refused at once
    widget.run()
    assert "is not a traversal store" in widget.panel.status.value and not widget.runner.running
    widget.save_to.line_edit.value = ""  # cleared: temporary again
    widget.run()
    widget.runner.wait(60)
    temporary = session.traversal.path
    assert session.stores.is_temporary(temporary)
    session.stores.close()  # what closing the viewer's window does
    assert not temporary.parent.exists() and kept.path.is_dir()


def test_cancel_keeps_the_alphas_done_and_leaves_no_temporary_folder(ready_viewer, qtbot) -> None:
    viewer, source = ready_viewer
    session = get_session(viewer)
    widget = TraverseWidget(viewer)
    widget.alphas.value = "0:2:9"
    slices = len(session.codes[source.name])
    # Drive the widget's own operation here, so the stop comes at a known point: after the first alpha.
    stop = StopFlag()
    operation = widget._make_operation(stop)
    events = []
    while True:
        try:
            event = next(operation)
        except StopIteration as done:
            traversal, prepared = done.value
            break
        events.append(event)
        if event.stage == "traverse" and event.total and event.step >= slices:
            stop.request()
    assert isinstance(traversal, StoredTraversal) and 1 <= len(traversal) < 9
    assert traversal.info.get("stopped") is True
    np.testing.assert_allclose(traversal.alphas, np.linspace(0, 2, 9)[:len(traversal)])
    folder = traversal.path.parent
    assert sorted(p.name for p in folder.iterdir()) == [traversal.path.name]  # committed, nothing else
    again = StoredTraversal.open(traversal.path)
    np.testing.assert_array_equal(again.frame(len(again) - 1), traversal.frame(len(traversal) - 1))
    message = run_operation(widget._on_traversed((traversal, prepared)))
    assert "cancelled: the alphas finished so far" in message
    assert viewer.layers[f"{source.name} traversal"].data.shape[0] == len(traversal)
    # Stopped before the first alpha: nothing is written, and no (empty) session folder stays.
    session.stores.close()
    stop = StopFlag()
    stop.request()
    assert run_operation(widget._make_operation(stop)) == (None, None)
    assert session.stores.folder is None or not session.stores.folder.exists()
    assert not any(session.stores.root.iterdir())


def test_stale_session_folders_of_dead_processes_are_swept(tmp_path: Path) -> None:
    root = tmp_path / "stores"
    dead = root / "session-999999999-abc"
    alive = root / f"session-{os.getpid()}-def"
    other = root / "not-a-session"
    for folder in (dead, alive, other):
        (folder / "x.zarr").mkdir(parents=True)
    stores = SessionStores(root)
    made = stores.session_folder()
    assert not dead.exists() and alive.exists() and other.exists() and made.parent == root
    # a new store is reserved (being written, its layers not added yet) until released; a held one stays
    first, second = stores.new_path("a traversal"), stores.new_path("a traversal")
    assert first != second and first.name == "a_traversal.zarr"
    for path in (first, second):
        path.mkdir()
    assert stores.collect([]) == [] and first.exists() and second.exists()
    stores.release(first)
    stores.release(second)
    with stores.hold(first):
        assert stores.collect([]) == [second]
    assert stores.collect([]) == [first]
    stores.close()
    assert not made.exists()


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
