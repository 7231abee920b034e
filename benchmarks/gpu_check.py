"""Check the GPU paths on a CUDA machine: every model family trains with mixed precision, DDP runs
over all visible GPUs through torchrun, and invert, traverse and eigen run at 256 px.

    python benchmarks/gpu_check.py [--steps 300] [--train-seconds 40] [--keep DIR]

What it does, on a small phantom cohort it makes (``make_phantom_cohort``):

1. **train** each registered model family (``model_names()``) at 64 px, batch 32, at its
   default precision (``--precision auto``: bf16 on GPUs with native bfloat16, else fp16 with
   loss scalers; StyleGAN fp32 there), for ``--steps`` steps or ``--train-seconds``, whichever
   comes first (the run is stopped cleanly, as a user's cancel would);
2. **ddp**: ``torchrun --standalone --nproc_per_node N -m napari_latent train ...`` with N the
   visible GPUs, as a subprocess (every family when N >= 2, ``vae`` alone on one GPU, where it
   checks the launcher and the CLI but not DDP itself: NCCL allows one process per GPU);
3. **256 px**: a VAE at 256 px trained briefly on a 256-cubed phantom, then ``invert`` the
   volume, ``discover`` a SeFa direction, ``traverse`` it with 15 alphas and ``eigencomponents``
   (5 components) of the traversal.

It prints one table: per check the precision used, the wall time, the work done and its rate,
the peak GPU memory of this process (``torch.cuda.max_memory_allocated``; "-" for the
torchrun subprocesses) and any non-finite values (losses, weights, samples, codes, voxels,
eigenvalues). Exit code 1 when a check failed or found a non-finite value, else 0. On a
machine without CUDA it says so and exits 0.

Time: on one GPU the run stays under 8 minutes by construction: 5 families x 40 s of training
at most (each also stops at 300 steps), one torchrun run of at most 120 s, the 256 px stage's
40 s of training plus invert, traverse and eigen (about a minute, mostly CPU work: mapping
15 x 256 decoded slices back onto the volume and the eigen passes), and about 30 s of
phantoms (the 256-cubed one takes ~10 s), data preparation and start-up: at most ~7.5 min.
With N >= 2 GPUs every family also runs under torchrun (up to 5 x 120 s more).

``--device cpu`` smoke-tests the script itself at tiny sizes (``--size 32 --big-size 32
--steps 2 --subjects 3``); the memory column is then "-".
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: The message (and exit code 0) of a machine without CUDA.
NO_CUDA = "gpu_check: no CUDA device here (torch {version}, CUDA build {cuda}); nothing to check."


@dataclass
class Row:
    """One line of the report."""

    check: str
    seconds: float = 0.0
    work: str = ""
    rate: str = ""
    precision: str = ""
    peak_mb: float | None = None
    nonfinite: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the check ran and found only finite values."""
        return self.error is None and not self.nonfinite


def nonfinite_names(values: Mapping[str, Any]) -> list[str]:
    """The names whose value (a number, an array, a tensor, or a list of them) holds a NaN or an infinity."""
    import torch

    bad = []
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, torch.Tensor):
            finite = bool(torch.isfinite(value.detach().float()).all()) if value.is_floating_point() else True
        elif isinstance(value, int | float | np.number):
            finite = math.isfinite(float(value))
        else:
            array = np.asarray(value)
            finite = bool(np.isfinite(array).all()) if np.issubdtype(array.dtype, np.floating) else True
        if not finite:
            bad.append(name)
    return bad


def model_nonfinite(model: Any) -> list[str]:
    """The model's parameters and buffers holding a NaN or an infinity (``weights:<name>``)."""
    state = model.state_dict()
    return [f"weights:{name}" for name in nonfinite_names(state)]


def history_nonfinite(history: Iterable[Mapping[str, float]]) -> list[str]:
    """The training metrics that were non-finite in some epoch (``loss:<name>``)."""
    bad: list[str] = []
    for row in history:
        bad += [f"loss:{name}" for name in nonfinite_names(row) if f"loss:{name}" not in bad]
    return bad


def format_table(rows: Sequence[Row]) -> str:
    """The report as an aligned text table (one line per check, a FAILED or non-finite note where due)."""
    header = ("check", "precision", "seconds", "work", "rate", "peak GPU MiB", "non-finite")
    lines = [header]
    for row in rows:
        peak = "-" if row.peak_mb is None else f"{row.peak_mb:.0f}"
        note = "FAILED: " + row.error if row.error else (", ".join(row.nonfinite[:4]) + (
            f" (+{len(row.nonfinite) - 4})" if len(row.nonfinite) > 4 else "") if row.nonfinite else "none")
        lines.append((row.check, row.precision or "-", f"{row.seconds:.1f}", row.work or "-", row.rate or "-", peak,
                      note))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True)) + "  " + line[-1]
            for line in lines]
    text.insert(1, "-" * len(text[0]))
    return "\n".join(text)


def cuda_missing_message() -> str | None:
    """The no-CUDA message, or None when a CUDA device is usable."""
    import torch

    if torch.cuda.is_available():
        return None
    return NO_CUDA.format(version=torch.__version__, cuda=torch.version.cuda or "none")


