"""The Discover widget's gallery: every direction's effect on one slice, as an image layer and a PNG."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import Container, FileEdit, FloatSpinBox, PushButton

from ..analysis.gallery import Gallery, check_png_path, iter_direction_gallery
from ..errors import UserInputError
from ..latent.codes import LatentCodes
from ..latent.directions import Directions
from ..progress import Operation, StopFlag
from .method_form import no_path
from .runner import OperationRunner
from .session import Session

#: The name of the image layer that shows the gallery.
GALLERY_LAYER = "direction gallery"
#: Pixels between thumbnails in the layer (drawn white: the window's top).
GAP = 2


def mosaic(gallery: Gallery, gap: int = GAP) -> np.ndarray:
    """The gallery's thumbnails as one 2D image: a row per direction, columns ``-a``, 0, ``+a``, white gaps."""
    rows, columns, size, _ = gallery.images.shape
    out = np.ones((rows * size + (rows - 1) * gap, columns * size + (columns - 1) * gap), dtype=np.float32)
    for r in range(rows):
        for c in range(columns):
            top, left = r * (size + gap), c * (size + gap)
            out[top:top + size, left:left + size] = gallery.images[r, c]
    return out


class GalleryPanel(Container):
    """A "Gallery" button (computed in the background by the widget's runner), an amount and a PNG export.

    The gallery starts from the middle modelled slice of the session's latest codes when they
    fit the directions (same model and space), else from the model's mean latent. It is shown
    as the image layer :data:`GALLERY_LAYER` (grey, window [-1, 1]) and kept as :attr:`gallery`.

    Parameters
    ----------
    viewer : napari.Viewer
        Where the layer goes.
    session : Session
        The model and the latest codes.
    runner : OperationRunner
        The owning widget's runner (one operation at a time).
    directions : callable
        Returns the current directions (or None).
    """

    def __init__(self, viewer: Any, session: Session, runner: OperationRunner,
                 directions: Callable[[], Directions | None]) -> None:
        self.viewer = viewer
        self.session = session
        self.runner = runner
        self._directions = directions
        self.gallery: Gallery | None = None
        self.amount = FloatSpinBox(label="gallery amount", value=2.0, min=0.1, max=50.0, step=0.5,
                                   tooltip="the shift -a / +a in spreads of the codes along each direction")
        self.button = PushButton(text="Gallery", enabled=False)
        self.out = FileEdit(label="gallery PNG", mode="w", filter="*.png")
        self.export_button = PushButton(text="Export gallery PNG", enabled=False)
        super().__init__(widgets=[self.amount, self.button, self.out, self.export_button], labels=True)
        self.button.changed.connect(lambda: self.run())
        self.export_button.changed.connect(lambda: self.export())

    def set_available(self, available: bool) -> None:
        """Enable the Gallery button (directions exist and nothing runs)."""
        self.button.enabled = bool(available)

    def reset(self) -> None:
        """Forget the gallery (new model or directions); the layer stays until replaced."""
        self.gallery = None
        self.export_button.enabled = False

    def start_codes(self, directions: Directions) -> LatentCodes | None:
        """The session's latest codes when they fit ``directions`` and the model, else None (mean latent)."""
        latest = self.session.last_codes
        if latest is None or self.session.model is None:
            return None
        codes = latest[1]
        try:
            codes.check_model(self.session.model)
            directions.check_codes(codes)
        except UserInputError:
            return None
        return codes

    def run(self) -> None:
        """Compute the gallery in the background (progress and Cancel in the widget's panel)."""
        self.runner.start(self._make_operation, self._on_done, "Gallery")

    def _make_operation(self, stop: StopFlag) -> Operation[Gallery]:
        directions = self._directions()
        model = self.session.model
        if directions is None or model is None:
            raise UserInputError("no directions yet: run a discovery first")
        return iter_direction_gallery(model, directions, self.start_codes(directions),
                                      amount=float(self.amount.value), stop=stop)

    def _on_done(self, gallery: Gallery) -> str:
        self.gallery = gallery
        data = mosaic(gallery)
        metadata = {"gallery": gallery.to_json()}
        if GALLERY_LAYER in self.viewer.layers:
            layer = self.viewer.layers[GALLERY_LAYER]
            layer.data = data
            layer.metadata = metadata
        else:
            self.viewer.add_image(data, name=GALLERY_LAYER, colormap="gray", contrast_limits=(-1.0, 1.0),
                                  metadata=metadata)
        self.export_button.enabled = True
        return (f"Gallery of {len(gallery)} directions at ±{gallery.amount:g} spreads from {gallery.start} in the "
                f"layer '{GALLERY_LAYER}' (rows: directions; columns: -a, 0, +a).")

    def export(self, path: str | Path | None = None) -> Path | None:
        """Write the gallery as a PNG (atomically); None and a message when there is none or the path is bad."""
        target = Path(path) if path is not None else Path(str(self.out.value))
        try:
            if self.gallery is None:
                raise UserInputError("no gallery yet: press Gallery first")
            if no_path(target):
                raise UserInputError("choose where to save the gallery (a .png file)")
            check_png_path(target)
            written = self.gallery.to_png(target)
        except UserInputError as exc:
            self.runner._report_user_error(exc, "Export gallery")
            return None
        self.runner.panel.end(f"saved the gallery to {written}")
        return written
