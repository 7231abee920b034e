"""benchmarks/gpu_check.py: what runs without a GPU (the no-CUDA exit, the table, the non-finite checks)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    sys.path.insert(0, str(SCRIPT.parent))  # the script imports benchmarks/_common.py as the benchmarks do
    try:
        spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules["gpu_check"] = module  # dataclasses look their module up while the class is made
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("gpu_check", None)
        sys.path.remove(str(SCRIPT.parent))


def test_without_cuda_it_says_so_and_exits_0() -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("gpu_check: no CUDA device here (torch ")
    assert result.stdout.strip().endswith("nothing to check.") and len(result.stdout.splitlines()) == 1


def test_nonfinite_values_are_found_by_name(gpu_check) -> None:
    values = {"ok": 1.5, "nan": float("nan"), "tensor": torch.tensor([1.0, float("inf")]), "ints": torch.arange(3),
              "array": np.array([0.0, -np.inf]), "list": [1.0, 2.0], "none": None, "half": torch.ones(2).half()}
    assert gpu_check.nonfinite_names(values) == ["nan", "tensor", "array"]
    layer = torch.nn.Linear(2, 2)
    with torch.no_grad():
        layer.bias[1] = float("nan")
    assert gpu_check.model_nonfinite(layer) == ["weights:bias"]
    history = [{"loss": 1.0, "r1": 0.1}, {"loss": float("nan"), "r1": float("inf")}, {"loss": float("nan")}]
    assert gpu_check.history_nonfinite(history) == ["loss:loss", "loss:r1"]


def test_the_report_is_one_aligned_table(gpu_check) -> None:
    Row = gpu_check.Row
    rows = [Row("train vae 64px", 12.345, "300 steps x 32", "25.0 steps/s", "bf16", 812.4),
            Row("train stylegan 64px", 40.0, "120 steps x 32", precision="fp32", peak_mb=2048.0,
                nonfinite=["loss:r1", "weights:a", "weights:b", "weights:c", "weights:d"]),
            Row("torchrun vae x2", 3.0, error="exit code 1: boom")]
    lines = gpu_check.format_table(rows).splitlines()
    assert lines[0].split() == ["check", "precision", "seconds", "work", "rate", "peak", "GPU", "MiB", "non-finite"]
    assert set(lines[1]) == {"-"} and len(lines) == 5
    assert lines[2].split()[-1] == "none" and " 12.3 " in lines[2] and " 812 " in lines[2] and "bf16" in lines[2]
    assert lines[3].endswith("loss:r1, weights:a, weights:b, weights:c (+1)")
    assert lines[4].endswith("FAILED: exit code 1: boom") and "  -  " in lines[4]
    starts = {line.index(word) for line, word in zip(lines[2:], ["bf16", "fp32", "-"], strict=True)}
    assert starts == {lines[0].index("precision")}  # the columns line up
    assert [row.ok for row in rows] == [True, False, False]


def test_torchrun_is_started_standalone_with_one_process_per_gpu(gpu_check) -> None:
    command = gpu_check.torchrun_command(4)
    assert command[-2:] == ["--standalone", "--nproc_per_node=4"]
    assert command[0].endswith("torchrun") or command[:3] == [sys.executable, "-m", "torch.distributed.run"]
