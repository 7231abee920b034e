"""Mixed precision: which dtype a run picks, one loss scaler per optimiser, scaler states in checkpoints."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from napari_latent.errors import UserInputError
from napari_latent.models.base import build_model, model_class, trainable_model_names
from napari_latent.models.checkpoint import read_checkpoint
from napari_latent.training import TrainSettings, train_model
from napari_latent.training.distributed import DistributedContext
from napari_latent.training.objectives.base import objective_class
from napari_latent.training.precision import Precision, resolve_precision

CPU, CUDA, MPS = torch.device("cpu"), torch.device("cuda"), torch.device("mps")
TINY = {"image_size": 32, "latent_dim": 8, "base_channels": 8, "max_channels": 32}


@pytest.fixture
def bf16_gpu(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """Make ``torch.cuda.is_bf16_supported`` give ``gpu.answer`` (there is no GPU here); ``gpu.asked``
    records its ``including_emulation`` arguments."""
    gpu = SimpleNamespace(answer=True, asked=[])

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        gpu.asked.append(including_emulation)
        return gpu.answer

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    return gpu


def cpu_fp16() -> Precision:
    """fp16 autocast with loss scalers on the CPU. The engine offers fp16 on CUDA only, but torch runs
    float16 autocast and GradScaler on the CPU too, so the scaler logic is tested here with real numbers."""
    precision = Precision(CPU, "fp32")
    precision.mode, precision.dtype = "fp16", torch.float16
    return precision


def test_auto_is_bf16_on_gpus_with_native_bfloat16(bf16_gpu: SimpleNamespace) -> None:
    assert resolve_precision("auto", CUDA) == "bf16"
    assert resolve_precision("auto", CUDA, allowed=("bf16",)) == "bf16"  # StyleGAN too
    assert resolve_precision("bf16", CUDA) == "bf16"
    assert bf16_gpu.asked == [False, False, False]  # emulated bf16 (pre-Ampere GPUs) does not count


def test_auto_is_fp16_on_older_gpus_and_fp32_for_models_refusing_it(bf16_gpu: SimpleNamespace) -> None:
    bf16_gpu.answer = False
    assert resolve_precision("auto", CUDA) == "fp16"
    assert resolve_precision("auto", CUDA, allowed=model_class("stylegan").mixed_precision) == "fp32"
    with pytest.raises(UserInputError, match="no native bfloat16"):
        resolve_precision("bf16", CUDA)


def test_auto_is_fp32_off_cuda_and_the_old_amp_flag_reads() -> None:
    assert resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("auto", MPS) == "fp32"
    assert resolve_precision(True, CPU) == "fp32" and resolve_precision(False, CUDA) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"  # offered explicitly on the CPU
    assert resolve_precision("fp32", CUDA) == "fp32"


@pytest.mark.parametrize("requested, device, allowed, message", [
    ("fp16", CPU, ("bf16", "fp16"), "needs a CUDA device"),
    ("bf16", MPS, ("bf16", "fp16"), "offered on CUDA and the CPU"),
    ("fp16", CUDA, ("bf16",), "does not train in fp16"),
    ("half", CPU, ("bf16", "fp16"), "unknown precision"),
])
def test_impossible_precisions_are_one_clear_error(requested: str, device: torch.device, allowed: tuple,
                                                   message: str) -> None:
    with pytest.raises(UserInputError, match=message):
        resolve_precision(requested, device, allowed)


def test_stylegan_refuses_fp16_and_every_other_family_allows_it() -> None:
    for name in trainable_model_names():  # imported families are not trained here
        allowed = model_class(name).mixed_precision
        assert "bf16" in allowed
        assert ("fp16" in allowed) == (name != "stylegan"), name


def test_bf16_autocast_runs_on_the_cpu() -> None:
    precision = Precision(CPU, "bf16")
    conv = nn.Conv2d(1, 4, 3)
    with precision.autocast():
        out = conv(torch.randn(2, 1, 8, 8))
    assert precision.enabled and not precision.scaling and out.dtype == torch.bfloat16
    assert precision.scaler(torch.optim.SGD(conv.parameters(), lr=0.1)) is None
    with Precision(CPU, "auto").autocast():
        assert conv(torch.randn(2, 1, 8, 8)).dtype == torch.float32


@pytest.mark.slow  # 4-7 s, 30 s when first in a busy session (oneDNN builds its bf16 kernels)
def test_a_vae_trains_in_bf16_on_the_cpu(tiny_cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "bf16.safetensors"
    settings = TrainSettings(epochs=1, batch_size=16, device="cpu", lr=2e-3, precision="bf16", augment_rotation=0.0,
                             augment_scale=0.0)
    events: list = []
    result = train_model(tiny_cohort, "vae", out=out, settings=settings, progress=events.append, **TINY)
    losses = [e.metrics["loss"] for e in events if e.stage == "train"]
    assert len(losses) >= 8 and torch.isfinite(torch.tensor([*losses, result.history[-1]["val_mse"]])).all()
    assert sum(losses[-3:]) < 0.7 * sum(losses[:3])  # it learns
    facts = read_checkpoint(out, device="cpu").training
    assert facts["precision"] == "bf16" and facts["settings"]["precision"] == "bf16"


def test_a_gan_has_one_scaler_per_optimiser_and_checkpoints_both() -> None:
    model = build_model("dcgan", **TINY)
    precision = cpu_fp16()
    objective = objective_class(model.objective)(model, TrainSettings(), DistributedContext(), precision)
    precision.attach(objective.optimizers())
    images = torch.rand(8, 1, 32, 32) * 2 - 1
    for step in range(3):
        metrics = objective.train_step(images, torch.Generator().manual_seed(step))
        assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values()), metrics
    g, d = precision.scaler(objective.optimizer_g), precision.scaler(objective.optimizer_d)
    assert g is not None and d is not None and g is not d
    state = objective.state_dict()["precision"]["scalers"]
    assert set(state) == {"generator", "discriminator"}
    # the first R1 pass overflows at the initial scale 2^16: only the discriminator's scale backs off
    assert state["generator"]["scale"] == 2.0**16
    assert state["discriminator"]["scale"] < 2.0**16

    fresh = build_model("dcgan", **TINY)
    restored = cpu_fp16()
    other = objective_class(fresh.objective)(fresh, TrainSettings(), DistributedContext(), restored)
    restored.attach(other.optimizers())
    other.load_state_dict(objective.state_dict())
    assert restored.scaler(other.optimizer_d).get_scale() == state["discriminator"]["scale"]
    assert restored.scaler(other.optimizer_g).get_scale() == 2.0**16


def test_an_overflow_backs_off_only_its_own_optimisers_scale() -> None:
    a, b = nn.Linear(3, 1), nn.Linear(3, 1)
    opt_a, opt_b = torch.optim.SGD(a.parameters(), lr=0.1), torch.optim.SGD(b.parameters(), lr=0.1)
    precision = cpu_fp16()
    precision.attach({"a": opt_a, "b": opt_b})
    x = torch.ones(2, 3)
    before = a.weight.detach().clone()
    precision.backward(a(x).sum() * float("inf"), opt_a)
    precision.step(opt_a)
    precision.backward(b(x).sum(), opt_b)
    precision.step(opt_b)
    assert precision.scaler(opt_a).get_scale() == 2.0**15  # skipped and halved
    assert torch.equal(a.weight, before)
    assert precision.scaler(opt_b).get_scale() == 2.0**16
    with pytest.raises(TypeError, match="name the optimiser"):
        precision.backward(b(x).sum())


def test_one_loss_for_two_optimisers_gives_each_its_own_scale() -> None:
    torch.manual_seed(0)
    enc, dec = nn.Linear(4, 2), nn.Linear(2, 4)
    x = torch.randn(5, 4)
    loss_of = lambda: (dec(enc(x)) - x).pow(2).mean()  # noqa: E731
    reference = torch.autograd.grad(loss_of(), [*enc.parameters(), *dec.parameters()])

    opt_e, opt_d = torch.optim.SGD(enc.parameters(), lr=0.1), torch.optim.SGD(dec.parameters(), lr=0.1)
    precision = cpu_fp16()
    precision.attach({"encoder": opt_e, "decoder": opt_d})
    state = torch.amp.GradScaler("cpu").state_dict()
    precision.load_state_dict({"scalers": {"encoder": {**state, "scale": 2.0**10},
                                           "decoder": {**state, "scale": 2.0**4}}})
    precision.backward(loss_of(), opt_e, opt_d)
    grads = [p.grad for p in [*enc.parameters(), *dec.parameters()]]
    for grad, ref, scale in zip(grads, reference, [2.0**10] * 2 + [2.0**4] * 2, strict=True):
        torch.testing.assert_close(grad, ref * scale, rtol=1e-6, atol=0)
    expected = [p.detach() - 0.1 * g for p, g in zip([*enc.parameters(), *dec.parameters()], reference, strict=True)]
    precision.step(opt_e)
    precision.step(opt_d)
    for p, e in zip([*enc.parameters(), *dec.parameters()], expected, strict=True):
        torch.testing.assert_close(p.detach(), e, rtol=1e-6, atol=1e-7)
    with pytest.raises(RuntimeError, match="zeroed"):
        precision.backward(loss_of(), opt_e, opt_d)  # gradients left from the last pass


def test_a_checkpoint_with_one_shared_scaler_state_still_resumes() -> None:
    model = build_model("introvae", **TINY)
    precision = cpu_fp16()
    objective = objective_class(model.objective)(model, TrainSettings(), DistributedContext(), precision)
    precision.attach(objective.optimizers())
    old = objective.state_dict()
    old["precision"] = {"scale": 512.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                        "_growth_tracker": 7}  # what a checkpoint of the shared-scaler versions holds
    objective.load_state_dict(old)
    for optimizer in objective.optimizers().values():
        assert precision.scaler(optimizer).get_scale() == 512.0
        assert precision.scaler(optimizer).state_dict()["_growth_tracker"] == 7
    fp32 = Precision(CPU, "fp32")
    fp32.load_state_dict(old["precision"], objective.optimizers())  # a run resumed in fp32 ignores scalers
    assert fp32.state_dict(objective.optimizers()) == {}


def test_introvae_trains_with_two_scalers_in_warmup_and_in_the_game() -> None:
    model = build_model("introvae", **TINY, warmup_epochs=1)
    precision = cpu_fp16()
    objective = objective_class(model.objective)(model, TrainSettings(lr=1e-3), DistributedContext(), precision)
    precision.attach(objective.optimizers())
    images = torch.rand(8, 1, 32, 32) * 2 - 1
    warm = objective.train_step(images, torch.Generator().manual_seed(0))
    objective.on_epoch_end(0)
    game = objective.train_step(images, torch.Generator().manual_seed(1))
    assert warm["warmup"] == 1.0 and game["warmup"] == 0.0
    assert all(torch.isfinite(torch.tensor(v)) for v in [*warm.values(), *game.values()])
    scalers = objective.state_dict()["precision"]["scalers"]
    assert set(scalers) == {"encoder", "decoder"}
