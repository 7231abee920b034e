"""The Discover widget's gallery: thumbnails per direction, decoded in the background, sortable, clickable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_latent.gui.discover_widget import DiscoverWidget
from napari_latent.gui.gallery_panel import thumbnail_rgb
from napari_latent.gui.session import get_session
from napari_latent.gui.traverse_widget import TraverseWidget
from napari_latent.latent.inversion import invert
from tests.gui._results import tiny_model

pytestmark = pytest.mark.gui


def _icon_pixels(table, row: int, column: int) -> np.ndarray:
    """The pixels of one thumbnail cell (its icon, as drawn at the table's icon size)."""
    icon = table.native.item(row, column).icon()
    size = table.native.iconSize()
    image = icon.pixmap(size).toImage().convertToFormat(4)  # Format_RGB32
    buffer = image.bits()
    buffer.setsize(image.byteCount())
    return np.frombuffer(buffer, dtype=np.uint8).reshape(image.height(), image.width(), 4)[..., :3].copy()


def test_the_gallery_follows_a_discovery_sorts_and_selects(make_napari_viewer, tmp_path: Path) -> None:
    viewer = make_napari_viewer()
    widget = DiscoverWidget(viewer)
    traverse = TraverseWidget(viewer)
    panel = widget.gallery
    session = get_session(viewer)
    assert panel.export(tmp_path / "early.png") is None and "no gallery yet" in str(widget.runner.last_error)
    session.set_model(tiny_model(), "test")
    widget.method.value = "sefa"
    widget.count.value = 4
    widget.run()
    widget.runner.wait(60)
    assert widget.runner.last_error is None, widget.runner.last_error
    gallery = panel.gallery
    assert gallery is not None and gallery.images.shape == (4, 3, 32, 32) and gallery.start == "mean latent"
    table = panel.table
    assert table.native.rowCount() == 4 and table.rows == [0, 1, 2, 3]
    # the thumbnails are the decoded images, and they differ across alpha
    for row in range(4):
        minus, zero, plus = (_icon_pixels(table, row, c).astype(np.int16) for c in (1, 2, 3))
        assert np.abs(plus - minus).mean() > 0.5, f"row {row}: -a and +a look the same"
        expected = thumbnail_rgb(gallery.images[row, 1]).astype(np.int16)
        size = expected.shape[0]  # shown enlarged: back to the image's size to compare
        shown = np.asarray(Image.fromarray(zero.astype(np.uint8)).resize((size, size), Image.BOX)).astype(np.int16)
        # within the quantisation of a 16-bit display (Xvfb's default depth) and the resampling
        assert np.median(np.abs(shown - expected)) <= 8
        assert np.corrcoef(shown[..., 0].ravel(), expected[..., 0].ravel())[0, 1] > 0.95
    # sorting by the visible change
    panel.sort.value = "visible change"
    assert table.rows == list(np.argsort(-gallery.differences, kind="stable"))
    panel.sort.value = "eigenvalue"
    assert table.rows == list(np.argsort(-np.asarray(gallery.scores["eigenvalue"]), kind="stable"))
    # a click selects the direction everywhere
    row = table.rows.index(2)
    table.native.cellClicked.emit(row, 3)
    assert session.selected_direction == 2
    assert sorted({i.row() for i in widget.table.native.selectedIndexes()}) == [2]
    assert traverse.direction.value == 2
    assert [i.row() for i in table.native.selectionModel().selectedRows()] == [row]
    widget.rename(2, "ventricles?")  # a rename shows in the gallery at once
    assert table.native.item(table.rows.index(2), 0).text().startswith("2 ventricles?")
    widget.select(1)  # selected in the Discover table: the gallery row follows
    assert [i.row() for i in table.native.selectionModel().selectedRows()] == [table.rows.index(1)]
    # export in the table's order, atomically; bad paths are refused
    assert panel.export(tmp_path / "bad.jpg") is None and ".png" in str(widget.runner.last_error)
    written = panel.export(tmp_path / "gallery.png")
    with Image.open(written) as image:
        assert image.format == "PNG" and image.size[1] > 3 * 32


def test_the_gallery_starts_from_the_slice_in_view(make_napari_viewer) -> None:
    from napari_latent.gui.layers import volume_layer_data
    from napari_latent.volumes import Volume
    from napari_latent.volumes.phantoms import PhantomFactors, make_phantom

    viewer = make_napari_viewer()
    session = get_session(viewer)
    model = tiny_model()
    session.set_model(model, "test")
    phantom = make_phantom(PhantomFactors(), size=32, seed=2)
    volume = Volume(phantom.image, phantom.affine, name="subject")
    data, kwargs, _ = volume_layer_data(volume)
    viewer.add_image(data, **kwargs)
    codes = invert(model, volume, method="encoder")
    session.codes = {"subject": codes}
    session.last_codes = ("subject", codes)
    widget = DiscoverWidget(viewer)
    widget.method.value = "sefa"
    widget.count.value = 2
    widget.auto_gallery.value = False
    widget.run()
    widget.runner.wait(60)
    assert widget.gallery.gallery is None  # not asked for
    indices = np.asarray(codes.indices)
    for target in (int(indices[3]), int(indices[-4])):
        # move the viewer to the plane of that coded slice
        step = next(s for s in range(viewer.dims.nsteps[0]) if _plane_in_view(viewer, session, s) == target)
        viewer.dims.set_current_step(0, step)
        widget.gallery.run()
        widget.runner.wait(60)
        assert widget.runner.last_error is None, widget.runner.last_error
        gallery = widget.gallery.gallery
        assert gallery.start == f"slice {target} of {Path(codes.source).name if codes.source else 'the volume'}"
        row = int(np.flatnonzero(indices == target)[0])
        decoded = model.decode(codes.codes[row:row + 1].float(), codes.space)[0, 0].detach().numpy()
        np.testing.assert_allclose(gallery.images[0, 1], decoded, atol=1e-5)


def _plane_in_view(viewer, session, step: int) -> int:
    from napari_latent.gui.gallery_panel import current_slice

    viewer.dims.set_current_step(0, step)
    found = current_slice(viewer, session)
    assert found is not None
    return found[1]


def test_the_gallery_sorts_by_the_cohorts_factors(make_napari_viewer, tiny_cohort: Path) -> None:
    viewer = make_napari_viewer()
    widget = DiscoverWidget(viewer)
    get_session(viewer).set_model(tiny_model(), "test")
    widget.method.value = "pca"
    widget.count.value = 3
    widget.data.value = tiny_cohort
    widget.run()
    widget.runner.wait(180)
    assert widget.runner.last_error is None, widget.runner.last_error
    evaluation = widget.evaluation
    assert evaluation is not None and evaluation.factors
    factor = evaluation.factors[0]
    panel = widget.gallery
    assert f"factor: {factor}" in panel.sort.choices
    panel.sort.value = f"factor: {factor}"
    effects = np.abs(evaluation.effects[:, evaluation.factors.index(factor)])
    assert panel.table.rows == list(np.argsort(-effects, kind="stable"))
    first = panel.table.native.item(0, 0).text()
    assert factor in first and "/spread" in first
    assert "evaluated against" in widget.panel.status.value
