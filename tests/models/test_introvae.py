"""IntroVAE: model layout, warm-up as a plain VAE, the two separate updates, training."""

from __future__ import annotations

import copy

import pytest
import torch

from napari_latent.errors import UserInputError
from napari_latent.models.base import build_model
from napari_latent.models.vae import kl_to_standard_normal
from napari_latent.progress import run_operation
from napari_latent.training import TrainSettings, train_model
from napari_latent.training.data import iter_prepare_data
from napari_latent.training.distributed import DistributedContext
from napari_latent.training.objectives.base import objective_class
from napari_latent.training.precision import Precision
from napari_latent.volumes.phantoms import make_phantom_cohort
from napari_latent.volumes.slicing import SliceSpec

TINY = {"image_size": 32, "base_channels": 8, "max_channels": 32, "latent_dim": 8}


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


def snapshot(parameters) -> list[torch.Tensor]:
    return [p.detach().clone() for p in parameters]


def unchanged(parameters, before) -> bool:
    return all(torch.equal(p, b) for p, b in zip(parameters, before, strict=True))


def untouched_count(parameters, before) -> int:
    return sum(torch.equal(p, b) for p, b in zip(parameters, before, strict=True))


def test_model_is_a_vae_with_two_halves():
    model = build_model("introvae", **TINY).eval()
    vae = build_model("vae", **TINY)
    assert model.name == "introvae"
    assert model.objective == "introvae"
    assert model.has_encoder
    assert model.spaces == ("z",)
    assert model.latent_dim("z") == 8
    assert model.latent_shape() == (8,)
    # same weights as a VAE, nothing registered twice
    assert list(model.state_dict()) == list(vae.state_dict())
    enc, dec = model.encoder_parameters(), model.decoder_parameters()
    assert {id(p) for p in enc}.isdisjoint({id(p) for p in dec})
    assert {id(p) for p in enc} | {id(p) for p in dec} == {id(p) for p in model.parameters()}
    x = blobs(4, 0)
    with torch.no_grad():
        codes = model.encode(x)
        assert codes.shape == (4, 8)
        assert torch.equal(model.enc(x)[0], codes)
        images = model.decode(codes)
        assert images.shape == (4, 1, 32, 32)
        assert images.min() >= -1
        assert images.max() <= 1
        assert torch.equal(model.dec(codes), images)
        samples = model.decode(model.sample_latent(3, torch.Generator().manual_seed(0)))
        assert samples.shape == (3, 1, 32, 32)
        assert samples.abs().max() <= 1
    copied = copy.deepcopy(model)  # the halves follow the copy, not the original
    assert copied.enc.encoder is copied.encoder
    assert copied.dec.decoder is copied.decoder
    for bad in ({"margin": 0.0}, {"alpha": -1.0}, {"recon_weight": 0.0}, {"warmup_epochs": -1}):
        with pytest.raises(UserInputError):
            build_model("introvae", **TINY, **bad)


def test_warmup_is_the_plain_vae_objective():
    torch.manual_seed(0)
    model = build_model("introvae", warmup_epochs=1, **TINY)
    vae = build_model("vae", **TINY)
    vae.load_state_dict(model.state_dict())
    intro_objective, vae_objective = make_objective(model, lr=1e-3), make_objective(vae, lr=1e-3)
    x = blobs(8, 1)
    for step in range(2):
        a = intro_objective.train_step(x, torch.Generator().manual_seed(step))
        b = vae_objective.train_step(x, torch.Generator().manual_seed(step))
        assert a["warmup"] == 1.0
        assert "kl_sampled" not in a
        assert "kl_reconstructed" not in a
        assert a["loss_encoder"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["mse"] == pytest.approx(b["mse"], rel=1e-5)
        assert a["kl"] == pytest.approx(b["kl"], rel=1e-5)
    # two Adams over the two halves make exactly the VAE's one Adam update
    for (name, p), q in zip(model.state_dict().items(), vae.state_dict().values(), strict=True):
        assert torch.allclose(p, q, atol=1e-6), name
    intro_objective.on_epoch_end(0)
    metrics = intro_objective.train_step(x, torch.Generator().manual_seed(5))
    assert metrics["warmup"] == 0.0
    assert {"loss_encoder", "loss_decoder", "mse", "kl", "kl_reconstructed", "kl_sampled"} <= set(metrics)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())


