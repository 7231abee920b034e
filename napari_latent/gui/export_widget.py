"""The Export widget: chosen layers to NIfTI, the view to PNG, a traversal to GIF or MP4, the session as a script.

* **NIfTI**: each chosen image layer is written with its source volume's affine (the
  plugin's writer, :func:`napari_latent.gui.writer.write_image`), so every exported map
  overlays the original scan in any NIfTI viewer.
* **PNG**: a screenshot of the canvas as shown.
* **Animation**: the canvas as shown (a slice or the 3D view, with every overlay that is
  visible) at every alpha of a 4D traversal layer, written as GIF (or MP4 with
  imageio-ffmpeg). One screenshot is taken per timer tick so napari stays responsive;
  encoding runs in a background worker.
* **Copy session as script**: the Python that repeats the session's steps (see
  :mod:`napari_latent.gui.session_script`), on the clipboard and in the folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton, Select, SpinBox
from qtpy.QtCore import QTimer

from .._atomic import atomic_path, write_text_atomic
from ..analysis.animation import mp4_available, save_animation
from ..errors import UserInputError
from ..progress import ProgressEvent, StopFlag
from .layers import META_KEY
from .layout import schedule_arrange
from .runner import OperationRunner, ProgressPanel
from .session import get_session
from .writer import write_image_file


def _safe_name(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return keep or "layer"


class ExportWidget(Container):
    """Export results: NIfTI files, a PNG of the view, a GIF or MP4 of a traversal.

    Scriptable: ``widget.layers.value = ["sub-001 reconstruction"]``, ``widget.folder.value
    = "out/"``, then :meth:`export_nifti`, :meth:`export_png` or :meth:`export_animation`
    (``widget.runner.wait()`` waits for the animation to be written).
    """

    def __init__(self, napari_viewer: Any) -> None:
        schedule_arrange(napari_viewer)  # tab this dock with ours, fit the camera
        self.viewer = napari_viewer
        self.folder = FileEdit(label="folder", mode="d", tooltip="Where the exported files go")
        self.layers = Select(label="layers", choices=self._image_layer_names)
        self.nifti_button = PushButton(text="Save chosen layers as NIfTI")
        self.png_button = PushButton(text="Save the view as PNG")
        self.traversal = ComboBox(label="traversal", choices=self._traversal_layer_names)
        formats = ["gif", "mp4"] if mp4_available() else ["gif"]
        self.format = ComboBox(label="format", choices=formats, value="gif")
        self.fps = SpinBox(label="frames/s", min=1, max=60, value=5)
        self.animation_button = PushButton(text="Save traversal animation (as shown)")
        self.script_button = PushButton(text="Copy session as script")
        self.status = Label(value="")
        self.panel = ProgressPanel()
        self.runner = OperationRunner(self.panel, lambda busy: setattr(self.animation_button, "enabled", not busy))
        super().__init__(widgets=[self.folder, self.layers, self.nifti_button, self.png_button,
                                  Label(value="<b>Traversal animation</b>"), self.traversal, self.format, self.fps,
                                  self.animation_button, Label(value="<b>Reproduce</b>"), self.script_button,
                                  self.status, self.panel])
        self.nifti_button.changed.connect(lambda: self.export_nifti())
        self.png_button.changed.connect(lambda: self.export_png())
        self.animation_button.changed.connect(lambda: self.export_animation())
        self.script_button.changed.connect(lambda: self.copy_script())
        for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            event.connect(lambda _event: self._reset_choices())
        self._timer: QTimer | None = None
        self._written: list[Path] = []

    # -- choices ------------------------------------------------------------------------------
    def _image_layers(self) -> list[Any]:
        from napari.layers import Image

        return [layer for layer in self.viewer.layers if isinstance(layer, Image) and not layer.rgb]

    def _image_layer_names(self, _widget: Any = None) -> list[str]:
        return [layer.name for layer in self._image_layers() if layer.ndim in (3, 4)]

    def _traversal_layer_names(self, _widget: Any = None) -> list[str]:
        return [layer.name for layer in self._image_layers() if layer.ndim == 4]

    def _reset_choices(self) -> None:
        self.layers.reset_choices()
        self.traversal.reset_choices()

    def _out_folder(self) -> Path:
        folder = str(self.folder.value)
        if folder in ("", "."):
            raise UserInputError("choose an export folder first")
        path = Path(folder)
        if path.exists() and not path.is_dir():
            raise UserInputError(f"{path} is a file, not a folder")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _report(self, error: UserInputError, title: str) -> None:
        self.runner._report_user_error(error, title)
        self.status.value = f"{title}: {error}"

    # -- actions ------------------------------------------------------------------------------
    def export_nifti(self) -> list[Path]:
        """Write each chosen layer as ``<folder>/<layer name>.nii.gz``; returns the files."""
        try:
            folder = self._out_folder()
            names = list(self.layers.value or [])
            if not names:
                raise UserInputError("choose one or more image layers to export")
            written: list[Path] = []
            for name in names:
                written += [Path(p) for p in write_image_file(folder / f"{_safe_name(name)}.nii.gz",
                                                              self.viewer.layers[name])]
        except UserInputError as exc:
            self._report(exc, "Export NIfTI")
            return []
        self.status.value = f"Saved {len(names)} layer(s) to {folder}: " + ", ".join(p.name for p in written)
        return written

    def export_png(self, name: str = "view.png") -> Path | None:
        """Write a screenshot of the canvas as ``<folder>/<name>``; returns the file."""
        try:
            target = self._out_folder() / name
        except UserInputError as exc:
            self._report(exc, "Export PNG")
            return None
        import imageio.v3 as iio

        image = self.viewer.screenshot(canvas_only=True, flash=False)
        with atomic_path(target) as tmp:
            iio.imwrite(tmp, image, extension=".png")
        self.status.value = f"Saved the view to {target}"
        return target

    def copy_script(self, name: str = "session_script.py") -> str:
        """Put the Python that repeats this session's steps on the clipboard (and into the folder, if set)."""
        from qtpy.QtWidgets import QApplication

        text = get_session(self.viewer).script.text(name=name)
        QApplication.clipboard().setText(text)
        message = "Copied the session as a Python script to the clipboard"
        if str(self.folder.value) not in ("", "."):
            target = write_text_atomic(self._out_folder() / name, text)
            message += f" and saved it as {target}"
        self.status.value = message
        return text

    def export_animation(self, name: str | None = None) -> None:
        """Screenshot the view at every alpha of the chosen traversal layer, then write the animation."""
        try:
            folder = self._out_folder()
            layer_name = self.traversal.value
            if not layer_name or layer_name not in self.viewer.layers:
                raise UserInputError("no 4D traversal layer: make one in the Traverse widget or open a traversal")
            if self.runner.running or self._timer is not None:
                raise UserInputError("an animation is being written; wait for it to finish")
        except UserInputError as exc:
            self._report(exc, "Export animation")
            return
        layer = self.viewer.layers[layer_name]
        target = folder / (name or f"{_safe_name(layer_name)}.{self.format.value}")
        axis = self.viewer.dims.ndim - layer.ndim  # the layer's alpha axis in world coordinates
        alphas = (layer.metadata.get(META_KEY) or {}).get("alphas")
        count = int(layer.data.shape[0])
        start = list(self.viewer.dims.current_step)
        was_visible = layer.visible
        layer.visible = True
        frames: list[np.ndarray] = []
        self.panel.begin("Animation")

        def capture() -> None:
            index = len(frames)
            self.viewer.dims.set_current_step(axis, index)
            frames.append(np.asarray(self.viewer.screenshot(canvas_only=True, flash=False)))
            label = f"alpha {alphas[index]:.3g}" if alphas is not None and index < len(alphas) else f"frame {index}"
            self.panel.update(ProgressEvent(index + 1, count, f"captured {label}"), "Animation")
            if len(frames) == count:
                assert self._timer is not None
                self._timer.stop()
                self._timer = None
                self.viewer.dims.current_step = start
                layer.visible = was_visible
                self.runner.start(lambda stop: self._encode(frames, target, stop), self._on_written, "Animation")

        self._timer = QTimer()
        self._timer.setInterval(0)
        self._timer.timeout.connect(capture)
        self._timer.start()

    def _encode(self, frames: list[np.ndarray], target: Path, stop: StopFlag) -> Iterator[ProgressEvent]:
        yield ProgressEvent(0, 1, f"encoding {len(frames)} frames")
        shapes = {f.shape for f in frames}
        if len(shapes) != 1:
            raise UserInputError("the canvas changed size while the frames were captured; try again")
        path = save_animation(np.stack(frames), target, fps=float(self.fps.value))
        yield ProgressEvent(1, 1, "written")
        return path

    def _on_written(self, path: Path) -> str:
        self._written.append(path)
        self.status.value = f"Saved the animation to {path}"
        return f"Saved the animation to {path}"
