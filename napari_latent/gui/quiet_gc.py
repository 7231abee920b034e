"""Keeping Python's full garbage collections off napari's heap while our workers run.

A napari session holds millions of objects tracked by the cyclic garbage collector. A
generation-2 collection walks all of them while holding the GIL, which stops the GUI thread
for 200-300 ms here; a training run allocates enough to trigger one every few seconds. While
any of our operations runs, the objects that existed when it started are *frozen*
(:func:`gc.freeze`): collections then walk only what was allocated since. When the last run
ends they are unfrozen, so nothing that became garbage meanwhile is kept for good.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_runs = 0


def hold() -> None:
    """A run starts: freeze the current heap if no other run has already."""
    global _runs
    with _lock:
        if _runs == 0:
            gc.freeze()
        _runs += 1


def release() -> None:
    """A run ended: unfreeze the heap when it was the last one."""
    global _runs
    with _lock:
        if _runs == 0:
            return
        _runs -= 1
        if _runs == 0:
            gc.unfreeze()


def running() -> int:
    """How many runs currently hold the heap frozen."""
    return _runs
