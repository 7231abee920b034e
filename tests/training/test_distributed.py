"""DistributedDataParallel on the CPU: two gloo processes train one shared model."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from napari_latent.models.base import model_fingerprint
from napari_latent.models.checkpoint import read_checkpoint

TINY = {"image_size": 32, "latent_dim": 8, "base_channels": 8, "max_channels": 32}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, data: str, out: str, report: str) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    from napari_latent.training import TrainSettings, train_model

    result = train_model(data, "vae", out=out, settings=TrainSettings(epochs=3, batch_size=8, device="cpu", lr=2e-3,
                                                                     augment_rotation=0.0, augment_scale=0.0), **TINY)
    first, last = result.history[0]["loss"], result.history[-1]["loss"]
    Path(report).joinpath(f"rank{rank}.txt").write_text(f"{model_fingerprint(result.model)} {result.steps} "
                                                        f"{first} {last}")


@pytest.mark.slow
def test_two_gloo_processes_train_one_shared_model(tiny_cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp.safetensors"
    mp.spawn(_worker, args=(2, _free_port(), str(tiny_cohort), str(out), str(tmp_path)), nprocs=2, join=True)
    reports = [(tmp_path / f"rank{r}.txt").read_text().split() for r in range(2)]
    assert reports[0][0] == reports[1][0]  # identical weights on both ranks after training
    assert reports[0][1] == reports[1][1]
    assert float(reports[0][3]) < float(reports[0][2])  # and it learned
    checkpoint = read_checkpoint(out, device="cpu")
    assert checkpoint.training["world_size"] == 2
    assert model_fingerprint(checkpoint.model) == reports[0][0]  # rank 0 wrote the shared model
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == ["ddp.safetensors"]
    # each rank saw half of the slices per epoch: half the steps of a one-process run
    single_steps = checkpoint.training["train_slices"] // 8
    assert int(reports[0][1]) <= 3 * (single_steps // 2 + 1)


@pytest.mark.slow
def test_the_cli_runs_under_torchrun(tiny_cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.safetensors"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(_free_port()), "-m", "napari_latent", "train", str(tiny_cohort), "--model", "vae", "--out", str(out),
               "--epochs", "1", "--size", "32", "--latent-dim", "8", "--set", "base_channels=8",
               "--set", "max_channels=32", "--batch-size", "8", "--device", "cpu", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("saved") == 1  # only rank 0 reports and writes
    assert read_checkpoint(out, device="cpu").training["world_size"] == 2


def _cache_worker(rank: int, world_size: int, port: int, data: str, cache: str, out: str, report: str) -> None:
    """One rank of a run on an empty slice cache, noting which volumes it slices and which slices it reads."""
    import json

    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
                       "LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    from napari_latent.training import TrainSettings, slice_cache, slice_dataset, train_model

    built: list[str] = []
    read: list[int] = []
    build, getitems = slice_cache.SliceCache._build, slice_dataset.SliceDataset.__getitems__

    def noting_build(self, source, spec, path):
        built.append(Path(source).name)
        return build(self, source, spec, path)

    def noting_getitems(self, indices):
        read.extend(int(i) for i in indices)
        return getitems(self, indices)

    slice_cache.SliceCache._build = noting_build
    slice_dataset.SliceDataset.__getitems__ = noting_getitems
    result = train_model(data, "vae", out=out, cache=cache, settings=TrainSettings(
        epochs=1, batch_size=8, device="cpu", lr=2e-3, augment_rotation=0.0, augment_scale=0.0, workers=0), **TINY)
    Path(report).joinpath(f"cache{rank}.json").write_text(json.dumps(
        {"built": built, "read": read, "validation": result.history[-1]}))


@pytest.mark.slow
def test_ranks_share_the_slicing_read_their_shards_and_validate_together(tiny_cohort: Path, tmp_path: Path) -> None:
    import json

    from napari_latent.progress import run_operation
    from napari_latent.training import TrainSettings, iter_prepare_data
    from napari_latent.training.distributed import DistributedContext
    from napari_latent.training.loop import _build_objective
    from napari_latent.training.monitoring import validation_metrics
    from napari_latent.volumes import SliceSpec

    cache, out = tmp_path / "cache", tmp_path / "ddp.safetensors"
    mp.spawn(_cache_worker, args=(2, _free_port(), str(tiny_cohort), str(cache), str(out), str(tmp_path)), nprocs=2,
             join=True)
    reports = [json.loads((tmp_path / f"cache{r}.json").read_text()) for r in range(2)]
    volumes = sorted(p.name for p in tiny_cohort.iterdir() if p.name.endswith(".nii.gz"))
    # each volume sliced once, by one rank, half each
    assert sorted(reports[0]["built"] + reports[1]["built"]) == volumes
    assert len(reports[0]["built"]) == len(reports[1]["built"]) == len(volumes) // 2
    # each rank read only its shard of the epoch
    data = run_operation(iter_prepare_data(tiny_cohort, SliceSpec(size=32), 0.2, 0, cache=cache))
    n_train = len(data.train)
    first, second = set(reports[0]["read"]), set(reports[1]["read"])
    assert not first & second
    assert len(reports[0]["read"]) <= n_train // 2 and len(reports[1]["read"]) <= n_train // 2
    assert len(first | second) >= n_train - 1 - 2 * 1  # less the odd slice and two one-image batches at most
    # validation: shared out, summed up, the same on both ranks and as one process on the saved model
    assert reports[0]["validation"]["val_mse"] == reports[1]["validation"]["val_mse"]
    model = read_checkpoint(out, device="cpu").model
    objective = _build_objective(model, TrainSettings(device="cpu"), DistributedContext(), torch.device("cpu"))
    alone = validation_metrics(objective, data.validation, torch.device("cpu"))
    assert reports[0]["validation"]["val_mse"] == pytest.approx(alone["val_mse"], rel=1e-6)
    assert reports[0]["validation"]["val_psnr"] == pytest.approx(alone["val_psnr"], rel=1e-6)


@pytest.fixture
def fake_cluster(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Record what the setup asks of CUDA and torch.distributed (there is no GPU here).

    Only the decisions are checked: which device each process takes, in which order, and
    what it gives ``init_process_group``.
    """
    import torch.distributed as dist

    calls: list[tuple] = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("set_device", device)))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kwargs: calls.append(("init", kwargs)))
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    return calls


