"""Shared helpers of the benchmarks (run them as scripts: ``python benchmarks/bench_x.py``)."""

from __future__ import annotations

import platform
import tempfile
from pathlib import Path

import torch


def machine() -> str:
    """A one-line description of where the benchmark ran."""
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def phantom_cohort(subjects: int = 12, size: int = 64, seed: int = 0) -> Path:
    """A phantom cohort in a temporary folder (kept until the process ends)."""
    from napari_latent.volumes.phantoms import make_phantom_cohort

    folder = Path(tempfile.mkdtemp(prefix="napari-latent-bench-"))
    make_phantom_cohort(folder, n_subjects=subjects, size=size, seed=seed)
    return folder


def ratio_line(name: str, ours: float, baseline: float, unit: str, higher_is_better: bool = True) -> str:
    """``name: ours X unit, baseline Y unit, ratio R``."""
    ratio = ours / baseline if higher_is_better else baseline / ours
    return f"{name}: ours {ours:.4g} {unit}, baseline {baseline:.4g} {unit}, ratio {ratio:.3f}"
