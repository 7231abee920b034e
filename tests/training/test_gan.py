"""GAN training: DCGAN learns, lazy R1, the generator EMA, DiffAugment, resume, previews."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from napari_latent.analysis.frechet import frechet_distance
from napari_latent.errors import UserInputError
from napari_latent.models.base import build_model, model_names
from napari_latent.models.checkpoint import load_model, read_checkpoint
from napari_latent.progress import ProgressEvent, StopFlag, run_operation
from napari_latent.training import TrainSettings, iter_prepare_data, train_model
from napari_latent.training.diffaugment import diff_augment
from napari_latent.training.distributed import DistributedContext
from napari_latent.training.objectives.base import objective_class
from napari_latent.training.precision import Precision
from napari_latent.volumes import SliceSpec
from napari_latent.volumes.phantoms import make_phantom_cohort

TINY = {"image_size": 32, "base_channels": 8, "max_channels": 32, "latent_dim": 16}
FAST = {"batch_size": 16, "device": "cpu", "augment_rotation": 0.0, "augment_scale": 0.0}


@pytest.fixture(scope="module")
def gan_data(tmp_path_factory):
    """Slices of 6 phantom subjects (32 pixels), all for training."""
    folder = tmp_path_factory.mktemp("gan_cohort")
    make_phantom_cohort(folder, n_subjects=6, size=32, seed=1)
    return run_operation(iter_prepare_data(folder, SliceSpec(size=32), val_fraction=0.0, seed=0))


@pytest.fixture(scope="module")
def trained(gan_data, tmp_path_factory):
    """One tiny DCGAN run (8 epochs, previews every 5 steps), with its initial model."""
    out = tmp_path_factory.mktemp("gan_run") / "dcgan.safetensors"
    events: list[ProgressEvent] = []
    settings = TrainSettings(epochs=8, preview_every=5, seed=0, **FAST)
    with torch.random.fork_rng(devices=[]):  # the engine builds its model from the seed the same way
        torch.manual_seed(settings.seed)
        initial = build_model("dcgan", **TINY)
    result = train_model(gan_data, "dcgan", out=out, settings=settings, progress=events.append, **TINY)
    return SimpleNamespace(result=result, events=events, initial=initial, out=out, settings=settings)


def _objective(model, **settings):
    return objective_class("gan")(model, TrainSettings(**{**FAST, **settings}), DistributedContext(),
                                  Precision(torch.device("cpu"), False))


def _samples(model, n: int = 200) -> torch.Tensor:
    with torch.no_grad():
        return model.decode(model.sample_latent(n, torch.Generator().manual_seed(0)))


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 0.0) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), rtol=0, atol=atol) for k in a)


# -- the model ------------------------------------------------------------------------------------

def test_dcgan_shapes_registry_and_deterministic_decode() -> None:
    assert "dcgan" in model_names()
    model = build_model("dcgan", **TINY)
    assert model.family == "gan" and model.objective == "gan" and model.spaces == ("z",)
    z = torch.randn(5, 16, generator=torch.Generator().manual_seed(1))
    model.train()  # decode uses running batch-norm statistics whatever the mode
    images = model.decode(z)
    assert images.shape == (5, 1, 32, 32) and images.abs().max() <= 1
    torch.testing.assert_close(model.decode(z[:1]), images[:1], rtol=0, atol=1e-6)
    assert model.generator.training  # the mode is restored
    assert model.discriminate(images).shape == (5,)
    for size in (64, 128):
        big = build_model("dcgan", image_size=size, base_channels=4, max_channels=16, latent_dim=8)
        assert big.decode(torch.zeros(2, 8)).shape == (2, 1, size, size)
        assert big.discriminate(torch.zeros(2, 1, size, size)).shape == (2,)
    with pytest.raises(UserInputError, match="DiffAugment"):
        build_model("dcgan", diffaugment="translation,saturation", **TINY)
    with pytest.raises(UserInputError, match="r1_interval"):
        build_model("dcgan", r1_interval=0, **TINY)


# -- training ---------------------------------------------------------------------------------------

def test_a_tiny_dcgan_trains_and_its_samples_approach_the_data(trained, gan_data) -> None:
    result = trained.result
    train = [e.metrics for e in trained.events if e.stage == "train"]
    assert len(train) == result.steps == 80
    for row in train:
        for key in ("loss_d", "loss_g", "d_real", "d_fake"):
            assert math.isfinite(row[key]), (key, row)
    # the discriminator learns (below chance, 2 log 2) and the generator does not diverge
    assert min(row["loss_d"] for row in train) < math.log(4)
    assert max(row["loss_g"] for row in train) < 6.0 and result.history[-1]["loss_g"] < 4.0
    assert result.history[-1]["d_real"] > result.history[-1]["d_fake"]
    # GANs have no validation: epoch rows and final metrics are the mean training losses
    assert {"loss_d", "loss_g", "d_real", "d_fake"} <= set(result.final_metrics)
    assert result.final_metrics["loss_d"] == pytest.approx(result.history[-1]["loss_d"])
    # samples of the trained EMA generator are much closer to the data than at the start
    real = gan_data.train.images
    initial, final = _samples(trained.initial), _samples(result.model)
    before, after = frechet_distance(real, initial)[0], frechet_distance(real, final)[0]
    assert after < 0.5 * before, (before, after)
    mean_image = real.mean(0)
    assert (final.mean(0) - mean_image).pow(2).mean() < 0.5 * (initial.mean(0) - mean_image).pow(2).mean()


def test_previews_are_sample_grids_every_n_steps(trained) -> None:
    train = [e for e in trained.events if e.stage == "train"]
    with_preview = [e.step for e in train if e.preview is not None]
    assert with_preview == [s for s in range(1, 81) if s % 5 == 0]
    grid = train[4].preview
    assert grid.shape == (32, 8 * 32)  # one row of 8 generated samples
    assert grid.min() >= -1 and grid.max() <= 1 and grid.std() > 0
    validate = [e for e in trained.events if e.stage == "validate"]
    assert len(validate) == 8 and all(e.preview is not None for e in validate)
    assert {"loss_d", "loss_g"} <= set(validate[0].metrics)


def test_the_checkpoint_holds_the_ema_and_loads_it(trained) -> None:
    checkpoint = read_checkpoint(trained.out, device="cpu")
    ema = checkpoint.extras["ema"]
    raw = checkpoint.model.generator.state_dict()
    assert ema.keys() == raw.keys()
    assert not _close(ema, raw, atol=1e-6)  # the average lags the raw weights
    # batch-norm statistics are copied, not averaged
    for key in raw:
        if "running" in key:
            torch.testing.assert_close(ema[key], raw[key], rtol=0, atol=0)
    loaded = load_model(trained.out, device="cpu")
    assert _close(loaded.generator.state_dict(), ema)
    assert _close(loaded.discriminator.state_dict(), checkpoint.model.discriminator.state_dict())
    # training returns the same EMA model
    assert _close(trained.result.model.generator.state_dict(), ema)
    assert not trained.result.model.training
    assert trained.result.model.fingerprint == loaded.fingerprint


def test_model_for_use_has_the_ema_weights_and_samples_use_them() -> None:
    torch.manual_seed(0)
    model = build_model("dcgan", **TINY)
    objective = _objective(model)
    images = torch.rand(8, 1, 32, 32) * 2 - 1
    for step in range(3):
        objective.train_step(images, torch.Generator().manual_seed(step))
    final = objective.model_for_use()
    assert final is not model and not final.training
    assert _close(final.generator.state_dict(), objective.ema.state_dict())
    assert not _close(final.generator.state_dict(), model.generator.state_dict(), atol=1e-7)
    samples = objective.samples(4, torch.Generator().manual_seed(3))
    torch.testing.assert_close(samples, final.decode(final.sample_latent(4, torch.Generator().manual_seed(3))))
    assert model.generator is objective.generator_module  # the swap for sampling is undone


def test_r1_runs_on_the_lazy_schedule_and_gamma_zero_skips_it() -> None:
    torch.manual_seed(0)
    images = torch.rand(8, 1, 32, 32) * 2 - 1
    objective = _objective(build_model("dcgan", r1_interval=3, r1_gamma=1.0, **TINY))
    rows = [objective.train_step(images, torch.Generator().manual_seed(s)) for s in range(7)]
    assert [("r1" in row) for row in rows] == [True, False, False, True, False, False, True]
    assert all(row["r1"] > 0 for row in rows if "r1" in row)
    # the lazy schedule's Adam adjustment (StyleGAN2): lr * c, beta ** c with c = 3 / 4
    group = objective.optimizer_d.param_groups[0]
    assert group["lr"] == pytest.approx(2e-4 * 0.75) and group["betas"][1] == pytest.approx(0.999 ** 0.75)
    assert objective.optimizer_g.param_groups[0]["lr"] == pytest.approx(2e-4)

    off = _objective(build_model("dcgan", r1_gamma=0.0, r1_interval=1, **TINY), lr=1e-3)
    rows = [off.train_step(images, torch.Generator().manual_seed(s)) for s in range(3)]
    assert not any("r1" in row for row in rows)
    assert off.optimizer_d.param_groups[0]["lr"] == pytest.approx(1e-3)  # settings.lr overrides; no adjustment


def test_resume_matches_an_uninterrupted_gan_run(gan_data, tmp_path: Path) -> None:
    settings = {"epochs": 2, "checkpoint_every": 3, "seed": 4, **FAST, "augment_rotation": 3.0}
    model = {**TINY, "r1_interval": 4, "diffaugment": "translation,cutout,color"}
    full_path = tmp_path / "full.safetensors"
    full = train_model(gan_data, "dcgan", out=full_path, settings=TrainSettings(**settings), **model)

    stop = StopFlag()
    cut = tmp_path / "cut.safetensors"

    def cancel_midway(event: ProgressEvent) -> None:
        if event.stage == "train" and event.step == 7:
            stop.request()

    partial = train_model(gan_data, "dcgan", out=cut, settings=TrainSettings(**settings), progress=cancel_midway,
                          stop=stop, **model)
    assert partial.stopped and partial.steps == 7
    resumed = train_model(gan_data, "dcgan", out=cut, settings=TrainSettings(**settings), resume=True)
    assert resumed.steps == full.steps and not resumed.stopped
    a, b = read_checkpoint(full_path, device="cpu"), read_checkpoint(cut, device="cpu")
    for part in ("generator", "discriminator"):
        sa, sb = getattr(a.model, part).state_dict(), getattr(b.model, part).state_dict()
        for key in sa:
            torch.testing.assert_close(sb[key], sa[key], rtol=0, atol=1e-6, msg=f"{part}.{key}")
    for key in a.extras["ema"]:
        torch.testing.assert_close(b.extras["ema"][key], a.extras["ema"][key], rtol=0, atol=1e-6, msg=f"ema.{key}")
    assert b.state["objective"]["steps"] == a.state["objective"]["steps"] == full.steps
    assert [h["loss_d"] for h in resumed.history] == pytest.approx([h["loss_d"] for h in full.history], abs=1e-6)


# -- DiffAugment ------------------------------------------------------------------------------------

def _phantom_batch() -> torch.Tensor:
    images = torch.full((6, 1, 32, 32), -1.0)
    images[:, :, 8:24, 10:22] = torch.linspace(0, 1, 6)[:, None, None, None]
    return images


def test_diffaugment_is_seeded_differentiable_and_keeps_the_size() -> None:
    images = _phantom_batch().requires_grad_(True)
    for policy in ("translation", "cutout", "brightness", "contrast", "color", "translation,cutout,color"):
        out = diff_augment(images, policy, torch.Generator().manual_seed(7))
        assert out.shape == images.shape, policy
        again = diff_augment(images, policy, torch.Generator().manual_seed(7))
        torch.testing.assert_close(out, again, rtol=0, atol=0)
        other = diff_augment(images, policy, torch.Generator().manual_seed(8))
        assert not torch.equal(out, other), policy
        (grad,) = torch.autograd.grad((out * torch.linspace(0.5, 1.5, 32)).sum(), images)
        assert grad.abs().sum() > 0, policy
    assert diff_augment(images, "", torch.Generator()) is images
    with pytest.raises(UserInputError, match="saturation"):
        diff_augment(images, "translation,saturation", torch.Generator())


def test_translation_shifts_with_background_and_cutout_fills_background() -> None:
    images = _phantom_batch()
    moved = diff_augment(images, "translation", torch.Generator().manual_seed(1))
    for original, shifted in zip(images, moved):
        # a whole-pixel shift of at most 4 pixels: some shift reproduces the image, background padded
        matches = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)
                   if torch.equal(torch.roll(original, (dy, dx), dims=(1, 2)), shifted)]
        assert matches, "not a pure translation"
    assert moved.min() == -1.0
    cut = diff_augment(images, "cutout", torch.Generator().manual_seed(2))
    changed = cut != images
    assert changed.any()
    assert (cut[changed] == -1.0).all()  # only set to background
    per_image = (cut == -1.0).flatten(1).sum(1) - (images == -1.0).flatten(1).sum(1)
    assert (per_image <= 16 * 16).all()  # at most a half-size square
    # the gradient is the keep mask: 1 outside the square, 0 inside (where the output is background)
    x = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(diff_augment(x, "cutout", torch.Generator().manual_seed(2)).sum(), x)
    assert set(grad.unique().tolist()) == {0.0, 1.0}
    assert (grad[changed] == 0).all()
    torch.testing.assert_close(cut, torch.where(grad == 1, images, torch.full_like(images, -1.0)), rtol=0, atol=0)


# -- StyleGAN (when present) ------------------------------------------------------------------------

def test_a_tiny_stylegan_trains_when_available(gan_data, tmp_path: Path) -> None:
    if "stylegan" not in model_names():
        pytest.skip("napari_latent.models.stylegan is not available")
    out = tmp_path / "stylegan.safetensors"
    torch.manual_seed(0)
    before = build_model("stylegan", **TINY)
    w_avg = [b.clone() for n, b in before.generator.named_buffers() if "w_avg" in n]
    result = train_model(gan_data, "stylegan", out=out, settings=TrainSettings(epochs=1, **FAST), **TINY)
    for row in result.history:
        assert all(math.isfinite(v) for v in row.values())
    after = [b for n, b in read_checkpoint(out, device="cpu").model.generator.named_buffers() if "w_avg" in n]
    assert w_avg and not all(torch.equal(a, b) for a, b in zip(w_avg, after))
    loaded = load_model(out, device="cpu")
    assert loaded.name == "stylegan"
    assert loaded.decode(loaded.sample_latent(2, torch.Generator().manual_seed(0))).shape == (2, 1, 32, 32)
