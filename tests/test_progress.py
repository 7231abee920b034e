"""Progress events, the stop flag and the operation driver."""

from __future__ import annotations

import threading

import pytest

from napari_latent.progress import Operation, ProgressEvent, RateMeter, StopFlag, run_operation, stop_requested


def counting(total: int, stop: StopFlag | None = None) -> Operation[int]:
    done = 0
    for step in range(total):
        done += 1
        yield ProgressEvent(step + 1, total, "counting", {"done": done})
        if stop_requested(stop):
            break
    return done


def test_run_operation_returns_the_result_and_reports_every_event() -> None:
    events: list[ProgressEvent] = []
    assert run_operation(counting(5), progress=events.append) == 5
    assert [e.step for e in events] == [1, 2, 3, 4, 5]
    assert events[-1].fraction == 1.0
    assert events[0].metrics["done"] == 1


def test_stop_flag_ends_the_operation_cleanly_with_a_partial_result() -> None:
    stop = StopFlag()

    def stop_at_three(event: ProgressEvent) -> None:
        if event.step == 3:
            stop.request()

    assert run_operation(counting(100, stop), progress=stop_at_three) == 3
    assert stop.requested


def test_stop_flag_is_thread_safe() -> None:
    stop = StopFlag()
    thread = threading.Thread(target=stop.request)
    thread.start()
    thread.join()
    assert stop_requested(stop)
    assert not stop_requested(None)


def test_terminal_bar_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_operation(counting(3), progress=True) == 3
    assert "counting" in capsys.readouterr().err


def test_rate_meter() -> None:
    meter = RateMeter()
    meter.add(10)
    assert meter.rate > 0
    assert meter.eta(0.0) == float("inf")
    assert meter.eta(1.0) == 0.0
    assert ProgressEvent(1, None).fraction is None
