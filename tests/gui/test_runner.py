"""The operation runner: work after the result runs in the worker; layers are added one per event-loop turn."""

from __future__ import annotations

import threading

import pytest

from napari_latent.errors import UserInputError
from napari_latent.gui.runner import OperationRunner, ProgressPanel, followed_by
from napari_latent.progress import ProgressEvent

pytestmark = pytest.mark.gui


def counting(n: int, stop):
    for i in range(n):
        yield ProgressEvent(i + 1, n, f"step {i + 1}")
    return n


def test_followed_by_prepares_in_the_worker_and_steps_run_between_event_loop_turns(qtbot) -> None:
    panel = ProgressPanel()
    busy: list[bool] = []
    runner = OperationRunner(panel, busy.append)
    threads: dict[str, int] = {}
    steps: list[int] = []

    def prepare(result: int) -> list[int]:
        threads["prepare"] = threading.get_ident()
        return list(range(result))

    def on_result(done: tuple[int, list[int]]):
        result, items = done
        for item in items:
            steps.append(item)
            yield
        return f"added {len(items)} of {result}"

    runner.start(lambda stop: followed_by(counting(3, stop), prepare), on_result, "Counting")
    assert runner.running
    runner.wait(30)
    assert not runner.running and steps == [0, 1, 2]
    assert threads["prepare"] != threading.get_ident()  # not the GUI thread
    assert panel.status.value == "added 3 of 3"
    assert busy == [True, False]  # free again only after the last step


def test_a_user_error_in_a_step_becomes_the_status_and_frees_the_widget(qtbot, monkeypatch) -> None:
    shown: list[str] = []
    monkeypatch.setattr("napari_latent.gui.runner.show_error", shown.append)
    panel = ProgressPanel()
    runner = OperationRunner(panel)

    def on_result(result: int):
        yield
        raise UserInputError("the layer is gone")

    runner.start(lambda stop: counting(2, stop), on_result, "Counting")
    runner.wait(30)
    assert not runner.running
    assert "the layer is gone" in panel.status.value and shown == ["Counting: the layer is gone"]
