"""Training data at scale: peak memory, time to the first step and throughput, against today's in-RAM path.

    python benchmarks/scale_training.py [--workdir DIR] [--quick] [--keep] [--json OUT]

"Today's path" is the code at commit 8517398 (every volume sliced into one in-memory tensor
on every run), exported with ``git archive`` into the work folder and run with PYTHONPATH
pointing at it; "ours" is this checkout (slices read from the on-disk slice cache through a
DataLoader). Both train the same VAE at 128 px (batch 32, default augmentation, CPU) for a
fixed number of steps, each run in a fresh subprocess. Measured, for cohorts of 60 and 240
volumes of 256x256x200 (int16 NIfTI, made cheaply from nibabel's ``anatomical.nii``
resampled, each subject shifted and rescaled so every file's content differs):

* peak RSS of each training process (``os.wait4``'s ``ru_maxrss``: the largest of the process
  and its DataLoader workers), and its growth from 60 to 240 volumes (target: at most 200 MB);
* time from launching the process to the start of its first training step (the data ready,
  the model and optimiser built; the step itself is not counted), on a warm cache (target: at
  most 5 s), and on the cold cache of the first run (informational);
* training throughput in images/s over the steps after the first few (target: at least 0.95x).

:func:`run` returns the rows (``name``, ``ours``, ``baseline``, ``ratio``, ``unit``,
``target``); ``ratio`` is "times better": ``ours / baseline`` for throughput,
``baseline / ours`` for memory and time (for the growth row, the growth in MB of each).
``--quick`` runs the same code paths on tiny cohorts (4 and 8 volumes of 32x32x20 at 32 px)
in a few seconds, to check that the benchmark works. The full run needs about 10 GB of disk
in the work folder and about 7 GB of memory for the baseline's 240 volumes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _common import baseline_source

ROOT = Path(__file__).resolve().parents[1]

#: The commit of "today's path": training with every slice in one in-memory tensor.


@dataclass(frozen=True)
class Scale:
    """The sizes of one benchmark run."""

    small: int
    large: int
    shape: tuple[int, int, int]
    image_size: int
    steps: int
    warmup_steps: int


FULL = Scale(small=60, large=240, shape=(256, 256, 200), image_size=128, steps=40, warmup_steps=5)
QUICK = Scale(small=4, large=8, shape=(32, 32, 20), image_size=32, steps=6, warmup_steps=2)

#: The training process: trains with a progress callback, stops after ``steps`` steps and
#: writes what it saw as JSON. The same code runs on today's path and on ours.
CHILD = r"""
import json, sys, time
config = json.loads(sys.argv[1])
from napari_latent.progress import StopFlag
from napari_latent.training import TrainSettings, train_model
from napari_latent.training.objectives.vae import VAEObjective
stop = StopFlag()
steps = []
started = []
step_of = VAEObjective.train_step

def timed_step(self, images, generator):
    if not started:
        started.append(time.time())
    return step_of(self, images, generator)

VAEObjective.train_step = timed_step

def progress(event):
    if event.stage == "train":
        steps.append(time.time())
        if len(steps) >= config["steps"]:
            stop.request()

settings = TrainSettings(epochs=100, batch_size=config["batch_size"], device="cpu", seed=0)
train_model(config["data"], "vae", settings=settings, progress=progress, stop=stop,
            image_size=config["image_size"])
with open(config["report"], "w") as handle:
    json.dump({"steps": steps, "first_step_started": started[0]}, handle)
