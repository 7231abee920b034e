"""What the napari-latent widgets of one viewer share: the results of earlier steps.

Each viewer has one :class:`Session`; widgets read what previous steps produced (the
model, codes, directions, traversals, eigen results) and listen to ``changed`` to update
themselves, so the user never re-picks files between steps.
"""

from __future__ import annotations

import weakref
from typing import Any

from psygnal import Signal

from .session_script import SessionScript

_SESSIONS: weakref.WeakKeyDictionary[Any, Session] = weakref.WeakKeyDictionary()


class Session:
    """Shared state of one viewer's napari-latent widgets.

    Attributes
    ----------
    model : GenerativeModel or None
        The loaded or trained model.
    model_source : str
        Where the model came from (a path, ``"demo"``, or ``"trained"``).
    device : str
        Device setting for every step (``"auto"``, ``"cpu"``, ``"cuda"``, ...).
    results : dict
        Later steps' results by name (codes, directions, ...).
    script : SessionScript
        The library calls behind the session's steps ("Copy as script").
    training_history : list of dict
        Progress of the current (or last) training run: ``step``, ``total`` and
        ``metrics`` of each event the Model widget received (for the live loss plot).
    background_workers : list
        Workers started outside the widgets (the demo sample's traversal), kept here until
        they finish.
    """

    changed = Signal(str)

    def __init__(self) -> None:
        self.model: Any = None
        self.model_source: str = ""
        self.device: str = "auto"
        self.results: dict[str, Any] = {}
        self.training_history: list[dict[str, Any]] = []
        self.script = SessionScript()
        self.background_workers: list[Any] = []

    def set_model(self, model: Any, source: str) -> None:
        """Make ``model`` the session's model (results that depend on the old one are dropped)."""
        self.model = model
        self.model_source = source
        self.results.clear()
        self.changed.emit("model")

    def set_result(self, name: str, value: Any) -> None:
        """Store a step's result and tell the widgets."""
        self.results[name] = value
        self.changed.emit(name)

    def start_training(self) -> None:
        """Forget the last run's training history (a new run starts)."""
        self.training_history = []
        self.changed.emit("training_started")

    def add_training_event(self, step: int, total: int | None, metrics: dict[str, Any]) -> None:
        """Record one training progress event (numbers only) and tell the widgets."""
        numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and v == v}
        self.training_history.append({"step": int(step), "total": total, "metrics": numbers})
        self.changed.emit("training_progress")

    def set_device(self, device: str) -> None:
        """Change the device used by every step."""
        self.device = device
        self.changed.emit("device")


def get_session(viewer: Any) -> Session:
    """The session of a viewer (created on first use)."""
    session = _SESSIONS.get(viewer)
    if session is None:
        session = Session()
        _SESSIONS[viewer] = session
    return session
