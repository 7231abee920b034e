"""The plot canvas renders in a background thread and never makes the GUI thread wait."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from matplotlib.figure import Figure

from napari_latent.gui.background_canvas import BackgroundCanvas

pytestmark = pytest.mark.gui


@pytest.fixture
def canvas(qtbot):
    figure = Figure(figsize=(3, 2))
    figure.add_subplot().plot([0, 1], [0, 1])
    canvas = BackgroundCanvas(figure)
    qtbot.addWidget(canvas)
    canvas.resize(300, 200)
    canvas.show()
    yield canvas
    canvas.close_renderer()


def test_changes_and_rendering_happen_in_the_render_thread(canvas) -> None:
    threads = []
    line = canvas.figure.axes[0].get_lines()[0]
    future = canvas.render(lambda: (threads.append(threading.get_ident()), line.set_data([0, 1], [1, 0])))
    future.result(10)
    assert threads and threads[0] != threading.get_ident()
    pixels = np.asarray(canvas.buffer_rgba())
    assert pixels.shape[:2] == canvas.get_width_height(physical=True)[::-1]
    assert (pixels[..., :3] < 128).any()  # the line and the axes are drawn, not a blank image


def test_requests_made_while_one_is_queued_are_merged(canvas) -> None:
    calls = []
    with canvas.lock:  # the render thread waits here, so the next requests queue up
        first = canvas.render(lambda: calls.append(1))
        time.sleep(0.05)
        second = canvas.render(lambda: calls.append(2))
        third = canvas.render(lambda: calls.append(3))
    first.result(10)
    second.result(10)
    assert third is second  # one render for both
    canvas.wait()
    assert calls == [1, 2, 3]


def test_a_paint_during_a_render_returns_at_once(canvas, qtbot) -> None:
    canvas.render().result(10)
    held = threading.Event()
    release = threading.Event()

    def render_forever() -> None:
        with canvas.lock:
            held.set()
            release.wait(10)

    worker = threading.Thread(target=render_forever)
    worker.start()
    held.wait(10)
    start = time.perf_counter()
    canvas.repaint()  # a synchronous paint event while the "render" holds the figure
    assert time.perf_counter() - start < 0.05
    release.set()
    worker.join()
    qtbot.wait(50)  # the skipped paint is retried