"""


def make_cohorts(folder: Path, scale: Scale) -> tuple[Path, Path]:
    """Folders of ``scale.small`` and ``scale.large`` int16 NIfTI volumes (the small one links to the large one's
    first volumes). Each subject is one resampled T1 scan, shifted and rescaled: cheap, and different bytes."""
    import nibabel as nib
    from scipy import ndimage

    large, small = folder / f"cohort{scale.large}", folder / f"cohort{scale.small}"
    if (large / "done").is_file() and (small / "done").is_file():
        return small, large
    for path in (large, small):
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
    source = nib.load(Path(nib.__file__).parent / "tests" / "data" / "anatomical.nii")
    data = np.asarray(source.dataobj, dtype=np.float32)
    zoom = [t / s for t, s in zip(scale.shape, data.shape, strict=True)]
    base = ndimage.zoom(data, zoom, order=1)[: scale.shape[0], : scale.shape[1], : scale.shape[2]]
    base = (base / max(float(base.max()), 1.0) * 2000.0).astype(np.float32)
    affine = source.affine @ np.diag([1 / z for z in zoom] + [1.0])
    rng = np.random.default_rng(0)
    for index in range(scale.large):
        shift = rng.integers(-scale.shape[0] // 16, scale.shape[0] // 16 + 1, size=2)
        subject = np.roll(base, tuple(int(s) for s in shift), axis=(0, 1)) * rng.uniform(0.8, 1.2) + index
        name = f"sub-{index:03d}.nii"
        nib.save(nib.Nifti1Image(subject.astype(np.int16), affine), large / name)
        if index < scale.small:
            (small / name).symlink_to(large / name)
    for path in (large, small):
        (path / "done").write_text("")
    return small, large


@dataclass
class Measured:
    """One training process: peak RSS (MB), launch to the start of the first step (s), throughput (images/s)."""

    peak_rss_mb: float
    first_step_s: float
    images_per_s: float


def train_once(code_root: Path, data: Path, cache: Path, scale: Scale, report: Path, batch_size: int = 32) -> Measured:
    """One training in a fresh process on ``code_root``'s package; its peak RSS from ``os.wait4``."""
    config = {"data": str(data), "steps": scale.steps, "batch_size": batch_size, "image_size": scale.image_size,
              "report": str(report)}
    env = {**os.environ, "PYTHONPATH": str(code_root), "NAPARI_LATENT_CACHE": str(cache)}
    log = report.with_suffix(".log")
    with open(log, "w") as stream:
        launched = time.time()
        process = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(config)], env=env, stdout=stream,
                                   stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"training on {code_root} failed ({process.returncode}):\n{log.read_text()[-3000:]}")
    facts = json.loads(report.read_text())
    steps = facts["steps"]
    timed = steps[scale.warmup_steps - 1:]
    rate = batch_size * (len(timed) - 1) / (timed[-1] - timed[0])
    # ru_maxrss is in KiB on Linux
    return Measured(usage.ru_maxrss / 1024.0, facts["first_step_started"] - launched, rate)


def _row(name: str, ours: float, baseline: float, unit: str, target: str, higher_is_better: bool) -> dict[str, Any]:
    ratio = ours / baseline if higher_is_better else baseline / ours
    return {"name": name, "ours": round(ours, 4), "baseline": round(baseline, 4), "ratio": round(ratio, 4),
            "unit": unit, "target": target}