def torchrun_command(nproc: int) -> list[str]:
    """How to start torchrun here (the console script, or the module it runs)."""
    exe = shutil.which("torchrun")
    launcher = [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]
    return [*launcher, "--standalone", f"--nproc_per_node={nproc}"]


# -- the checks (CUDA only) ----------------------------------------------------------------------

def _peak_mb(device: str) -> float | None:
    """Peak memory allocated by torch on the GPU since :func:`_reset_peak` (None off CUDA)."""
    import torch

    if not device.startswith("cuda"):
        return None
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**20


def _reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _stop_after(steps: int, seconds: float, stop: Any, marks: dict[str, float]) -> Callable[[Any], None]:
    """A progress callback that requests a stop at ``steps`` steps or ``seconds`` of training."""

    def on_event(event: Any) -> None:
        if event.stage != "train":
            return
        now = time.perf_counter()
        marks.setdefault("first", now)
        marks["last"], marks["steps"] = now, event.step
        marks["images_per_s"] = float(event.metrics.get("images_per_s", 0.0))
        if event.step >= steps or now - marks["first"] >= seconds:
            stop.request()

    return on_event


def check_training(family: str, cohort: Path, out_dir: Path, steps: int, seconds: float, size: int = 64,
                   batch_size: int = 32, device: str = "cuda") -> Row:
    """Train one family at its default precision; timings, memory and non-finite values."""
    import torch

    from napari_latent.models.checkpoint import load_model
    from napari_latent.progress import StopFlag
    from napari_latent.training import TrainSettings, train_model

    row = Row(f"train {family} {size}px")
    out = out_dir / f"{family}.safetensors"
    stop, marks = StopFlag(), {}
    _reset_peak(device)
    start = time.perf_counter()
    try:
        result = train_model(cohort, family, out=out, settings=TrainSettings(epochs=1000, batch_size=batch_size,
                                                                              device=device, checkpoint_every=10**6),
                             progress=_stop_after(steps, seconds, stop, marks), stop=stop, image_size=size)
        row.peak_mb = _peak_mb(device)
        row.seconds = time.perf_counter() - start
        model = load_model(out, device=device)
        row.precision = model.training_info.get("precision", "")
        with torch.no_grad():
            samples = model.decode(model.sample_latent(8, torch.Generator().manual_seed(0)))
        row.nonfinite = history_nonfinite(result.history) + model_nonfinite(model) + [
            f"samples:{n}" for n in nonfinite_names({"decoded": samples})]
    except Exception as exc:  # a check that fails is a line of the report, not the end of it
        row.seconds, row.error = time.perf_counter() - start, f"{type(exc).__name__}: {exc}"
        return row
    trained = marks.get("last", start) - marks.get("first", start)
    row.work = f"{result.steps} steps x {batch_size}"
    row.rate = f"{(result.steps - 1) / trained:.1f} steps/s" if trained > 0 and result.steps > 1 else ""
    return row


def check_torchrun(family: str, cohort: Path, out_dir: Path, nproc: int, epochs: int, timeout: float,
                   size: int = 64, device: str = "cuda") -> Row:
    """``torchrun ... -m napari_latent train`` over ``nproc`` GPUs; checks the exit code and the checkpoint."""
    from napari_latent.models.checkpoint import read_checkpoint

    row = Row(f"torchrun {family} x{nproc}")
    out = out_dir / f"ddp-{family}.safetensors"
    command = [*torchrun_command(nproc), "-m", "napari_latent", "train", str(cohort), "--model", family,
               "--out", str(out), "--epochs", str(epochs), "--size", str(size), "--batch-size", "32",
               "--device", device, "--overwrite", "--quiet"]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        row.seconds, row.error = time.perf_counter() - start, f"timed out after {timeout:.0f} s"
        return row
    row.seconds = time.perf_counter() - start
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        row.error = f"exit code {done.returncode}: {last}"
        return row
    checkpoint = read_checkpoint(out, device="cpu", with_state=False)
    facts = checkpoint.training
    row.precision = str(facts.get("precision", ""))
    row.work = f"{facts.get('steps')} steps x 32 x {facts.get('world_size')} process(es)"
    if int(facts.get("world_size", 0)) != nproc:
        row.error = f"the checkpoint says world_size {facts.get('world_size')}, not {nproc}"
    row.nonfinite = nonfinite_names({f"loss:{k}": v for k, v in (facts.get("final_metrics") or {}).items()}) + \
        model_nonfinite(checkpoint.model)
    return row