def test_each_cuda_process_takes_its_local_gpu_before_joining_nccl(fake_cluster: list[tuple],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_latent.training.distributed import distributed_context, distributed_device

    # the second process of the second node of a 2 x 2 run (torchrun --nnodes 2 --nproc_per_node 2)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    device = distributed_device(torch.device("cuda"))
    assert device == torch.device("cuda", 1)
    context = distributed_context(device)
    assert fake_cluster == [("set_device", torch.device("cuda", 1)),
                            ("init", {"backend": "nccl", "rank": 3, "world_size": 4,
                                      "device_id": torch.device("cuda", 1)})]
    assert (context.rank, context.world_size, context.local_rank) == (3, 4, 1)
    assert not context.is_main and context.initialized_here


def test_cpu_processes_join_gloo_without_touching_cuda(fake_cluster: list[tuple],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_latent.training.distributed import distributed_context, distributed_device

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    device = distributed_device(torch.device("cpu"))
    context = distributed_context(device)
    assert device == torch.device("cpu")
    assert fake_cluster == [("init", {"backend": "gloo", "rank": 0, "world_size": 2})]
    assert context.is_main and context.is_distributed


def test_one_process_joins_nothing_and_more_processes_than_gpus_is_refused(
        fake_cluster: list[tuple], monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_latent.errors import UserInputError
    from napari_latent.training.distributed import distributed_context, distributed_device

    assert distributed_device(torch.device("cuda")) == torch.device("cuda")
    assert not distributed_context(torch.device("cuda")).is_distributed
    assert fake_cluster == []
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(UserInputError, match="this node has 2 GPU"):
        distributed_device(torch.device("cuda"))
    monkeypatch.setenv("RANK", "two")
    with pytest.raises(UserInputError, match="RANK='two'"):
        distributed_device(torch.device("cpu"))