def run(workdir: Path, quick: bool = False, rounds: int = 1, speed_only: bool = False) -> list[dict[str, Any]]:
    """Measure ours against today's path; the rows described in the module docstring.

    Parameters
    ----------
    workdir : Path
        Holds the cohorts, the slice cache, the baseline's code and the runs' logs (reused by
        a later call with the same folder).
    quick : bool
        Tiny sizes: checks that the benchmark works, measures nothing meaningful.
    rounds : int
        Runs of each path on the small cohort, alternating ours and today's; the throughput
        and warm start rows of that cohort take the best of them (the machine is shared and
        noisy: the best run is the one least disturbed).
    speed_only : bool
        Only the small cohort's alternating runs (warm start and throughput; the cache must
        already hold the cohort, from an earlier full run in the same work folder).
    """
    scale = QUICK if quick else FULL
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    need = scale.large * int(np.prod(scale.shape)) * (2 + 4 * (scale.image_size / scale.shape[0]) ** 2)
    if shutil.disk_usage(workdir).free < 1.2 * need:
        raise SystemExit(f"{workdir}: {need / 1e9:.1f} GB of free disk needed for the cohort and the cache")
    small, large = make_cohorts(workdir / "data", scale)
    baseline_root = baseline_source(workdir)
    cache = workdir / "cache"
    runs = workdir / "runs"
    runs.mkdir(exist_ok=True)
    if speed_only:
        return _speed_rows(workdir, scale, small, baseline_root, cache, runs, max(1, rounds))
    shutil.rmtree(cache, ignore_errors=True)
    cold = train_once(ROOT, large, cache, scale, runs / "ours-cold.json")
    ours = {n: train_once(ROOT, d, cache, scale, runs / f"ours-{n}.json") for n, d in ((scale.small, small),
                                                                                          (scale.large, large))}
    base = {n: train_once(baseline_root, d, workdir / "unused-cache", scale, runs / f"baseline-{n}.json")
            for n, d in ((scale.small, small), (scale.large, large))}
    ours_small, base_small = [ours[scale.small]], [base[scale.small]]
    for index in range(1, rounds):
        ours_small.append(train_once(ROOT, small, cache, scale, runs / f"ours-{scale.small}-{index}.json"))
        base_small.append(train_once(baseline_root, small, workdir / "unused-cache", scale,
                                     runs / f"baseline-{scale.small}-{index}.json"))
    size = f"{scale.shape[0]}x{scale.shape[1]}x{scale.shape[2]} at {scale.image_size} px"
    rows = [_row(f"training peak RSS, {n} volumes of {size}", ours[n].peak_rss_mb, base[n].peak_rss_mb, "MB",
                 "", higher_is_better=False) for n in (scale.small, scale.large)]
    growth_ours = ours[scale.large].peak_rss_mb - ours[scale.small].peak_rss_mb
    growth_base = base[scale.large].peak_rss_mb - base[scale.small].peak_rss_mb
    rows.append({"name": f"training peak RSS growth from {scale.small} to {scale.large} volumes",
                 "ours": round(growth_ours, 1), "baseline": round(growth_base, 1),
                 "ratio": round(growth_base / max(growth_ours, 1.0), 2), "unit": "MB", "target": "ours <= 200 MB"})
    rows.append(_row(f"time to the first step, warm cache, {scale.large} volumes", ours[scale.large].first_step_s,
                     base[scale.large].first_step_s, "s", "ours <= 5 s", higher_is_better=False))
    rows.append(_row(f"time to the first step, cold cache (slicing once), {scale.large} volumes", cold.first_step_s,
                     base[scale.large].first_step_s, "s", "", higher_is_better=False))
    rows.append(_row(f"training throughput, {scale.large} volumes (one run each)", ours[scale.large].images_per_s,
                     base[scale.large].images_per_s, "images/s", "ratio >= 0.95", higher_is_better=True))
    if rounds > 1:
        rows.append(_row(f"training throughput, {scale.small} volumes (best of {rounds} alternating runs)",
                         max(m.images_per_s for m in ours_small), max(m.images_per_s for m in base_small),
                         "images/s", "ratio >= 0.95", higher_is_better=True))
        rows.append(_row(f"time to the first step, warm cache, {scale.small} volumes (best of {rounds})",
                         min(m.first_step_s for m in ours_small), min(m.first_step_s for m in base_small), "s",
                         "ours <= 5 s", higher_is_better=False))
    return rows


def _speed_rows(workdir: Path, scale: Scale, small: Path, baseline_root: Path, cache: Path, runs: Path,
                rounds: int) -> list[dict[str, Any]]:
    """Warm start and throughput on the small cohort: ``rounds`` alternating runs of each path, the best of each."""
    ours, base = [], []
    for index in range(rounds):
        ours.append(train_once(ROOT, small, cache, scale, runs / f"speed-ours-{index}.json"))
        base.append(train_once(baseline_root, small, workdir / "unused-cache", scale,
                               runs / f"speed-baseline-{index}.json"))
    return [_row(f"training throughput, {scale.small} volumes (best of {rounds} alternating runs)",
                 max(m.images_per_s for m in ours), max(m.images_per_s for m in base), "images/s", "ratio >= 0.95",
                 higher_is_better=True),
            _row(f"time to the first step, warm cache, {scale.small} volumes (best of {rounds})",
                 min(m.first_step_s for m in ours), min(m.first_step_s for m in base), "s", "ours <= 5 s",
                 higher_is_better=False),
            {"name": "all runs (ours, then today's): images/s",
             "ours": [round(m.images_per_s, 2) for m in ours], "baseline": [round(m.images_per_s, 2) for m in base],
             "ratio": None, "unit": "images/s", "target": ""}]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that the benchmark runs")
    parser.add_argument("--keep", action="store_true", help="keep a temporary work folder")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    parser.add_argument("--rounds", type=int, default=1,
                        help="alternating runs of each path on the small cohort (throughput: the best of them)")
    parser.add_argument("--speed-only", action="store_true",
                        help="only the small cohort's alternating runs (needs the cache of an earlier full run)")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="napari-latent-scale-"))
    try:
        rows = run(workdir, args.quick, max(1, args.rounds), args.speed_only)
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    for row in rows:
        if row["ratio"] is None:
            print(f"{row['name']}: ours {row['ours']}, baseline {row['baseline']}")
            continue
        target = f"  [{row['target']}]" if row["target"] else ""
        print(f"{row['name']}: ours {row['ours']:.4g} {row['unit']}, baseline {row['baseline']:.4g} {row['unit']}, "
              f"ratio {row['ratio']:.3f}{target}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
