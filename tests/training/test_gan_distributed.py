"""GAN training under two gloo processes: generator, discriminator and EMA stay identical."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from napari_latent.models.checkpoint import read_checkpoint

from .test_distributed import _free_port

TINY = {"image_size": 32, "latent_dim": 8, "base_channels": 4, "max_channels": 16}


def _digest(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key, tensor in sorted(state.items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _worker(rank: int, world_size: int, port: int, data: str, out: str, report: str) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    from napari_latent.models.base import build_model
    from napari_latent.training import TrainSettings, train_model

    # different initial weights on each rank: the objective must broadcast rank 0's
    torch.manual_seed(rank)
    model = build_model("dcgan", r1_interval=2, r1_gamma=1.0, **TINY)
    settings = TrainSettings(epochs=1, batch_size=8, device="cpu", augment_rotation=0.0, augment_scale=0.0)
    result = train_model(data, model, out=out, settings=settings)
    digests = [_digest(model.generator.state_dict()), _digest(model.discriminator.state_dict()),
               _digest(result.model.generator.state_dict())]
    r1 = sum(1 for row in result.history if "r1" in row)
    Path(report).joinpath(f"rank{rank}.txt").write_text(" ".join([*digests, str(result.steps), str(r1)]))


@pytest.mark.slow
def test_two_gloo_processes_keep_generator_discriminator_and_ema_identical(tiny_cohort: Path,
                                                                           tmp_path: Path) -> None:
    out = tmp_path / "gan.safetensors"
    mp.spawn(_worker, args=(2, _free_port(), str(tiny_cohort), str(out), str(tmp_path)), nprocs=2, join=True)
    reports = [(tmp_path / f"rank{r}.txt").read_text().split() for r in range(2)]
    assert reports[0] == reports[1]  # raw G (with batch-norm statistics), D, EMA and step counts
    generator, discriminator, ema, steps, r1 = reports[0]
    assert int(steps) > 2 and int(r1) == 1
    assert ema != generator
    checkpoint = read_checkpoint(out, device="cpu")
    assert checkpoint.training["world_size"] == 2
    assert _digest(checkpoint.model.generator.state_dict()) == generator
    assert _digest(checkpoint.model.discriminator.state_dict()) == discriminator
    assert _digest(checkpoint.extras["ema"]) == ema
