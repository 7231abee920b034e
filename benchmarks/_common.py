"""Shared helpers of the benchmarks (run them as scripts: ``python benchmarks/bench_x.py``)."""

from __future__ import annotations

import io
import os
import platform
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch

#: The code before issue 16 ("today's path" of the scale benchmarks).
BASELINE_COMMIT = "8517398"

REPO = Path(__file__).resolve().parents[1]


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


def baseline_source(folder: Path) -> Path:
    """The package at :data:`BASELINE_COMMIT`, exported into ``folder`` once (``git archive``; no worktree).

    Run it with ``PYTHONPATH`` set to the returned folder: its ``napari_latent`` shadows the
    installed one (the entry points name modules, which resolve to it).
    """
    target = folder / f"baseline-{BASELINE_COMMIT}"
    if (target / "napari_latent" / "__init__.py").is_file():
        return target
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", BASELINE_COMMIT, "napari_latent"],
                             capture_output=True, check=True).stdout
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def ct_sized_volume(path: Path, shape: tuple[int, int, int] = (512, 512, 300)) -> Path:
    """nibabel's real T1 scan in a CT-sized grid: the scale benchmarks' volume (made once, float32 NIfTI).

    ``anatomical.nii`` (33 x 41 x 25 at 2 mm), clipped at 0, resampled (linear) into the
    central 62% of a ``shape`` grid of zeros, the affine scaled to match: a head in a CT field
    of view, 24% foreground, 64 MB gzipped at 512 x 512 x 300.
    """
    if path.is_file():
        return path
    import nibabel as nib
    from scipy import ndimage

    source = nib.load(os.path.join(os.path.dirname(nib.__file__), "tests", "data", "anatomical.nii"))
    data = np.clip(np.asarray(source.dataobj, dtype=np.float32), 0, None)
    inner = tuple(round(0.62 * n) for n in shape)
    zoom = [n / s for n, s in zip(inner, data.shape)]
    head = ndimage.zoom(data, zoom, order=1, grid_mode=True, mode="nearest").astype(np.float32)
    volume = np.zeros(shape, np.float32)
    offset = [(n - m) // 2 for n, m in zip(shape, head.shape)]
    volume[tuple(slice(o, o + m) for o, m in zip(offset, head.shape))] = head
    affine = source.affine.copy()
    affine[:3, :3] = affine[:3, :3] @ np.diag([1 / z for z in zoom])
    affine[:3, 3] -= affine[:3, :3] @ np.asarray(offset, float)
    nib.save(nib.Nifti1Image(volume, affine), str(path))
    return path
