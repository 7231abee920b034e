"""What the napari-latent widgets of one viewer share: the model and the results of earlier steps.

Each viewer has one :class:`Session`. It is an evented dataclass (psygnal, as napari's own
models): every field is typed, and assigning it emits the signal of the same name in
``session.events`` with ``(new, old)``. Widgets connect to the signals they need::

    session = get_session(viewer)
    session.events.directions.connect(lambda new: print(len(new), "directions"))
    session.directions = nl.discover(session.model, "sefa")   # prints, the widgets update

Every assignment emits, even of the same object: an object changed in place (renamed
directions) is announced by assigning it again. A new model (:meth:`Session.set_model`, or
assigning ``session.model``) first clears the results, which belonged to the old model
(each cleared field emits its signal), then emits ``events.model``. Dicts and tuples are
replaced, never changed in place (``session.codes = {**session.codes, name: codes}``).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from psygnal import Signal, SignalGroup, SignalGroupDescriptor  # signal_aliases and SignalGroup subclasses: >= 0.11

from .session_script import SessionScript
from .stores import SessionStores

if TYPE_CHECKING:
    from ..analysis.eigen import EigenResult
    from ..latent.codes import LatentCodes
    from ..latent.directions import Directions
    from ..latent.traversal import StoredTraversal, Traversal
    from ..models.base import GenerativeModel

#: The results of later steps; a new model clears them (they belonged to the old one).
RESULTS = ("codes", "last_codes", "directions", "selected_direction", "traversal", "eigen", "explore_request")

_SESSIONS: weakref.WeakKeyDictionary[Any, Session] = weakref.WeakKeyDictionary()


class SessionEvents(SignalGroup):
    """The session's signals: one per evented field (added by psygnal), plus training progress.

    Attributes
    ----------
    training_started : Signal
        A training run started (:attr:`Session.training_history` was emptied).
    training_progress : Signal(dict)
        One progress event of the run (the entry appended to the history).
    """

    training_started = Signal()
    training_progress = Signal(dict)


def _changed(_old: Any, _new: Any) -> bool:
    """psygnal's equality test for the fields: never equal, so every assignment emits."""
    return False


@dataclass(eq=False)
class Session:
    """Shared state of one viewer's napari-latent widgets (typed fields, one signal each).

    Attributes
    ----------
    model : GenerativeModel or None
        The loaded or trained model.
    model_source : str
        Where the model came from (a path, ``"demo"``, ``"trained"`` or ``"script"``).
    device : str
        Device setting for every step (``"auto"``, ``"cpu"``, ``"cuda"``, ...).
    codes : dict of str to LatentCodes
        Codes of inverted volumes by layer name.
    last_codes : tuple of (str, LatentCodes) or None
        The layer name and codes of the latest inversion (or codes file).
    directions : Directions or None
        The directions of the latest discovery (or directions file).
    selected_direction : int or None
        The direction chosen in the Discover widget (preselected by Traverse).
    traversal : Traversal, StoredTraversal or None
        The latest traversal: a :class:`StoredTraversal` (frames read lazily from a store on
        disk) when the Traverse widget made it or a store was opened, a :class:`Traversal`
        (in memory) when a script or a NIfTI traversal gave one.
    eigen : EigenResult or None
        The latest eigen analysis.
    explore_request : dict or None
        What the Explore widget's "Traverse volume" asked for (``layer``, ``index``,
        ``weights``, ``alphas``, ``units``).
    training_history : list of dict
        Progress of the current (or last) training run: ``step``, ``total`` and
        ``metrics`` of each event the Model widget received (for the live loss plot); no
        signal of its own, see :class:`SessionEvents`.
    script : SessionScript
        The library calls behind the session's steps ("Copy as script"); no signal.
    background_workers : list
        Workers started outside the widgets (the demo sample's traversal), kept here until
        they finish; no signal.
    stores : SessionStores
        The viewer's temporary traversal stores (:mod:`napari_latent.gui.stores`); no signal.
    events : SessionEvents
        The signals: ``events.model``, ``events.codes``, ... (``(new, old)``) and
        ``events.training_started``, ``events.training_progress``.
    """

    model: GenerativeModel | None = None
    model_source: str = ""
    device: str = "auto"
    codes: dict[str, LatentCodes] = field(default_factory=dict)
    last_codes: tuple[str, LatentCodes] | None = None
    directions: Directions | None = None
    selected_direction: int | None = None
    traversal: Traversal | StoredTraversal | None = None
    eigen: EigenResult | None = None
    explore_request: dict[str, Any] | None = None
    training_history: list[dict[str, Any]] = field(default_factory=list)
    script: SessionScript = field(default_factory=SessionScript)
    background_workers: list[Any] = field(default_factory=list)
    stores: SessionStores = field(default_factory=SessionStores)

    events: ClassVar[SignalGroupDescriptor] = SignalGroupDescriptor(
        signal_group_class=SessionEvents,
        equality_operators=dict.fromkeys(("model", "model_source", "device", *RESULTS), _changed),
        signal_aliases={"training_history": None, "script": None, "background_workers": None, "stores": None},
    )

    def __post_init__(self) -> None:
        # before any widget hears of the new model, the old model's results are gone
        self.events.model.connect(self.clear_results, priority=100)

    def set_model(self, model: GenerativeModel | None, source: str) -> None:
        """Make ``model`` the session's model (from ``source``); the results are cleared first."""
        self.model_source = str(source)
        self.model = model

    def clear_results(self) -> None:
        """Forget every result of :data:`RESULTS` (each one that was set emits its signal)."""
        for name in RESULTS:
            if name == "codes":
                if self.codes:
                    self.codes = {}
            elif getattr(self, name) is not None:
                setattr(self, name, None)

    def start_training(self) -> None:
        """Forget the last run's training history (a new run starts); emits ``training_started``."""
        self.training_history = []
        self.events.training_started.emit()

    def add_training_event(self, step: int, total: int | None, metrics: dict[str, Any]) -> None:
        """Record one training progress event (numbers only); emits ``training_progress``."""
        numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and v == v}
        entry = {"step": int(step), "total": total, "metrics": numbers}
        self.training_history.append(entry)
        self.events.training_progress.emit(entry)


def get_session(viewer: Any) -> Session:
    """The session of a viewer (created on first use)."""
    session = _SESSIONS.get(viewer)
    if session is None:
        session = Session()
        _SESSIONS[viewer] = session
    return session
