"""The demo pipeline as a generator: progress events by stage, and cancellation."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_latent.analysis.demo import iter_demo
from napari_latent.errors import UserInputError
from napari_latent.progress import StopFlag


def test_stopping_during_the_phantoms_returns_a_stopped_result_without_a_report(tmp_path: Path) -> None:
    stop = StopFlag()
    operation = iter_demo(tmp_path / "demo", subjects=6, size=32, alphas="0:1:3", stop=stop)
    stages = []
    try:
        while True:
            event = next(operation)
            stages.append(event.stage)
            if event.stage == "phantoms" and event.step == 1:
                stop.request()
    except StopIteration as done:
        result = done.value
    assert result.stopped and result.report is None and result.traversal is None
    assert set(stages) == {"phantoms"}
    assert not (tmp_path / "demo" / "report").exists()
    written = sorted(p.name for p in (tmp_path / "demo" / "cohort").glob("*.nii.gz"))
    assert 1 <= len(written) < 6  # abandoned after the subject that was being written


@pytest.mark.parametrize(("settings", "message"), [
    ({"unsupervised": "voynov"}, "unknown unsupervised method"),
    ({"subjects": 2}, "at least 4 subjects"),
    ({"alphas": "5"}, "at least 2 alphas"),
    ({"n_components": 1}, "at least 2 eigencomponents"),
])
def test_bad_settings_fail_before_anything_is_written(tmp_path: Path, settings: dict, message: str) -> None:
    with pytest.raises(UserInputError, match=message):
        next(iter_demo(tmp_path / "demo", **settings))
    assert not (tmp_path / "demo").exists()
