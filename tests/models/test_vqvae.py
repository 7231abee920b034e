"""The VQ-VAE: shapes, quantiser, EMA codebook, dead-code restarts, training, checkpoints."""

from __future__ import annotations

import copy

import pytest
import torch

from napari_latent.errors import UserInputError
from napari_latent.models.base import build_model
from napari_latent.models.checkpoint import load_model, save_checkpoint
from napari_latent.progress import run_operation
from napari_latent.training import TrainSettings, train_model
from napari_latent.training.data import iter_prepare_data
from napari_latent.training.distributed import DistributedContext
from napari_latent.training.objectives.base import objective_class
from napari_latent.training.precision import Precision
from napari_latent.volumes.phantoms import make_phantom_cohort
from napari_latent.volumes.slicing import SliceSpec

TINY = {"image_size": 32, "base_channels": 8, "max_channels": 32}


def make_objective(model, **settings):
    settings = {"device": "cpu", **settings}
    return objective_class(model.objective)(model, TrainSettings(**settings), DistributedContext(),
                                            Precision(torch.device("cpu"), False))


def blobs(n: int, seed: int) -> torch.Tensor:
    """Smooth random images in [-1, 1] (a few Gaussian blobs on a dark background)."""
    gen = torch.Generator().manual_seed(seed)
    grid = torch.linspace(-1, 1, 32)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    images = torch.full((n, 1, 32, 32), -1.0)
    for i in range(n):
        for _ in range(3):
            cy, cx = (torch.rand(2, generator=gen) * 1.2 - 0.6).tolist()
            width = 0.1 + 0.3 * float(torch.rand(1, generator=gen))
            images[i, 0] += 1.5 * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width ** 2))
    return images.clamp(-1, 1)


def test_config_latent_shape_and_validation():
    model = build_model("vqvae", **TINY)
    assert model.latent_shape("z") == (16, 8, 8)
    assert model.latent_dim("z") == 16 * 8 * 8 == model.config.latent_dim
    other = build_model("vqvae", code_dim=4, latent_resolution=4, **TINY)
    assert other.latent_dim() == 64
    assert other.describe()["latent_dims"] == {"z": 64}
    for bad in ({"latent_dim": 5}, {"latent_resolution": 2}, {"latent_resolution": 64}, {"latent_resolution": 12},
                {"codebook_size": 1}, {"ema_decay": 1.0}, {"commitment": -1.0}):
        with pytest.raises(UserInputError):
            build_model("vqvae", **TINY, **bad)
    # the derived latent_dim survives the JSON round trip of checkpoints
    assert type(model.config).from_json(model.config.to_json()) == model.config


def test_shapes_range_and_quantiser():
    torch.manual_seed(0)
    model = build_model("vqvae", **TINY).eval()
    x = blobs(5, 1)
    with torch.no_grad():
        codes = model.encode(x)
        assert codes.shape == (5, 1024)
        recon = model.decode(codes)
        assert recon.shape == (5, 1, 32, 32)
        assert recon.min() >= -1
        assert recon.max() <= 1
        # decode(encode(x)) is the VQ-VAE reconstruction of the training pass
        assert torch.allclose(recon, model(x)["reconstruction"], atol=1e-5)
        q = model.quantize(codes.view(5, 16, 8, 8))
        assert q.z_q.shape == (5, 16, 8, 8)
        assert q.indices.shape == (5, 8, 8)
        assert q.distances.shape == (5, 8, 8, 256)
        assert torch.equal(q.indices, q.distances.argmin(-1))
        # quantising a quantised map is the identity, and decoding it needs no second rounding
        again = model.quantize(q.z_q)
        assert torch.equal(again.indices, q.indices)
        assert torch.equal(again.z_q, q.z_q)
        assert torch.allclose(model.decode(q.z_q.flatten(1)), recon, atol=1e-6)
        assert torch.allclose(model.decode_continuous(q.z_q.flatten(1)), recon, atol=1e-6)
        assert not torch.allclose(model.decode_continuous(codes), recon, atol=1e-3)
        # samples: every position is a codebook vector, drawn with the code frequencies
        model.ema_cluster_size.zero_()
        model.ema_cluster_size[7] = 5.0
        model.ema_cluster_size[9] = 5.0
        z = model.sample_latent(4, torch.Generator().manual_seed(2))
        assert z.shape == (4, 1024)
        used = model.quantize(z.view(4, 16, 8, 8)).indices.unique().tolist()
        assert set(used) == {7, 9}
        assert torch.equal(z, model.sample_latent(4, torch.Generator().manual_seed(2)))
        images = model.decode(z)
        assert images.shape == (4, 1, 32, 32)
        assert images.abs().max() <= 1


def test_first_step_initialises_codebook_from_encoder_outputs():
    torch.manual_seed(1)
    model = build_model("vqvae", **TINY)
    objective = make_objective(model)
    x = blobs(16, 2)
    with torch.no_grad():
        z_e = model.encode_map(x).permute(0, 2, 3, 1).reshape(-1, 16)
    metrics = objective.train_step(x, torch.Generator().manual_seed(0))
    assert model.codebook_initialized.item() == 1.0
    # every code started at one of the batch's encoder outputs (then moved by one EMA step)
    assert metrics["codes_used"] > 1
    assert metrics["perplexity"] > 1
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    assert float(torch.cdist(model.codebook, z_e).min(1).values.max()) < float(z_e.norm(dim=1).mean())


