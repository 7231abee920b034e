"""The bridge from core operations (generators of progress events) to napari.

Every long operation of napari-latent is a generator that yields
:class:`~napari_latent.progress.ProgressEvent` objects and returns its result. An
:class:`OperationRunner` runs such a generator in a napari ``thread_worker`` and:

* shows progress in our own light :class:`ProgressPanel` (a bar, a status line, a Cancel
  button), updated at most a few times a second: events are thinned *in the worker
  thread*, so the GUI thread handles only a handful of signals per second (napari's own
  ``_progress`` animation costs ~40% of a core here and is not used);
* cancels through a :class:`~napari_latent.progress.StopFlag` that the operation checks at
  every step; the operation then finishes cleanly and *returns* its partial result
  (``worker.quit()`` would lose it and skip the generator's ``finally``);
* turns user errors (:class:`~napari_latent.errors.UserInputError`) into napari
  notifications and resets the widget; anything else is a bug and goes to napari's error
  reporting with its traceback.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from magicgui.widgets import Container, Label, ProgressBar, PushButton
from napari.qt.threading import create_worker
from napari.utils.notifications import notification_manager, show_error, show_info
from qtpy.QtCore import QTimer

from ..errors import UserInputError
from ..progress import Operation, ProgressEvent, StopFlag
from . import quiet_gc

#: Seconds between progress updates sent to the GUI thread.
UPDATE_INTERVAL = 0.2


@dataclass
class _Failure:
    """An exception raised inside the worker, carried to the GUI thread as a result."""

    error: BaseException


def thinned(operation: Operation[Any], interval: float = UPDATE_INTERVAL,
            always: Callable[[ProgressEvent], bool] | None = None) -> Operation[Any]:
    """Pass on at most one event per ``interval`` seconds (plus stage changes, previews, the last).

    Exceptions of the operation are returned as a :class:`_Failure` instead of raised,
    so that napari's worker machinery never sees them.
    """
    last = 0.0
    stage: str | None = None
    try:
        while True:
            try:
                event = next(operation)
            except StopIteration as done:
                return done.value
            now = time.monotonic()
            important = (event.stage != stage or event.preview is not None
                         or (event.total is not None and event.step >= event.total)
                         or (always is not None and always(event)))
            if important or now - last >= interval:
                last, stage = now, event.stage
                yield event
    except Exception as exc:
        return _Failure(exc)


def followed_by(operation: Operation[Any], finish: Callable[[Any], Any],
                message: str = "preparing the layers") -> Operation[tuple[Any, Any]]:
    """Run ``operation``, then ``finish(result)``, both in the worker thread; return ``(result, finished)``.

    For the work between a result and its layers (decoding a reconstruction, difference
    volumes, contrast limits, display reorientation): done here it does not block napari's
    GUI thread, which then only adds the prepared layers.
    """
    result = yield from operation
    yield ProgressEvent(0, None, message, stage="layers")
    return result, finish(result)


def format_metrics(metrics: dict[str, float], limit: int = 6) -> str:
    """A compact one-line rendering of event metrics."""
    parts = []
    for key, value in list(metrics.items())[:limit]:
        if isinstance(value, float):
            parts.append(f"{key} {value:.4g}")
        else:
            parts.append(f"{key} {value}")
    return ", ".join(parts)


def _fix_status_size(label: Label, fixed: bool, lines: int = 2) -> None:
    """While a run updates it, give the status line a fixed height and a width set by the dock.

    Otherwise every new status text changes the label's size hint and Qt lays out the whole
    main window again (napari's canvas included) at every progress update. At the end of a
    run the label wraps and grows again, so that a long final message is readable.
    """
    from qtpy.QtWidgets import QSizePolicy

    native = label.native
    if fixed:
        native.setWordWrap(False)
        native.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
        native.setFixedHeight(native.fontMetrics().lineSpacing() * lines + 4)
    else:
        native.setMinimumHeight(0)
        native.setMaximumHeight(16777215)  # QWIDGETSIZE_MAX
        native.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Preferred)
        native.setWordWrap(True)


class ProgressPanel(Container):
    """A progress bar, a status line and a Cancel button."""

    def __init__(self) -> None:
        self.bar = ProgressBar(value=0, min=0, max=1, visible=False)
        self.status = Label(value="")
        self.cancel_button = PushButton(text="Cancel", enabled=False, visible=False)
        super().__init__(widgets=[self.bar, self.status, self.cancel_button], labels=False)

    def begin(self, title: str) -> None:
        """Show the panel for a new run."""
        self.bar.max = 1
        self.bar.value = 0
        self.bar.visible = True
        self.cancel_button.visible = True
        self.cancel_button.enabled = True
        _fix_status_size(self.status, True)
        self.status.value = f"{title}: starting"

    def update(self, event: ProgressEvent, title: str) -> None:
        """Show an event."""
        if event.total:
            self.bar.max = int(event.total)
            self.bar.value = int(min(event.step, event.total))
        else:
            self.bar.max = 0  # indeterminate
        stage = f"{event.stage}: " if event.stage else ""
        numbers = format_metrics({k: v for k, v in event.metrics.items() if k not in ("eta_s",)}, 4)
        eta = event.metrics.get("eta_s")
        eta_text = f", {eta:.0f} s left" if isinstance(eta, float) and eta == eta and eta < 1e7 else ""
        self.status.value = f"{title}: {stage}{event.message}{eta_text}" + (f"\n{numbers}" if numbers else "")

    def end(self, message: str) -> None:
        """Hide the bar and show a final message."""
        self.bar.visible = False
        self.cancel_button.visible = False
        self.cancel_button.enabled = False
        _fix_status_size(self.status, False)
        self.status.value = message


class OperationRunner:
    """Runs one operation at a time for a widget, with progress, cancel and error handling.

    Parameters
    ----------
    panel : ProgressPanel
        Where progress is shown; its Cancel button is connected here.
    on_busy : callable, optional
        Called with True when a run starts and False when it ends (e.g. to disable
        buttons).
    """

    def __init__(self, panel: ProgressPanel, on_busy: Callable[[bool], None] | None = None) -> None:
        self.panel = panel
        self.on_busy = on_busy
        self.worker: Any = None
        self.stop: StopFlag | None = None
        self.title = ""
        self.last_event: ProgressEvent | None = None
        self.last_result: Any = None
        self.last_error: BaseException | None = None
        self._steps: Iterator[None] | None = None
        panel.cancel_button.changed.connect(self.cancel)

    @property
    def running(self) -> bool:
        """True while an operation runs (or its result is still being added to the viewer)."""
        return self.worker is not None or self._steps is not None

    def start(self, make_operation: Callable[[StopFlag], Operation[Any]], on_result: Callable[[Any], Any],
              title: str, on_event: Callable[[ProgressEvent], None] | None = None) -> None:
        """Start an operation in a background thread.

        Parameters
        ----------
        make_operation : callable
            Called (in the GUI thread) with the run's StopFlag; returns the generator.
            Input errors raised here are reported at once.
        on_result : callable
            Called in the GUI thread with the operation's result; may return a message
            for the status line. A generator function is run one step per turn of the
            event loop (e.g. one layer added per step, so napari stays responsive between
            them); its return value is the message.
        title : str
            Short name of the operation for the status line.
        on_event : callable, optional
            Called in the GUI thread with every (thinned) event, e.g. to update a preview.
        """
        if self.running:
            show_info(f"{self.title} is still running; cancel it first")
            return
        stop = StopFlag()
        try:
            operation = make_operation(stop)
        except UserInputError as exc:
            self._report_user_error(exc, title)
            return
        self.stop, self.title, self.last_error, self.last_result = stop, title, None, None
        self.panel.begin(title)
        worker = create_worker(thinned, operation, _start_thread=False,
                               _connect={"errored": self._on_worker_error})
        worker.yielded.connect(lambda event: self._on_event(event, on_event))
        worker.returned.connect(lambda result: self._on_returned(result, on_result))
        worker.finished.connect(self._on_finished)
        self.worker = worker
        if self.on_busy is not None:
            self.on_busy(True)
        quiet_gc.hold()
        worker.start()

    def cancel(self) -> None:
        """Ask the running operation to stop at its next step (it returns its partial result)."""
        if self.stop is not None and self.running:
            self.stop.request()
            self.panel.cancel_button.enabled = False
            self.panel.status.value = f"{self.title}: cancelling at the next step ..."

    def wait(self, timeout: float = 60.0) -> None:
        """Run the Qt event loop until the current run ends, its layers included (for scripts and tests)."""
        if not self.running:
            return
        from qtpy.QtCore import QCoreApplication, QEventLoop

        deadline = time.monotonic() + timeout
        worker = self.worker
        if worker is not None:
            loop = QEventLoop()
            worker.finished.connect(loop.quit)
            timer = QTimer()
            timer.setSingleShot(True)
            timer.timeout.connect(loop.quit)
            timer.start(int(timeout * 1000))
            # Only while it runs: a worker that finished before ``loop.quit`` was connected
            # would leave the loop waiting for the whole timeout (the polling below takes
            # over, also for a worker that has not started yet).
            if worker.is_running:
                loop.exec_()
            timer.stop()
        while self.running and time.monotonic() < deadline:
            QCoreApplication.processEvents()  # the queued finished signal, then the result's steps
            time.sleep(0.001)
        if self.running:
            raise TimeoutError(f"{self.title} did not finish within {timeout} s")

    # -- slots (GUI thread) ---------------------------------------------------------------
    def _on_event(self, event: ProgressEvent, on_event: Callable[[ProgressEvent], None] | None) -> None:
        self.last_event = event
        self.panel.update(event, self.title)
        if on_event is not None:
            on_event(event)

    def _on_returned(self, result: Any, on_result: Callable[[Any], Any]) -> None:
        if isinstance(result, _Failure):
            self.last_error = result.error
            if isinstance(result.error, UserInputError):
                self._report_user_error(result.error, self.title)
            else:
                self.panel.end(f"{self.title} failed: {type(result.error).__name__}: {result.error}")
                error = result.error
                notification_manager.receive_error(type(error), error, error.__traceback__)
            return
        self.last_result = result
        try:
            message = on_result(result)
        except UserInputError as exc:
            self._report_user_error(exc, self.title)
            return
        if isinstance(message, Iterator):
            # a generator: one step (e.g. adding one layer) per turn of the event loop, so that
            # napari stays responsive between the layers; its return value is the message
            self._steps = message
            QTimer.singleShot(0, self._next_step)
            return
        self.panel.end(message or f"{self.title}: done")

    def _next_step(self) -> None:
        if self._steps is None:
            return
        try:
            next(self._steps)
        except StopIteration as done:
            self._steps = None
            self.panel.end(done.value or f"{self.title}: done")
            self._idle_if_done()
            return
        except UserInputError as exc:
            self._steps = None
            self._report_user_error(exc, self.title)
            self._idle_if_done()
            return
        QTimer.singleShot(0, self._next_step)

    def _on_worker_error(self, error: BaseException) -> None:  # pragma: no cover - thinned() catches errors
        self.last_error = error
        self.panel.end(f"{self.title} failed: {error}")
        notification_manager.receive_error(type(error), error, error.__traceback__)

    def _on_finished(self) -> None:
        self.worker = None
        self._idle_if_done()

    def _idle_if_done(self) -> None:
        """After the worker has finished and the result's steps are done: the widget is free again."""
        if self.worker is not None or self._steps is not None:
            return
        quiet_gc.release()
        if self.on_busy is not None:
            self.on_busy(False)

    def _report_user_error(self, error: BaseException, title: str) -> None:
        self.last_error = error
        self.panel.end(f"{title}: {error}")
        show_error(f"{title}: {error}")