def check_256(volume_path: Path, out_dir: Path, family: str, train_steps: int, train_seconds: float,
              size: int = 256, device: str = "cuda") -> list[Row]:
    """Train a ``size`` px model briefly on the volume, then time invert, traverse (15 alphas) and eigen (5)."""
    from napari_latent import discover, eigencomponents, invert, open_volume, traverse
    from napari_latent.models.checkpoint import load_model

    rows = [check_training(family, volume_path, out_dir, steps=train_steps, seconds=train_seconds, size=size,
                           batch_size=16, device=device)]
    rows[0].check = f"train {family} {size}px (used below)"
    if rows[0].error:
        return rows
    model = load_model(out_dir / f"{family}.safetensors", device=device)
    volume = open_volume(volume_path)
    steps: list[tuple[str, Callable[[], Any]]] = []
    results: dict[str, Any] = {}
    steps.append(("invert", lambda: results.setdefault("codes", invert(model, volume))))
    steps.append(("discover sefa", lambda: results.setdefault("directions", discover(model, "sefa", count=5))))
    steps.append(("traverse 15 alphas", lambda: results.setdefault(
        "traversal", traverse(model, results["codes"], results["directions"], "-3:3:15", index=0, source=volume))))
    steps.append(("eigen 5 components", lambda: results.setdefault(
        "eigen", eigencomponents(results["traversal"], n_components=5))))
    for name, run in steps:
        row = Row(f"{name} {size}px", precision="fp32")
        _reset_peak(device)
        start = time.perf_counter()
        try:
            value = run()
            row.peak_mb = _peak_mb(device)
        except Exception as exc:
            row.seconds, row.error = time.perf_counter() - start, f"{type(exc).__name__}: {exc}"
            rows.append(row)
            break
        row.seconds = time.perf_counter() - start
        row.work, row.nonfinite = _describe(name, value, volume)
        rows.append(row)
    return rows


def _describe(name: str, value: Any, volume: Any) -> tuple[str, list[str]]:
    """The work of a 256 px step and its non-finite values."""
    shape = "x".join(str(s) for s in volume.data.shape)
    if name == "invert":
        return f"{len(value)} slices of {shape}", nonfinite_names({"codes": value.codes})
    if name.startswith("discover"):
        return f"{len(value)} directions", nonfinite_names({"directions": value.vectors})
    if name.startswith("traverse"):
        return f"{len(value.alphas)} x {shape} voxels", nonfinite_names({"voxels": value.images})
    return f"{len(value.alphas)} alphas x {value.n_voxels} voxels", nonfinite_names(
        {"eigenvalues": value.eigenvalues, "eigenvectors": value.eigenvectors, "projections": value.projections})


def run_checks(args: argparse.Namespace, work: Path) -> list[Row]:
    """Every check, in order; the rows of the report."""
    import torch

    from napari_latent.models.base import model_names
    from napari_latent.volumes.phantoms import make_phantom_cohort

    device, size = args.device, args.size
    cohort, big = work / "cohort", work / "big"
    make_phantom_cohort(cohort, n_subjects=args.subjects, size=size, seed=0)
    make_phantom_cohort(big, n_subjects=1, size=args.big_size, seed=1, write_labels=False)
    families = args.models or model_names()
    rows = [check_training(family, cohort, work, args.steps, args.train_seconds, size=size, device=device)
            for family in families]
    nproc = torch.cuda.device_count() if device == "cuda" else 1
    for family in families if nproc >= 2 else (["vae"] if "vae" in families else families[:1]):
        rows.append(check_torchrun(family, cohort, work, nproc, args.ddp_epochs, args.ddp_timeout, size=size,
                                   device=device))
    volume = next(p for p in sorted(big.iterdir()) if p.name.endswith((".nii.gz", ".nii")))
    rows += check_256(volume, work, "vae", 100, args.train_seconds, size=args.big_size, device=device)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Run the checks and print the table; 0 when all passed (or there is no CUDA), else 1."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps per family (default 300)")
    parser.add_argument("--train-seconds", type=float, default=40.0,
                        help="at most this long per family's training (default 40)")
    parser.add_argument("--subjects", type=int, default=24, help="phantom subjects at 64 voxels (default 24)")
    parser.add_argument("--models", nargs="*", default=None, help="families to train (default: all registered)")
    parser.add_argument("--ddp-epochs", type=int, default=3, help="epochs of each torchrun run (default 3)")
    parser.add_argument("--ddp-timeout", type=float, default=120.0, help="seconds before a torchrun run counts as "
                        "failed (default 120)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the cohort and checkpoints in this folder")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cpu: smoke-test this script itself at tiny sizes (default cuda)")
    parser.add_argument("--size", type=int, default=64, help="image size of the family runs (default 64)")
    parser.add_argument("--big-size", type=int, default=256,
                        help="image size (and phantom size) of the invert/traverse/eigen stage (default 256)")
    args = parser.parse_args(argv)

    message = cuda_missing_message() if args.device == "cuda" else None
    if message is not None:
        print(message)
        return 0
    import torch
    from _common import machine

    start = time.perf_counter()
    work = args.keep or Path(tempfile.mkdtemp(prefix="napari-latent-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        rows = run_checks(args, work)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    total = time.perf_counter() - start
    if args.device == "cuda":
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        print(f"gpu_check on {names} (bf16 native: {torch.cuda.is_bf16_supported(including_emulation=False)}); "
              f"{machine()}")
    else:
        print(f"gpu_check smoke run on the CPU; {machine()}")
    print(format_table(rows))
    failed = [row.check for row in rows if not row.ok]
    print(f"total {total / 60:.1f} min; " + (f"{len(failed)} check(s) failed: {', '.join(failed)}" if failed
                                             else "every check passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
