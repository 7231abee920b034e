"""The session: typed fields, one psygnal signal each; a new model clears the results first."""

from __future__ import annotations

from napari_latent.gui.session import RESULTS, Session, get_session


def test_every_field_has_its_signal_and_every_assignment_emits() -> None:
    session = Session()
    assert set(RESULTS) | {"model", "model_source", "device", "training_started", "training_progress"} \
        == set(session.events)
    seen: list[tuple[object, object]] = []
    session.events.directions.connect(lambda new, old: seen.append((new, old)))
    first, second = object(), object()
    session.directions = first
    session.directions = first  # the same object again (renamed in place): still announced
    session.directions = second
    assert seen == [(first, None), (first, first), (second, first)]
    devices: list[str] = []
    session.events.device.connect(devices.append)
    session.device = "cpu"
    assert devices == ["cpu"] and session.device == "cpu"


def test_a_new_model_clears_the_results_before_the_widgets_hear_of_it() -> None:
    session = Session()
    session.set_model("old", "a.safetensors")
    session.codes = {"subject": "codes"}
    session.last_codes = ("subject", "codes")
    session.directions, session.selected_direction = "directions", 0
    session.traversal, session.eigen, session.explore_request = "traversal", "eigen", {"index": 0}
    log: list[tuple[str, object]] = []
    def recorder(name: str):
        return lambda new: log.append((name, new))

    for name in (*RESULTS, "model"):
        getattr(session.events, name).connect(recorder(name))
    session.events.model.connect(lambda: log.append(("codes at model", dict(session.codes))))
    session.set_model("new", "b.safetensors")
    assert log == [("codes", {}), ("last_codes", None), ("directions", None), ("selected_direction", None),
                   ("traversal", None), ("eigen", None), ("explore_request", None), ("model", "new"),
                   ("codes at model", {})]
    assert session.model == "new" and session.model_source == "b.safetensors"
    log.clear()
    session.model = "newer"  # assigning the field directly keeps the rule; nothing was left to clear
    assert log == [("model", "newer"), ("codes at model", {})]


def test_training_history_and_its_signals() -> None:
    session = Session()
    events: list[object] = []
    session.events.training_started.connect(lambda: events.append("started"))
    session.events.training_progress.connect(events.append)
    session.add_training_event(1, 10, {"loss": 2, "mse": float("nan"), "stage": "train"})
    session.start_training()
    session.add_training_event(2, 10, {"loss": 1.5})
    assert events == [{"step": 1, "total": 10, "metrics": {"loss": 2.0}}, "started",
                      {"step": 2, "total": 10, "metrics": {"loss": 1.5}}]
    assert session.training_history == [{"step": 2, "total": 10, "metrics": {"loss": 1.5}}]


def test_one_session_per_viewer() -> None:
    class Viewer:
        pass

    one, two = Viewer(), Viewer()
    assert get_session(one) is get_session(one) is not get_session(two)
