"""A matplotlib Qt canvas whose figure is rendered off the GUI thread.

Rendering a figure with Agg is mostly Python (artists, transforms, text layout): 30-60 ms for
a small plot on an idle core, several hundred ms for the first draw (fonts) or while a
training run keeps both cores busy. :class:`BackgroundCanvas` keeps matplotlib's Qt canvas
(its events, picking and toolbar work as usual) but does the Agg rendering in one background
thread; the GUI thread only copies the finished image to the screen. The figure is changed
only under :attr:`BackgroundCanvas.lock`, by the render thread (see :meth:`render`) or
briefly by GUI code that holds the lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import QTimer, Signal

#: Retry interval (ms) of a paint that found the render thread busy.
REPAINT_RETRY_MS = 15


class BackgroundCanvas(FigureCanvasQTAgg):
    """A ``FigureCanvasQTAgg`` that renders in a background thread.

    ``draw_idle()`` (what matplotlib and our widgets call after a change) schedules a render;
    requests that arrive while one is queued are merged into it. ``draw()`` still renders
    at once in the calling thread, for code that needs the pixels now (e.g. saving).
    """

    rendered = Signal()

    def __init__(self, figure: Figure | None = None) -> None:
        super().__init__(figure)
        self.lock = threading.RLock()
        self._queue_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-latent-plot")
        self._queued: Future[None] | None = None
        self._last: Future[None] | None = None  # the latest render submitted (queued or running)
        self._prepare: list[Callable[[], None]] = []
        self.rendered.connect(self.update)

    def draw_idle(self) -> None:
        """Schedule a render in the background thread (merged with one already queued)."""
        self.render()

    def render(self, prepare: Callable[[], None] | None = None) -> Future[None]:
        """Schedule ``prepare()`` (changes to the figure) and a render, in the background thread.

        Returns
        -------
        concurrent.futures.Future
            Done when the new image is ready (the screen updates soon after).
        """
        with self._queue_lock:
            if prepare is not None:
                self._prepare.append(prepare)
            if self._queued is None:
                self._queued = self._last = self._executor.submit(self._render)
            return self._queued

    def wait(self, timeout: float | None = 10.0) -> None:
        """Block until the latest render (queued or already running) is done (for tests and scripts)."""
        with self._queue_lock:
            last = self._last
        if last is not None:
            last.result(timeout)

    def _render(self) -> None:
        with self._queue_lock:
            self._queued = None
            prepares, self._prepare = self._prepare, []
        with self.lock:
            for prepare in prepares:
                prepare()
            # FigureCanvasAgg.draw without its Qt part (a QWidget.update from this thread)
            renderer = FigureCanvasAgg.get_renderer(self)
            renderer.clear()
            self.figure.draw(renderer)
        self.rendered.emit()

    def draw(self) -> None:
        """Render now, in the calling thread."""
        with self.lock:
            super().draw()

    def paintEvent(self, event: Any) -> None:
        """Copy the last finished image to the screen; never wait for a render in progress."""
        if not self.lock.acquire(blocking=False):
            QTimer.singleShot(REPAINT_RETRY_MS, self.update)
            return
        try:
            if not hasattr(self, "renderer"):
                self.render()
                return
            super().paintEvent(event)
        finally:
            self.lock.release()

    def close_renderer(self) -> None:
        """Stop the background thread (after the queued render)."""
        self._executor.shutdown(wait=False)
