"""The Discover widget's gallery: a row of thumbnails per direction, sortable, a click picks the direction.

Each row shows what one direction does to the current slice: the slice decoded at ``-a``, 0
and ``+a`` (``a`` in spreads of the codes along the direction, :mod:`napari_latent.analysis.gallery`).
The rows can be sorted by the visible change, by the directions' scores and, when the
discovery evaluated the directions against a cohort's factors, by each factor (the direction
that changes it most first). Clicking a row selects its direction for the Traverse and
Explore widgets (through the session). The gallery is decoded in the background by the
Discover widget's runner (after each discovery, and again on "Gallery" for the slice now in
view) and exported as a PNG.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, PushButton

from ..analysis.gallery import Gallery, check_png_path, iter_direction_gallery
from ..errors import UserInputError
from ..latent.codes import LatentCodes
from ..latent.directions import Directions
from ..latent.preview import plane_at
from ..progress import Operation, StopFlag
from ..volumes.orientation import display_geometry
from .method_form import no_path
from .runner import OperationRunner
from .session import Session

if TYPE_CHECKING:
    from ..analysis.direction_evaluation import DirectionEvaluation

#: Thumbnail edge in pixels.
THUMBNAIL = 56
#: Sort keys offered before the scores and factors.
BASIC_SORTS = ("rank", "visible change")


def thumbnail_rgb(image: np.ndarray) -> np.ndarray:
    """A decoded image in model units ([-1, 1]) as 8-bit grey RGB (window [-1, 1]), C-contiguous."""
    grey = np.clip((np.asarray(image, dtype=np.float32) + 1.0) * 127.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=-1))


def current_slice(viewer: Any, session: Session) -> tuple[LatentCodes, int] | None:
    """The session's latest codes and the coded slice nearest the viewer's position in their volume.

    None when there are no codes or their volume is not shown.
    """
    latest = session.last_codes
    if latest is None:
        return None
    name, codes = latest
    if name not in viewer.layers or len(codes) == 0:
        return None
    layer = viewer.layers[name]
    position = np.asarray(layer.world_to_data(viewer.dims.point), dtype=np.float64)
    plane = plane_at(codes.geometry, position, display_geometry(codes.geometry.grid).reorientation)
    indices = np.asarray(codes.indices)
    return codes, int(indices[np.argmin(np.abs(indices - plane))])


def _fitting(found: tuple[LatentCodes, int] | None, model: Any,
             directions: Directions) -> tuple[LatentCodes | None, int | None]:
    """``found`` (codes and a slice) when the codes fit the model and the directions, else ``(None, None)``."""
    if found is None or model is None:
        return None, None
    codes, index = found
    try:
        codes.check_model(model)
        directions.check_codes(codes)
    except UserInputError:
        return None, None
    return codes, index


class GalleryTable:
    """The thumbnails: one table row per direction (name and scores, then ``-a``, 0, ``+a``).

    A thin wrapper of a ``QTableWidget`` (:attr:`native`); ``rows`` maps table rows to
    direction indices.
    """

    def __init__(self, on_click: Callable[[int], None]) -> None:
        from qtpy.QtCore import QSize
        from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget

        self.native = QTableWidget(0, 4)
        self.native.setHorizontalHeaderLabels(["direction", "-a", "0", "+a"])
        self.native.setIconSize(QSize(THUMBNAIL, THUMBNAIL))
        self.native.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.native.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.native.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.native.verticalHeader().setVisible(False)
        self.native.verticalHeader().setDefaultSectionSize(THUMBNAIL + 6)
        header = self.native.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2, 3):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Fixed)
            self.native.setColumnWidth(column, THUMBNAIL + 6)
        self.native.setMinimumHeight(3 * (THUMBNAIL + 6) + 30)
        self.rows: list[int] = []
        self._on_click = on_click
        self.native.cellClicked.connect(self._clicked)

    def fill(self, gallery: Gallery | None, labels: list[str] | None = None) -> None:
        """Show ``gallery``'s rows in its order (``labels``: the text of each row's first cell)."""
        from qtpy.QtGui import QIcon, QImage, QPixmap
        from qtpy.QtWidgets import QTableWidgetItem

        self.native.clearContents()
        if gallery is None:
            self.native.setRowCount(0)
            self.rows = []
            return
        self.native.setRowCount(len(gallery))
        self.rows = list(gallery.indices)
        self._pixels: list[np.ndarray] = []  # QImage does not copy: keep the pixels alive
        for r in range(len(gallery)):
            text = labels[r] if labels is not None else gallery.names[r]
            item = QTableWidgetItem(text)
            item.setToolTip(f"direction {gallery.indices[r]}: {gallery.names[r]}; click to select it")
            self.native.setItem(r, 0, item)
            for c in range(3):
                rgb = thumbnail_rgb(gallery.images[r, c])
                self._pixels.append(rgb)
                height, width, _ = rgb.shape
                image = QImage(rgb.data, width, height, 3 * width, QImage.Format.Format_RGB888)
                cell = QTableWidgetItem()
                cell.setIcon(QIcon(QPixmap.fromImage(image).scaled(THUMBNAIL, THUMBNAIL)))
                cell.setToolTip(f"alpha {gallery.alphas[r, c]:+.3g} (latent units)")
                self.native.setItem(r, c + 1, cell)

    def select_direction(self, index: int | None) -> None:
        """Highlight the row of direction ``index`` (no click signal)."""
        blocked = self.native.blockSignals(True)
        try:
            self.native.clearSelection()
            if index is not None and index in self.rows:
                self.native.selectRow(self.rows.index(index))
        finally:
            self.native.blockSignals(blocked)

    def _clicked(self, row: int, _column: int) -> None:
        if 0 <= row < len(self.rows):
            self._on_click(self.rows[row])


class GalleryPanel(Container):
    """Thumbnails of every direction (sortable, click to select), a "Gallery" button and a PNG export.

    The gallery starts from the slice of the session's latest codes nearest the viewer's
    position when those codes fit the directions and their volume is shown, else from the
    model's mean latent. It is kept as :attr:`gallery` (rows in the directions' order);
    :attr:`table` shows it sorted by :attr:`sort`.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer (its position picks the slice).
    session : Session
        The model and the latest codes.
    runner : OperationRunner
        The owning widget's runner (one operation at a time).
    directions : callable
        Returns the current directions (or None).
    on_select : callable
        Called with a direction index when a row is clicked.
    """

    def __init__(self, viewer: Any, session: Session, runner: OperationRunner,
                 directions: Callable[[], Directions | None], on_select: Callable[[int], None]) -> None:
        self.viewer = viewer
        self.session = session
        self.runner = runner
        self._directions = directions
        self.gallery: Gallery | None = None
        self.evaluation: DirectionEvaluation | None = None
        self.amount = FloatSpinBox(label="gallery amount", value=2.0, min=0.1, max=50.0, step=0.5,
                                   tooltip="the shift -a / +a in spreads of the codes along each direction")
        self.sort = ComboBox(label="sort by", choices=list(BASIC_SORTS), value="rank",
                             tooltip="rank: the discovery's order; visible change: mean |image(+a) - image(-a)|; "
                                     "a score; or a factor of the cohort (the direction that changes it most first)")
        self.button = PushButton(text="Gallery of the current slice", enabled=False)
        self.table = GalleryTable(on_select)
        self.out = FileEdit(label="gallery PNG", mode="w", filter="*.png")
        self.export_button = PushButton(text="Export gallery PNG", enabled=False)
        super().__init__(widgets=[self.amount, self.sort, self.button, self.out, self.export_button], labels=True)
        self.native.layout().insertWidget(3, self.table.native)
        self.button.changed.connect(lambda: self.run())
        self.export_button.changed.connect(lambda: self.export())
        self.sort.changed.connect(lambda _value: self.refresh_table())

    def set_available(self, available: bool) -> None:
        """Enable the Gallery button (directions exist and nothing runs)."""
        self.button.enabled = bool(available)

    def reset(self) -> None:
        """Forget the gallery and the evaluation (new model or directions)."""
        self.gallery = None
        self.evaluation = None
        self.export_button.enabled = False
        self.sort.choices = list(BASIC_SORTS)
        self.sort.value = "rank"
        self.table.fill(None)

    # -- computing --------------------------------------------------------------------------------
    def start(self, directions: Directions) -> tuple[LatentCodes | None, int | None]:
        """The codes and slice the gallery starts from: the slice in view when the latest codes fit, else None."""
        return _fitting(current_slice(self.viewer, self.session), self.session.model, directions)

    def operation_for_later(self, stop: StopFlag | None = None) -> Callable[[Directions], Operation[Gallery]]:
        """The gallery as an operation, for directions not found yet (or found now).

        Call it in the GUI thread: the slice in view and the amount are read now; the
        returned function makes the decoding generator, to run wherever.
        """
        found = current_slice(self.viewer, self.session)
        amount = float(self.amount.value)
        model = self.session.model
        if model is None:
            raise UserInputError("no model: load or train one in the Model widget first")

        def later(directions: Directions) -> Operation[Gallery]:
            codes, index = _fitting(found, model, directions)
            return iter_direction_gallery(model, directions, codes, index, amount=amount, stop=stop)

        return later

    def run(self) -> None:
        """Compute the gallery of the slice in view in the background (progress and Cancel in the panel)."""
        self.runner.start(self._make_operation, self.show, "Gallery")

    def _make_operation(self, stop: StopFlag) -> Operation[Gallery]:
        directions = self._directions()
        if directions is None:
            raise UserInputError("no directions yet: run a discovery first")
        return self.operation_for_later(stop)(directions)

    # -- showing ----------------------------------------------------------------------------------
    def show(self, gallery: Gallery, evaluation: DirectionEvaluation | None = None) -> str:
        """Show ``gallery`` (and offer ``evaluation``'s factors as sort keys); returns a status line."""
        self.gallery = gallery
        if evaluation is not None:
            self.evaluation = evaluation
        keys = [*BASIC_SORTS, *gallery.scores]
        if self.evaluation is not None:
            keys += [f"factor: {name}" for name in self.evaluation.factors]
        current = self.sort.value
        self.sort.choices = keys
        self.sort.value = current if current in keys else "rank"
        self.refresh_table()
        self.export_button.enabled = True
        return (f"Gallery of {len(gallery)} directions at ±{gallery.amount:g} spreads from {gallery.start} "
                "(columns -a, 0, +a): click a row to select its direction.")

    def sorted_gallery(self) -> Gallery | None:
        """The gallery in the order of :attr:`sort`."""
        if self.gallery is None:
            return None
        key = str(self.sort.value)
        if key == "rank":
            return self.gallery.order("index")
        if key == "visible change":
            return self.gallery.order("difference")
        if key.startswith("factor: "):
            return self.gallery.order(key.removeprefix("factor: "), evaluation=self.evaluation)
        return self.gallery.order(key)

    def refresh_table(self) -> None:
        """Fill the table in the chosen order; the selected direction stays highlighted."""
        shown = self.sorted_gallery()
        labels = None
        if shown is not None:
            labels = [self._row_text(shown, r) for r in range(len(shown))]
        self.table.fill(shown, labels)
        self.table.select_direction(self.session.selected_direction)

    def _row_text(self, gallery: Gallery, row: int) -> str:
        key = str(self.sort.value)
        index = gallery.indices[row]
        directions = self._directions()
        name = directions.names[index] if directions is not None and index < len(directions) else gallery.names[row]
        text = f"{index} {name}"  # the current name: a direction renamed after the gallery was made
        if key.startswith("factor: ") and self.evaluation is not None:
            factor = key.removeprefix("factor: ")
            effect = self.evaluation.effects[gallery.indices[row], self.evaluation.factors.index(factor)]
            return f"{text}\n{factor} {effect:+.3g}/spread"
        if key in gallery.scores:
            return f"{text}\n{key} {gallery.scores[key][row]:.3g}"
        return f"{text}\nΔ {gallery.differences[row]:.3f}"

    def export(self, path: str | Path | None = None) -> Path | None:
        """Write the gallery (in the table's order) as a PNG, atomically; None and a message when it cannot."""
        target = Path(path) if path is not None else Path(str(self.out.value))
        try:
            shown = self.sorted_gallery()
            if shown is None:
                raise UserInputError("no gallery yet: run a discovery or press Gallery first")
            if no_path(target):
                raise UserInputError("choose where to save the gallery (a .png file)")
            check_png_path(target)
            written = shown.to_png(target)
        except UserInputError as exc:
            self.runner._report_user_error(exc, "Export gallery")
            return None
        self.runner.panel.end(f"saved the gallery to {written}")
        return written
