"""The Discover widget: find latent directions of the session's model and pick one for later steps."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, PushButton, Table

from ..analysis.trust import TrustWarning, baseline_summary, trust_warnings
from ..errors import UserInputError
from ..latent.directions import Directions
from ..latent.discovery import METHODS, discovery_method, iter_discover, method_names
from ..latent.inversion import default_space
from ..progress import Operation, StopFlag, stop_requested
from .gallery_panel import GalleryPanel
from .layout import schedule_arrange, span_full_width
from .method_form import MethodForm, data_message, no_path
from .runner import OperationRunner, ProgressPanel
from .session import get_session
from .trust_notes import notify_warnings

NO_MODEL = "No model yet: load or train one in the Model widget first."
#: What :meth:`DiscoverWidget.missing` says for the built-in supervised method without data
#: (made from its description by :func:`~napari_latent.gui.method_form.data_message`).
NEEDS_DATA = ("The supervised method needs labelled data: a folder of volumes with a cohort.csv (a 'group' column "
              "with two groups, or a numeric column).")
#: Columns of the results table; only ``name`` is editable.
NAME_COLUMN = "name"


class DiscoverWidget(Container):
    """Discover directions with any registered method; a table of them with editable names and scores.

    The directions found go to ``session.directions`` and the selected row to
    ``session.selected_direction`` (an index), where the Traverse widget reads them.
    The method's settings fields are generated from its description (:class:`MethodForm`);
    each is an attribute named like its setting (``widget.count``, ``widget.steps``, ...).

    Scriptable: ``widget.method.value = "sefa"``, ``widget.count.value = 5``, ``widget.run()``,
    ``widget.runner.wait()``; ``widget.rename(0, "rotation")``, ``widget.select(1)``;
    ``widget.gallery.run()`` (then ``widget.runner.wait()``) and ``widget.gallery.export(path)``
    (:class:`~napari_latent.gui.gallery_panel.GalleryPanel`).
    """

    def __init__(self, napari_viewer: Any) -> None:
        schedule_arrange(napari_viewer)  # tab this dock with ours, fit the camera
        self.viewer = napari_viewer
        self.session = get_session(napari_viewer)
        self.directions: Directions | None = None
        #: The trust warnings of the last discovery (also shown as napari notifications).
        self.warnings: list[TrustWarning] = []
        self._filling = False
        self.status = Label(value=NO_MODEL)
        self.method = ComboBox(label="method", choices=method_names(), value="sefa")
        self.summary = Label(value="")
        self.space = ComboBox(label="space", choices=self._spaces)
        self.form = MethodForm([entry for _, entry in METHODS.items()])
        self.data = self.form.data
        for key, field in self.form.fields.items():
            if key.isidentifier() and (key == "count" or not hasattr(type(self), key)):  # count: as before
                setattr(self, key, field)
        self.run_button = PushButton(text="Discover")
        self.panel = ProgressPanel()
        self.runner = OperationRunner(self.panel, self._on_busy)
        self.table = Table(value=None)
        self.selected = Label(value="Selected direction: none")
        self.out = FileEdit(label="save as", mode="w", filter="*.safetensors")
        self.save_button = PushButton(text="Save directions", enabled=False)
        self.gallery = GalleryPanel(napari_viewer, self.session, self.runner, lambda: self.directions,
                                    self._on_gallery_click)
        self.auto_gallery = CheckBox(text="gallery after discovery", value=True,
                                     tooltip="decode every direction's thumbnails of the current slice")
        self.evaluate = CheckBox(text="evaluate on factors", value=True,
                                 tooltip="with data whose cohort.csv has numeric factor columns: measure how each "
                                         "direction changes each factor (the gallery can then be sorted by them)")
        #: The factor evaluation of the last discovery (None without one).
        self.evaluation: Any = None
        super().__init__(widgets=[self.status, self.method, self.summary, self.space, *self.form.widgets,
                                  self.auto_gallery, self.evaluate, self.run_button, self.panel, self.table,
                                  self.selected, self.out, self.save_button, self.gallery])
        for wide in (self.table, self.gallery):
            span_full_width(wide)
        self.run_button.changed.connect(lambda: self.run())
        self.save_button.changed.connect(lambda: self.save())
        self.method.changed.connect(self._on_method)
        self.table.native.itemChanged.connect(self._on_item_changed)
        self.table.native.itemSelectionChanged.connect(self._on_selection)
        self.session.events.model.connect(partial(self._on_session_changed, "model"))
        self.session.events.directions.connect(partial(self._on_session_changed, "directions"))
        self.session.events.selected_direction.connect(self._on_selected_elsewhere)
        self._on_method(self.method.value)
        self._on_session_changed("model")

    def _on_busy(self, busy: bool) -> None:
        self.run_button.enabled = not busy
        self.gallery.set_available(not busy and self.directions is not None)

    # -- form ------------------------------------------------------------------------------
    def _spaces(self, _widget: Any = None) -> list[str]:
        model = self.session.model
        return list(model.spaces) if model is not None else ["z"]

    def _on_method(self, name: str) -> None:
        """Show the chosen method's fields, set to its defaults."""
        self.summary.value = discovery_method(str(name)).summary
        self.form.show(str(name))

    def _on_session_changed(self, what: str) -> None:
        if what == "model":
            self.space.reset_choices()
            model = self.session.model
            self.directions = None
            self._fill_table()
            if model is None:
                self.status.value = NO_MODEL
                return
            self.space.value = default_space(model)
            dims = ", ".join(f"{s}: {model.latent_dim(s)}" for s in model.spaces)
            self.status.value = (f"Model: {model.name}, latent {dims}; device {model.device} "
                                 f"(session: {self.session.device}).")
        elif what == "directions":
            found = self.session.directions
            if found is not self.directions and isinstance(found, Directions):
                self.directions = found
                self._fill_table()

    def missing(self) -> str | None:
        """What is missing before a run can start (None when it can)."""
        if self.session.model is None:
            return NO_MODEL
        method = discovery_method(str(self.method.value))
        if method.data.required and no_path(self.data.value):
            return data_message(method)
        return None

    # -- running ---------------------------------------------------------------------------
    def run(self) -> None:
        """Discover directions in a background thread (progress and Cancel in the panel)."""
        self.runner.start(self._make_operation, self._on_found, f"Discovery ({self.method.value})")

    def _make_operation(self, stop: StopFlag) -> Operation[tuple[Directions, Any, Any]]:
        problem = self.missing()
        if problem is not None:
            raise UserInputError(problem)
        model = self.session.model
        method = str(self.method.value)
        entry = discovery_method(method)
        settings: dict[str, Any] = {"space": str(self.space.value)}
        if entry.data.kind != "none" and not no_path(self.data.value):
            folder = Path(str(self.data.value))
            if not (folder / "cohort.csv").is_file() and entry.data.required:
                raise UserInputError(f"{folder} has no cohort.csv; {data_message(entry)}")
            settings["data"] = folder
        settings.update(self.form.values(method))
        arguments = "".join(f", {k}={str(v.resolve()) if isinstance(v, Path) else v!r}" for k, v in settings.items())
        self._script_lines = [f"directions = nl.discover(model, {method!r}{arguments})"]
        folder = settings.get("data")
        evaluate = bool(self.evaluate.value) and folder is not None and _has_factors(folder)
        gallery = self.gallery.operation_for_later(stop) if self.auto_gallery.value else None
        return _discover_and_show(iter_discover(model, method, stop=stop, **settings), model,
                                  folder if evaluate else None, gallery, stop)

    def _on_found(self, found: tuple[Directions, Any, Any]) -> str:
        directions, evaluation, gallery = found
        self.directions = directions
        self._fill_table()
        self.evaluation = evaluation
        if gallery is not None:
            self.gallery.show(gallery, evaluation)
        self.session.directions = directions
        self.session.script.record("discover", self._script_lines, show={"directions": "directions"})
        self.select(0)
        self.save_button.enabled = True
        done = directions.info.get("steps_done")
        wanted = directions.settings.get("steps")
        stopped = f" (stopped after {done} of {wanted} steps)" if done is not None and wanted and done < wanted else ""
        extra = ""
        self.warnings = notify_warnings(trust_warnings(self.session.model, directions=directions))
        baselines = baseline_summary(directions, 0)
        if baselines is not None:
            extra = f"; {baselines}"
        elif "accuracy" in directions.scores:
            extra = f"; held-out accuracy {directions.scores['accuracy'][0]:.3f}"
        elif "rca" in directions.info:
            extra = f"; RCA {directions.info['rca']:.3f} (chance {directions.info['chance']:.3f})"
        if evaluation is not None:
            extra += f"; evaluated against {len(evaluation.factors)} factors (sort the gallery by them)"
        return (f"Found {len(directions)} {directions.method} directions in space {directions.space}{stopped}"
                f"{extra}.{f' {len(self.warnings)} warning(s): see the notifications.' if self.warnings else ''} "
                "Rename them in the table; the selected row goes to the Traverse step.")

    # -- table -----------------------------------------------------------------------------
    def _fill_table(self) -> None:
        from qtpy.QtCore import Qt

        self._filling = True
        try:
            self.gallery.reset()
            self.gallery.set_available(self.directions is not None and not self.runner.running)
            if self.directions is None:
                self.table.value = None
                self.save_button.enabled = False
                self.selected.value = "Selected direction: none"
                return
            rows = self.directions.table()
            columns = list(rows[0])
            data = [[round(v, 4) if isinstance(v, float) else v for v in row.values()] for row in rows]
            self.table.value = {"data": data, "index": [str(i) for i in range(len(data))], "columns": columns}
            name_column = columns.index(NAME_COLUMN)
            native = self.table.native
            for r in range(native.rowCount()):
                for c in range(native.columnCount()):
                    item = native.item(r, c)
                    if item is not None and c != name_column:
                        item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
        finally:
            self._filling = False

    def _on_item_changed(self, item: Any) -> None:
        """A cell was edited: a new name renames the direction (other columns are read-only)."""
        if self._filling or self.directions is None:
            return
        if item.column() != self.table.column_headers.index(NAME_COLUMN):
            return
        row = item.row()
        try:
            self.directions.rename(row, item.text())
        except UserInputError as exc:
            self.runner._report_user_error(exc, "Rename")
            self._filling = True
            try:
                item.setText(self.directions.names[row])
            finally:
                self._filling = False
            return
        self.session.directions = self.directions  # renamed in place: assigning again tells the widgets
        self.gallery.refresh_table()
        self._show_selected()

    def rename(self, index: int, name: str) -> None:
        """Rename direction ``index`` by editing its cell, as a user would."""
        if self.directions is None:
            raise UserInputError("no directions yet: run a discovery first")
        index = self.directions.index_of(int(index))
        self.table.native.item(index, self.table.column_headers.index(NAME_COLUMN)).setText(str(name))

    def _on_selection(self) -> None:
        if self._filling or self.directions is None:
            return
        rows = sorted({index.row() for index in self.table.native.selectedIndexes()})
        if rows:
            self.session.selected_direction = rows[0]
            self._show_selected()

    def select(self, index: int) -> None:
        """Select direction ``index`` (its table row) for the later steps."""
        if self.directions is None:
            raise UserInputError("no directions yet: run a discovery first")
        index = self.directions.index_of(int(index))
        self.session.selected_direction = index
        self._filling = True
        try:
            self.table.native.selectRow(index)
        finally:
            self._filling = False
        self._show_selected()

    def _on_gallery_click(self, index: int) -> None:
        """A gallery row was clicked: its direction becomes the selected one (table, Traverse, Explore)."""
        if self.directions is not None:
            self.select(index)

    def _on_selected_elsewhere(self, index: int | None) -> None:
        self.gallery.table.select_direction(index)

    def _show_selected(self) -> None:
        index = self.session.selected_direction
        if self.directions is None or index is None:
            self.selected.value = "Selected direction: none"
            return
        self.selected.value = f"Selected direction: {index} {self.directions.names[index]}"

    # -- saving ----------------------------------------------------------------------------
    def save(self, path: str | Path | None = None) -> Path | None:
        """Save the directions (with their current names) to a ``.safetensors`` file."""
        target = Path(path) if path is not None else Path(str(self.out.value))
        try:
            if self.directions is None:
                raise UserInputError("no directions yet: run a discovery first")
            if no_path(target):
                raise UserInputError("choose where to save the directions (a .safetensors file)")
            written = self.directions.save(target)
        except UserInputError as exc:
            self.runner._report_user_error(exc, "Save directions")
            return None
        self.panel.end(f"saved {len(self.directions)} directions to {written}")
        return written


def _has_factors(folder: Path) -> bool:
    """Whether the cohort in ``folder`` has numeric factor columns (read from its cohort.csv only)."""
    from ..volumes.cohort import load_cohort

    try:
        return bool(load_cohort(folder).factor_names)
    except (UserInputError, ValueError, OSError):
        return False


def _discover_and_show(discovery: Operation[Directions], model: Any, evaluate_on: Path | None,
                       gallery: Callable[[Directions], Operation[Any]] | None,
                       stop: StopFlag) -> Operation[tuple[Directions, Any, Any]]:
    """Discovery, then (optionally) the factor evaluation on ``evaluate_on`` and the gallery, in one run.

    A stop during the discovery keeps its directions (as the methods do) and skips the rest.
    """
    from ..analysis.direction_evaluation import iter_evaluate_directions

    directions = yield from discovery
    evaluation = None
    if stop_requested(stop):  # stopped early: keep the directions found so far, skip the rest
        return directions, None, None
    if evaluate_on is not None:
        evaluation = yield from iter_evaluate_directions(model, directions, evaluate_on, stop=stop)
    shown = None
    if gallery is not None:
        shown = yield from gallery(directions)
    return directions, evaluation, shown
