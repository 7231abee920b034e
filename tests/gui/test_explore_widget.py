"""The Explore widget: live sliders on the current slice, in a real napari viewer under Xvfb."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from napari_latent.gui.explore_widget import NO_CODES, NO_DIRECTIONS, NO_MODEL, ExploreWidget
from napari_latent.gui.layers import grid_layer_data
from napari_latent.gui.session import get_session
from tests.gui._results import assert_on_grid

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from tests.gui._results import make_results

    return make_results(tmp_path_factory.mktemp("explore"))


def _expected_volume(results, code: torch.Tensor, plane: int) -> np.ndarray:
    """What the preview must show: the decoded code pasted into the source at ``plane`` (display order)."""
    with torch.no_grad():
        image = results.model.decode(code[None], results.codes.space)
    volume = results.codes.geometry.to_volume(image, indices=np.array([plane]), fill=results.volume)
    return grid_layer_data(volume, results.volume.grid, "x")[0]


def test_explore_says_what_is_missing_then_previews_the_shifted_decode(make_napari_viewer, results) -> None:
    viewer = make_napari_viewer()
    widget = ExploreWidget(viewer)
    session = get_session(viewer)
    assert widget.status.value == NO_MODEL
    session.set_model(results.model, "test")
    assert widget.status.value == NO_CODES
    [source] = viewer.open(str(results.volume_path), plugin="napari-latent")
    session.last_codes = ("subject", results.codes)
    assert widget.status.value == NO_DIRECTIONS
    session.directions = results.directions
    # ready, but the preview (a copy of the volume) is made only when the user explores
    assert len(widget.sliders) == 3 and widget.preview_layer is None and "Drag a slider" in widget.status.value
    assert [layer.name for layer in viewer.layers] == ["subject"]
    widget.reset()
    assert widget.preview_layer is not None
    preview, difference = widget.preview_layer, widget.difference_layer
    assert_on_grid(preview, source)
    assert_on_grid(difference, source)
    # go to a slice with a code: the middle of the kept slices
    codes = results.codes
    plane = int(codes.indices[len(codes) // 2])
    axis, plane_of = widget.plane_axis()
    display_index = int(np.nonzero(plane_of == plane)[0][0])
    step = list(viewer.dims.current_step)
    step[axis] = display_index
    viewer.dims.current_step = tuple(step)
    assert widget.plane_at_cursor() == plane == widget.current_plane
    row = int(np.searchsorted(codes.indices, plane))
    # sliders at 0: the plain reconstruction of that slice
    np.testing.assert_allclose(preview.data, _expected_volume(results, codes.codes[row], plane), atol=2e-5)
    # move two sliders: the code shifts by value * code_std * direction
    widget.sliders[0].value = 1.5
    widget.set_values({1: -0.5})
    dirs = results.directions
    shifted = codes.codes[row] + 1.5 * dirs.code_std[0] * dirs.vectors[0] - 0.5 * dirs.code_std[1] * dirs.vectors[1]
    expected = _expected_volume(results, shifted, plane)
    np.testing.assert_allclose(preview.data, expected, atol=2e-5)
    unshifted = _expected_volume(results, codes.codes[row], plane)
    np.testing.assert_allclose(difference.data, expected - unshifted, atol=2e-5)
    assert float(np.abs(difference.data).max()) > 1e-3  # the shift does change the slice
    # only the current slice differs from the source
    changed = np.nonzero(np.abs(preview.data - source.data).reshape(-1, *preview.data.shape[1:]).max(axis=(1, 2)))[0] \
        if axis == 0 else None
    if changed is not None:
        assert set(changed.tolist()) <= {display_index}
    # moving through the volume restores the old slice and previews the new one
    other_plane = int(codes.indices[len(codes) // 2 + 1])
    step[axis] = int(np.nonzero(plane_of == other_plane)[0][0])
    viewer.dims.current_step = tuple(step)
    assert widget.current_plane == other_plane
    other_row = row + 1
    shifted = codes.codes[other_row] + 1.5 * dirs.code_std[0] * dirs.vectors[0] \
        - 0.5 * dirs.code_std[1] * dirs.vectors[1]
    np.testing.assert_allclose(preview.data, _expected_volume(results, shifted, other_plane), atol=2e-5)
    assert widget.last_update_ms < 1000
    # the hand-over to the Traverse widget
    request = widget.request_traversal()
    assert request == session.explore_request
    assert request["index"] == 0 and request["alphas"] == "-1.5:1.5:9" and request["layer"] == "subject"
    widget.reset()
    np.testing.assert_allclose(difference.data, 0.0, atol=1e-6)


def test_explore_outside_the_modelled_slices_says_so(make_napari_viewer, results) -> None:
    viewer = make_napari_viewer()
    viewer.open(str(results.volume_path), plugin="napari-latent")
    session = get_session(viewer)
    session.set_model(results.model, "test")
    session.last_codes = ("subject", results.codes)
    session.directions = results.directions
    widget = ExploreWidget(viewer)
    widget.reset()
    axis, plane_of = widget.plane_axis()
    missing = sorted(set(range(len(plane_of))) - set(results.codes.indices.tolist()))
    assert missing, "the phantom has slices without foreground"
    step = list(viewer.dims.current_step)
    step[axis] = int(np.nonzero(plane_of == missing[0])[0][0])
    viewer.dims.current_step = tuple(step)
    assert "has no code" in widget.status.value
    np.testing.assert_allclose(widget.preview_layer.data, viewer.layers["subject"].data)


def test_a_session_change_that_does_not_concern_the_preview_keeps_it(make_napari_viewer, results) -> None:
    viewer = make_napari_viewer()
    widget = ExploreWidget(viewer)
    session = get_session(viewer)
    session.set_model(results.model, "test")
    viewer.open(str(results.volume_path), plugin="napari-latent")
    session.directions = results.directions
    session.last_codes = ("subject", results.codes)
    widget.reset()
    preview, layer = widget.preview, widget.preview_layer
    assert preview is not None and len(widget.sliders) == 3
    # an inversion sets the codes dict, then last_codes: the same codes, so no second copy of the volume
    session.codes = {"subject": results.codes}
    session.last_codes = ("subject", results.codes)
    assert widget.preview is preview and widget.preview_layer is layer
    # directions renamed in place and assigned again: the same preview, relabelled sliders
    original = results.directions.names[0]
    results.directions.names[0] = "renamed"
    try:
        session.directions = results.directions
        assert widget.preview is preview and "renamed" in widget.sliders[0].label
    finally:
        results.directions.names[0] = original
    # other codes: a new preview
    session.last_codes = ("subject", dataclasses.replace(results.codes, codes=results.codes.codes + 0.1))
    assert widget.preview is not preview


def test_the_selected_direction_gets_a_marked_slider(make_napari_viewer, results) -> None:
    from napari_latent.gui.explore_widget import SELECTED_MARK, short_label

    viewer = make_napari_viewer()
    widget = ExploreWidget(viewer)
    session = get_session(viewer)
    session.set_model(results.model, "test")
    viewer.open(str(results.volume_path), plugin="napari-latent")
    session.last_codes = ("subject", results.codes)
    session.directions = results.directions
    count = len(results.directions)
    widget.count.value = 1
    assert len(widget.sliders) == 1
    session.selected_direction = count - 1  # beyond the sliders: more sliders, the last one marked
    assert len(widget.sliders) == count
    assert widget.sliders[-1].label == SELECTED_MARK + short_label(results.directions.names[-1])
    assert not any(s.label.startswith(SELECTED_MARK) for s in widget.sliders[:-1])
    session.selected_direction = 0
    assert len(widget.sliders) == count and widget.sliders[0].label.startswith(SELECTED_MARK)
    assert short_label("a" * 40) == "a" * 17 + "…" and short_label("short") == "short"
