"""Progress events, cancellation and the driver shared by every long operation.

Each long operation (train, invert, discover, traverse, eigen) is written once, as a
generator that yields :class:`ProgressEvent` objects and *returns* its result::

    def iter_something(..., stop: StopFlag | None = None) -> Operation[Result]:
        for step in range(total):
            ...
            yield ProgressEvent(step + 1, total, "working", {"loss": loss})
            if stop_requested(stop):
                break          # finish cleanly and return the partial result
        return result

:func:`run_operation` drives such a generator to its end (optionally reporting to a
callback or a terminal progress bar); the napari GUI wraps the very same generator in a
thread worker. Cancelling sets the :class:`StopFlag`; the generator sees it at its next
step, finishes cleanly (a training run keeps its last checkpoint) and returns.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

#: A long operation: yields progress events, returns its result.
Operation = Generator["ProgressEvent", None, T]

#: What the plain functions accept as ``progress=``: nothing, a callback, or ``True``
#: for a terminal progress bar on standard error.
ProgressArg = Callable[["ProgressEvent"], Any] | bool | None


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report of a long operation.

    Parameters
    ----------
    step : int
        Steps done so far (1-based after the first step).
    total : int or None
        Steps expected in all, or None when unknown.
    message : str
        A short human-readable status.
    metrics : mapping of str to float
        Current numbers (losses, accuracies, images per second, ...).
    preview : object, optional
        An optional payload for displays (for example a sample image grid).
    stage : str
        The phase of the operation (for example ``"train"`` or ``"validate"``).
    """

    step: int
    total: int | None
    message: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)
    preview: Any = None
    stage: str = ""

    @property
    def fraction(self) -> float | None:
        """Fraction done in [0, 1], or None when the total is unknown."""
        if not self.total:
            return None
        return min(max(self.step / self.total, 0.0), 1.0)


class StopFlag:
    """A thread-safe request to stop a running operation at its next step."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def request(self) -> None:
        """Ask the operation to stop at its next step."""
        self._event.set()

    @property
    def requested(self) -> bool:
        """True once :meth:`request` was called."""
        return self._event.is_set()


def stop_requested(stop: StopFlag | None) -> bool:
    """True when ``stop`` is given and a stop was requested."""
    return stop is not None and stop.requested


#: Stages whose events are reports (printed as a line) rather than progress of their own.
REPORT_STAGES = frozenset({"validate", "report"})


class _TerminalBar:
    """A tqdm progress bar on standard error fed by progress events.

    Events of a stage in :data:`REPORT_STAGES` are printed as one line above the bar.
    """

    def __init__(self) -> None:
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self._bar: Any = None
        self._stage: str | None = None

    def __call__(self, event: ProgressEvent) -> None:
        if event.stage in REPORT_STAGES:
            numbers = ", ".join(f"{k} {v:.4g}" for k, v in event.metrics.items() if isinstance(v, int | float))
            self._tqdm.write(f"{event.message}: {numbers}", file=sys.stderr)
            return
        if self._bar is None or event.stage != self._stage:
            self.close()
            self._stage = event.stage
            self._bar = self._tqdm(total=event.total, desc=event.stage or None, file=sys.stderr,
                                   dynamic_ncols=True, leave=True)
        if event.total is not None and self._bar.total != event.total:
            self._bar.total = event.total
        self._bar.n = event.step
        postfix = {k: f"{v:.4g}" for k, v in list(event.metrics.items())[:4] if isinstance(v, int | float)}
        if event.message:
            self._bar.set_description_str(f"{event.stage + ': ' if event.stage else ''}{event.message}", refresh=False)
        self._bar.set_postfix(postfix, refresh=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def run_operation(operation: Operation[T], progress: ProgressArg = None) -> T:
    """Drive a long operation to its end and return its result.

    Parameters
    ----------
    operation : generator
        A generator yielding :class:`ProgressEvent` and returning the result.
    progress : callable, bool or None
        ``None``/``False``: silent. ``True``: a terminal progress bar on standard
        error. A callable: called with every event.

    Returns
    -------
    object
        The value the generator returns.
    """
    bar = _TerminalBar() if progress is True else None
    callback = bar if bar is not None else (progress if callable(progress) else None)
    try:
        while True:
            try:
                event = next(operation)
            except StopIteration as done:
                return done.value
            if callback is not None:
                callback(event)
    finally:
        if bar is not None:
            bar.close()


class RateMeter:
    """Items per second and time left, smoothed over the run so far."""

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self._items = 0

    def add(self, items: int) -> None:
        """Count ``items`` more processed items."""
        self._items += items

    @property
    def elapsed(self) -> float:
        """Seconds since the meter was created."""
        return time.perf_counter() - self._start

    @property
    def rate(self) -> float:
        """Items per second so far."""
        elapsed = self.elapsed
        return self._items / elapsed if elapsed > 0 else 0.0

    def eta(self, done_fraction: float) -> float:
        """Seconds left when ``done_fraction`` of the work is done (inf when unknown)."""
        if done_fraction <= 0:
            return float("inf")
        return self.elapsed * (1.0 - done_fraction) / done_fraction