def test_ema_moves_codes_toward_their_assigned_outputs():
    torch.manual_seed(2)
    model = build_model("vqvae", ema_decay=0.5, dead_code_threshold=0.0, **TINY)
    objective = make_objective(model)
    x = blobs(8, 3)
    with torch.no_grad():
        z_e = model.encode_map(x)
        objective.initialize_codebook(z_e, torch.Generator().manual_seed(0))
        model.codebook.add_(0.3 * torch.randn_like(model.codebook))  # off the data
        model.ema_sum.copy_(model.codebook * model.ema_cluster_size[:, None])
        before = model.codebook.clone()
        q = model.quantize(z_e)
        counts, restarted = objective.update_codebook(z_e, q.indices, torch.Generator().manual_seed(1))
    assert restarted == 0
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, 16)
    idx = q.indices.reshape(-1)
    used = counts.nonzero().flatten()
    assert len(used) > 10
    for k in used.tolist():
        target = flat[idx == k].mean(0)
        assert (model.codebook[k] - target).norm() < (before[k] - target).norm()
    unused = (counts == 0).nonzero().flatten()
    assert torch.allclose(model.codebook[unused], before[unused], atol=1e-4)


def test_dead_codes_are_restarted_and_then_used():
    torch.manual_seed(3)
    model = build_model("vqvae", **TINY)
    objective = make_objective(model)
    x = blobs(16, 4)
    objective.train_step(x, torch.Generator().manual_seed(0))
    with torch.no_grad():  # half of the codes far from every encoder output, with no usage
        model.codebook[:128] = 1000.0
        model.ema_sum[:128] = 0.0
        model.ema_cluster_size[:128] = 0.0
        model.ema_cluster_size[128:] = 50.0
        model.ema_sum[128:] = model.codebook[128:] * 50.0
        assert (model.quantize(model.encode_map(x)).indices < 128).sum() == 0
    metrics = objective.train_step(x, torch.Generator().manual_seed(1))
    assert metrics["dead_codes_restarted"] >= 128
    assert model.codebook[:128].abs().max() < 100
    with torch.no_grad():
        revived = model.quantize(model.encode_map(x)).indices
    assert len(revived[revived < 128].unique()) >= 10  # restarted codes attract positions again


def test_objective_state_round_trip_continues_identically():
    torch.manual_seed(4)
    model = build_model("vqvae", **TINY)
    objective = make_objective(model, lr=1e-3)
    x = blobs(8, 5)
    for step in range(2):
        objective.train_step(x, torch.Generator().manual_seed(step))
    twin = copy.deepcopy(model)
    resumed = make_objective(twin, lr=1e-3)
    resumed.load_state_dict(copy.deepcopy(objective.state_dict()))  # as if read from a checkpoint
    a = objective.train_step(x, torch.Generator().manual_seed(9))
    b = resumed.train_step(x, torch.Generator().manual_seed(9))
    assert a == b
    for (name, p), (_, q) in zip(model.state_dict().items(), twin.state_dict().items(), strict=True):
        assert torch.equal(p, q), name


def validation_constant_baseline(folder) -> float:
    """MSE of the best constant image for the validation set: the validation images' own mean.

    No model that predicts one image for every input can do better (the mean *training*
    image, the honest baseline, is at least this bad), so beating it means the model
    reconstructs the individual images.
    """
    data = run_operation(iter_prepare_data(folder, SliceSpec(size=32), 0.2, 0))
    val = data.validation.images
    assert len(val) > 0
    return float((val - val.mean(0)).pow(2).mean())


def test_training_on_phantoms_learns_and_round_trips(tmp_path):
    folder = tmp_path / "cohort"
    make_phantom_cohort(folder, n_subjects=4, size=32, seed=5)
    baseline = validation_constant_baseline(folder)
    settings = TrainSettings(epochs=6, batch_size=16, lr=2e-3, device="cpu", augment_rotation=0, augment_scale=0)
    result = train_model(folder, "vqvae", out=tmp_path / "m.safetensors", settings=settings, **TINY)
    history = result.history
    first, last = history[0]["val_mse"], history[-1]["val_mse"]
    assert last < 0.6 * first
    assert last < baseline, (last, baseline)
    for row in history:
        assert row["perplexity"] > 1
        assert row["codes_used"] > 1
        assert "dead_codes_restarted" in row
        assert abs(row["loss"] - (row["mse"] + 0.25 * row["commitment"])) < 1e-4
    # checkpoint round trip: identical outputs, codebook and EMA state included
    model = result.model.eval()
    loaded = load_model(result.path, device="cpu")
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    x = blobs(4, 6)
    with torch.no_grad():
        assert torch.equal(model.decode(model.encode(x)), loaded.decode(loaded.encode(x)))
        gen_a, gen_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
        assert torch.equal(model.sample_latent(2, gen_a), loaded.sample_latent(2, gen_b))
    again = save_checkpoint(tmp_path / "again.safetensors", loaded)
    assert torch.equal(load_model(again, device="cpu").codebook, model.codebook)
