"""The Discover widget: find latent directions of the session's model and pick one for later steps."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from magicgui.widgets import ComboBox, Container, FileEdit, Label, LineEdit, PushButton, SpinBox, Table

from ..errors import UserInputError
from ..latent.directions import Directions
from ..latent.discovery import METHODS, iter_discover, method_names, method_settings
from ..latent.discovery.supervised import parse_slices
from ..latent.inversion import default_space
from ..progress import Operation, StopFlag
from .runner import OperationRunner, ProgressPanel
from .session import get_session

NO_MODEL = "No model yet: load or train one in the Model widget first."
NEEDS_DATA = ("The supervised method needs labelled data: choose a folder of volumes with a cohort.csv "
              "(a 'group' column with two groups, or give a numeric column).")
#: Columns of the results table; only ``name`` is editable.
NAME_COLUMN = "name"


def _no_path(value: Any) -> bool:
    return value is None or str(value) in ("", ".")


class DiscoverWidget(Container):
    """Discover directions with any registered method; a table of them with editable names and scores.

    The directions found go to ``session.directions`` and the selected row to
    ``session.selected_direction`` (an index), where the Traverse widget reads them.

    Scriptable: ``widget.method.value = "sefa"``, ``widget.count.value = 5``, ``widget.run()``,
    ``widget.runner.wait()``; ``widget.rename(0, "rotation")``, ``widget.select(1)``.
    """

    def __init__(self, napari_viewer: Any) -> None:
        self.viewer = napari_viewer
        self.session = get_session(napari_viewer)
        self.directions: Directions | None = None
        self._filling = False
        self.status = Label(value=NO_MODEL)
        self.method = ComboBox(label="method", choices=method_names(), value="sefa")
        self.summary = Label(value="")
        self.space = ComboBox(label="space", choices=self._spaces)
        self.count = SpinBox(label="directions", min=1, max=4096, value=10)
        self.steps = SpinBox(label="steps", min=1, max=1_000_000, value=2000,
                             tooltip="voynov: training steps; supervised: inversion steps where optimised")
        self.seed = SpinBox(label="seed", min=0, max=2**31 - 1, value=0)
        self.data = FileEdit(label="labelled data", mode="d",
                             tooltip="A folder of volumes with cohort.csv (needed by supervised; pca and axes use "
                             "it instead of prior samples when given)")
        self.column = LineEdit(label="column", value="",
                               tooltip="supervised: a numeric cohort column split at its median instead of 'group'")
        self.positive = LineEdit(label="positive group", value="",
                                 tooltip="supervised: the group the direction points to (default: disease)")
        self.slices = LineEdit(label="slices", value="auto",
                               tooltip="supervised: the slices that train and score the classifier: auto (the band "
                               "of slice positions chosen by cross-validation on the training subjects), all, or "
                               "a band of relative positions such as 0.5:0.7")
        self.run_button = PushButton(text="Discover")
        self.panel = ProgressPanel()
        self.runner = OperationRunner(self.panel, lambda busy: setattr(self.run_button, "enabled", not busy))
        self.table = Table(value=None)
        self.selected = Label(value="Selected direction: none")
        self.out = FileEdit(label="save as", mode="w", filter="*.safetensors")
        self.save_button = PushButton(text="Save directions", enabled=False)
        super().__init__(widgets=[self.status, self.method, self.summary, self.space, self.count, self.steps,
                                  self.seed, self.data, self.column, self.positive, self.slices, self.run_button,
                                  self.panel, self.table, self.selected, self.out, self.save_button])
        self.run_button.changed.connect(lambda: self.run())
        self.save_button.changed.connect(lambda: self.save())
        self.method.changed.connect(self._on_method)
        self.table.native.itemChanged.connect(self._on_item_changed)
        self.table.native.itemSelectionChanged.connect(self._on_selection)
        self.session.events.model.connect(partial(self._on_session_changed, "model"))
        self.session.events.directions.connect(partial(self._on_session_changed, "directions"))
        self._on_method(self.method.value)
        self._on_session_changed("model")

    # -- form ------------------------------------------------------------------------------
    def _spaces(self, _widget: Any = None) -> list[str]:
        model = self.session.model
        return list(model.spaces) if model is not None else ["z"]

    def _on_method(self, name: str) -> None:
        accepted = set(method_settings(str(name)))
        self.summary.value = METHODS[str(name)].summary
        self.steps.visible = "steps" in accepted
        self.count.visible = "count" in accepted and name != "supervised"
        self.seed.visible = "seed" in accepted
        self.data.visible = "data" in accepted
        self.column.visible = self.positive.visible = "column" in accepted
        self.slices.visible = "slices" in accepted
        if name == "voynov":
            self.steps.value = 2000
        elif name == "supervised":
            self.steps.value = 100

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
        if METHODS[str(self.method.value)].needs_data and _no_path(self.data.value):
            return NEEDS_DATA
        return None

    # -- running ---------------------------------------------------------------------------
    def run(self) -> None:
        """Discover directions in a background thread (progress and Cancel in the panel)."""
        self.runner.start(self._make_operation, self._on_found, f"Discovery ({self.method.value})")

    def _make_operation(self, stop: StopFlag) -> Operation[Directions]:
        problem = self.missing()
        if problem is not None:
            raise UserInputError(problem)
        model = self.session.model
        method = str(self.method.value)
        accepted = set(method_settings(method))
        settings: dict[str, Any] = {"space": str(self.space.value)}
        if "count" in accepted and method != "supervised":
            settings["count"] = int(self.count.value)
        if "steps" in accepted:
            settings["steps"] = int(self.steps.value)
        if "seed" in accepted:
            settings["seed"] = int(self.seed.value)
        if "data" in accepted and not _no_path(self.data.value):
            folder = Path(str(self.data.value))
            if not (folder / "cohort.csv").is_file() and method == "supervised":
                raise UserInputError(f"{folder} has no cohort.csv; {NEEDS_DATA}")
            settings["data"] = folder
        if method == "supervised":
            settings["column"] = self.column.value.strip() or None
            settings["positive"] = self.positive.value.strip() or None
            settings["slices"] = parse_slices(self.slices.value)
        arguments = "".join(f", {k}={str(v.resolve()) if isinstance(v, Path) else v!r}" for k, v in settings.items())
        self._script_lines = [f"directions = nl.discover(model, {method!r}{arguments})"]
        return iter_discover(model, method, stop=stop, **settings)

    def _on_found(self, directions: Directions) -> str:
        self.directions = directions
        self._fill_table()
        self.session.directions = directions
        self.session.script.record("discover", self._script_lines, show={"directions": "directions"})
        self.select(0)
        self.save_button.enabled = True
        done = directions.info.get("steps_done")
        wanted = directions.settings.get("steps")
        stopped = f" (stopped after {done} of {wanted} steps)" if done is not None and wanted and done < wanted else ""
        extra = ""
        if "accuracy" in directions.scores:
            extra = f"; held-out accuracy {directions.scores['accuracy'][0]:.3f}"
        elif "rca" in directions.info:
            extra = f"; RCA {directions.info['rca']:.3f} (chance {directions.info['chance']:.3f})"
        return (f"Found {len(directions)} {directions.method} directions in space {directions.space}{stopped}"
                f"{extra}. Rename them in the table; the selected row goes to the Traverse step.")

    # -- table -----------------------------------------------------------------------------
    def _fill_table(self) -> None:
        from qtpy.QtCore import Qt

        self._filling = True
        try:
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
            if _no_path(target):
                raise UserInputError("choose where to save the directions (a .safetensors file)")
            written = self.directions.save(target)
        except UserInputError as exc:
            self.runner._report_user_error(exc, "Save directions")
            return None
        self.panel.end(f"saved {len(self.directions)} directions to {written}")
        return written