def test_encoder_update_moves_only_the_encoder_and_decoder_update_only_the_decoder():
    torch.manual_seed(1)
    model = build_model("introvae", **TINY)
    objective = make_objective(model, lr=1e-3)
    enc, dec = model.encoder_parameters(), model.decoder_parameters()
    x = blobs(8, 2)
    enc_0, dec_0 = snapshot(enc), snapshot(dec)
    pending = objective.encoder_update(x, torch.Generator().manual_seed(0))
    assert unchanged(dec, dec_0)
    assert untouched_count(enc, enc_0) == 0
    assert all(p.grad is None for p in model.parameters())
    enc_1, dec_1 = snapshot(enc), snapshot(dec)
    metrics = objective.decoder_update(x, pending)
    assert unchanged(enc, enc_1)
    assert untouched_count(dec, dec_1) == 0
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    # both optimisers stepped once, each over its own half only
    states = objective.optimizers()
    assert [int(s["step"]) for s in states["encoder"].state.values()] == [1] * len(enc)
    assert [int(s["step"]) for s in states["decoder"].state.values()] == [1] * len(dec)


def kl_of(model, images) -> float:
    with torch.no_grad():
        mean, logvar = model.enc(images)
        return float(kl_to_standard_normal(mean, logvar).sum(1).mean())


def test_the_game_pushes_fakes_away_for_the_encoder_and_back_for_the_decoder():
    torch.manual_seed(2)
    model = build_model("introvae", margin=1000.0, alpha=1.0, beta=0.0, recon_weight=1e-6, **TINY)
    objective = make_objective(model, lr=3e-4)
    x = blobs(16, 3)
    with torch.no_grad():
        fakes = model.decode(model.sample_latent(16, torch.Generator().manual_seed(7)))
    start = kl_of(model, fakes)
    # encoder updates alone: the KL of generated images rises (they are pushed toward the margin)
    for step in range(3):
        objective.encoder_update(x, torch.Generator().manual_seed(step))
    pushed = kl_of(model, fakes)
    assert pushed > start
    # decoder updates alone: its images become more "real" to the (now fixed) encoder
    z_p = model.sample_latent(16, torch.Generator().manual_seed(7))
    with torch.no_grad():
        before = kl_of(model, model.decode(z_p))
    for step in range(3):
        z = torch.randn(16, 8, generator=torch.Generator().manual_seed(10 + step))
        pending = {"z": z, "z_p": z_p, "loss_encoder": 0.0, "kl": 0.0, "hinge": 0.0}
        objective.decoder_update(x, pending)
    with torch.no_grad():
        after = kl_of(model, model.decode(z_p))
    assert after < before


def test_objective_state_round_trip_continues_identically():
    torch.manual_seed(3)
    model = build_model("introvae", warmup_epochs=1, **TINY)
    objective = make_objective(model, lr=1e-3)
    x = blobs(8, 4)
    objective.train_step(x, torch.Generator().manual_seed(0))
    objective.on_epoch_end(0)
    objective.train_step(x, torch.Generator().manual_seed(1))
    state = copy.deepcopy(objective.state_dict())  # as if read from a checkpoint
    assert state["epochs_done"] == 1
    assert set(state["optimizers"]) == {"encoder", "decoder"}
    twin = copy.deepcopy(model)
    resumed = make_objective(twin, lr=1e-3)
    resumed.load_state_dict(state)
    assert not resumed.in_warmup
    a = objective.train_step(x, torch.Generator().manual_seed(9))
    b = resumed.train_step(x, torch.Generator().manual_seed(9))
    assert a == b
    assert a["warmup"] == 0.0
    for (name, p), q in zip(model.state_dict().items(), twin.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_training_on_phantoms_warms_up_then_plays_and_learns(tmp_path):
    folder = tmp_path / "cohort"
    make_phantom_cohort(folder, n_subjects=4, size=32, seed=5)
    data = run_operation(iter_prepare_data(folder, SliceSpec(size=32), 0.2, 0))
    val = data.validation.images
    # the best constant image for the validation set (its own mean): no model that ignores
    # its input does better, and the mean training image (the honest baseline) does worse
    baseline = float((val - val.mean(0)).pow(2).mean())
    settings = TrainSettings(epochs=10, batch_size=16, lr=2e-3, device="cpu", augment_rotation=0, augment_scale=0)
    result = train_model(folder, "introvae", settings=settings, warmup_epochs=2, margin=20.0, **TINY)
    history = result.history
    assert [row["warmup"] for row in history] == [1.0, 1.0] + [0.0] * 8
    for row in history[2:]:
        for key in ("loss_encoder", "loss_decoder", "mse", "kl", "kl_reconstructed", "kl_sampled", "hinge"):
            assert torch.isfinite(torch.tensor(row[key])), key
    first, last = history[0]["val_mse"], history[-1]["val_mse"]
    assert last < 0.6 * first
    assert last < baseline, (last, baseline)
