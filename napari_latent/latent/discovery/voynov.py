"""Unsupervised discovery of directions that a classifier can tell apart (Voynov & Babenko 2020).

Voynov & Babenko (2020), "Unsupervised Discovery of Interpretable Directions in the GAN
Latent Space", ICML; official code github.com/anvoynov/GANLatentDiscovery (``trainer.py``,
``latent_deformator.py``, ``latent_shift_predictor.py``). Schön, Selvan & Petersen (2022)
used it on thoracic CT slices (``proj`` deformator, LeNet reconstructor, 3k steps, batch 128).

A *deformator* ``A`` (a ``d x K`` matrix) and a *reconstructor* ``R`` (a small CNN) are
trained jointly while the generator ``G`` stays frozen. Each step draws codes ``c``, an
index ``k ~ U{0..K-1}`` and a shift ``eps`` per sample; ``R`` sees the pair
``(G(c), G(c + u * eps * A e_k))`` as two channels and predicts ``k`` (``K`` logits) and
``eps`` (one number). The loss is ``CE(logits, k) + shift_weight * |eps_hat - eps|``; both
networks minimise it (Adam), so the deformator is pushed towards directions whose effects on
the images are easy to tell apart: in practice, interpretable ones. As in the official
``make_shifts``, ``eps = shift_range * (2 U - 1)`` and shifts smaller than ``min_shift`` in
size are set to ``+-min_shift`` (keeping their sign).

Deformators (the returned directions are the columns of the effective matrix, normalised):

* ``linear``: a free matrix; the latent shift is ``eps * A e_k``, so columns may grow or
  shrink (``info["column_norm"]``).
* ``proj``: the same matrix with its columns scaled to unit length in the forward pass
  (the official ``PROJECTIVE`` type), so every shift has length ``|eps| * u``.
* ``orthonormal``: an orthonormal ``d x K`` frame. The official ``ORTHO`` type takes the
  first ``K`` columns of ``expm(S - S^T)`` for a free ``d x d`` matrix ``S``; we take the
  Q factor of the QR decomposition of a free ``d x K`` matrix (signs fixed so that ``R``
  has a positive diagonal), which parametrises the same set of frames at ``O(d K^2)``
  instead of ``O(d^3)`` per step: the matrix exponential and its gradient took 0.39 s per
  step at ``d = 512`` and 3.4 s at ``d = 1024`` (StyleGAN ``w+``, VQ-VAE maps) on one CPU
  thread, against 2 ms for QR.

Initialisation follows the official default (``--deformator_random_init``): identity
columns plus ``0.1 * N(0, 1)`` noise for ``linear``/``proj``, a random frame for
``orthonormal``. Unlike the official ``nn.Linear`` the deformator has no bias (a bias adds
the same shift whatever ``k`` and, for ``proj``, makes the direction depend on ``eps``).

Reconstructors: ``lenet`` is the official ``LeNetShiftPredictor`` (width 2, two input
channels for the grey image pair); ``resnet`` is a small ResNet (a stride-2 stem, then
basic residual blocks halving the resolution down to 4 x 4, widths 32 doubling to at most
256) instead of the official torchvision ResNet-18, which would be a new dependency and is
oversized for 64-128 px grey slices. Like the official heads, ``resnet`` has linear heads
and ``lenet`` a hidden layer with batch norm.

Shift units. ``eps`` is in units of the spread of the prior codes: 1 in Gaussian ``z``
spaces (as in the paper), else the root-mean-square standard deviation per dimension of
prior samples (:func:`~napari_latent.latent.inversion.latent_statistics`; StyleGAN ``w``
and ``w+``, the VQ-VAE's continuous code maps). It is one number per space, not one per
dimension, so that the directions keep their geometry (orthonormal frames stay orthonormal
in the space itself); ``info["shift_unit"]`` records it. A VQ-VAE quantises the shifted
maps, so its images change in jumps and the deformator learns through the straight-through
gradient of :meth:`~napari_latent.models.vqvae.VQVAE.decode`.

Evaluation. After training, the reconstructor (in eval mode, as the official
``validate_classifier``) classifies ``eval_samples`` fresh pairs with the directions taken
in turn (balanced), giving the reconstructor classification accuracy (RCA) per direction
(score ``rca``; overall in ``info["rca"]``, chance is ``1 / K``), the mean absolute error
of the predicted shift (score ``shift_error``, in shift units) and the mean absolute pixel
change the shifts cause (score ``image_change``). Directions are returned ranked by RCA
(ties: by image change), the most reliably recognisable first; ``info["deformator_column"]``
gives each one's column of the deformator. With ``eval_samples=0`` they stay in deformator
order and have no scores.

Other choices: the original images ``G(c)`` are decoded without a gradient (they do not
depend on the deformator; same result, less work); training runs in float32 (bfloat16
autocast on the CPU would only add rounding to a small, decoder-bound computation). The
number of directions is at most the latent dimension (:func:`check_count`), so the CT
paper's over-complete setting (``K = 100`` in a 32-d space) is not available.

Resuming. With ``state=PATH.safetensors`` the deformator, the reconstructor (with its batch
norm statistics), both Adam states, the step, the random generator and the running
accuracy are written atomically every ``save_every`` steps, at a stop and at the end (a
safetensors file with a JSON header; loading never unpickles). When the file exists and was
made with the same settings (all but ``steps``, ``eval_samples`` and ``save_every``) and
model, training continues from it, to the same result as an uninterrupted run.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...container import (
    FormatError,
    NewerFormatError,
    flatten_state,
    read_container,
    unflatten_state,
    write_container,
)
from ...errors import UserInputError
from ...models.base import GenerativeModel, model_fingerprint
from ...progress import Operation, ProgressEvent, StopFlag, stop_requested
from ..directions import Directions
from ..inversion import default_space, latent_statistics
from . import check_count, register_method
from .pca import projected_std, sign_fixed

DEFORMATORS = ("linear", "orthonormal", "proj")
RECONSTRUCTORS = ("lenet", "resnet")
STATE_FORMAT = "napari-latent-voynov-state"
#: Version 2 stores the nested state through :func:`~napari_latent.container.flatten_state`.
STATE_VERSION = 2
STATE_KIND = "voynov state file"
#: Smoothing of the running accuracy reported during training (an exponential moving average).
ACCURACY_SMOOTHING = 0.98
#: Settings that may differ between a saved state and the run that continues from it.
RESUMABLE_CHANGES = ("steps", "eval_samples", "save_every")


# -- networks ----------------------------------------------------------------------------------
class Deformator(nn.Module):
    """The map ``(k, eps) -> eps * a_k`` from a direction index and a shift to a latent shift.

    Parameters
    ----------
    kind : {"linear", "orthonormal", "proj"}
        See the module docstring.
    dim : int
        Latent dimension ``d``.
    count : int
        Number of directions ``K`` (at most ``d`` for ``orthonormal``).
    """

    def __init__(self, kind: str, dim: int, count: int) -> None:
        super().__init__()
        if kind not in DEFORMATORS:
            raise UserInputError(f"unknown deformator {kind!r}; use one of {', '.join(DEFORMATORS)}")
        if kind == "orthonormal" and count > dim:
            raise UserInputError(f"an orthonormal deformator has at most d = {dim} directions, not {count}")
        self.kind = kind
        if kind == "orthonormal":
            start = torch.randn(dim, count)
        else:
            start = torch.eye(dim, count) + 0.1 * torch.randn(dim, count)
        self.weight = nn.Parameter(start)

    def matrix(self) -> torch.Tensor:
        """The effective ``(d, K)`` matrix whose columns are the latent shifts of unit ``eps``."""
        if self.kind == "proj":
            return self.weight / self.weight.norm(dim=0, keepdim=True).clamp_min(1e-12)
        if self.kind == "orthonormal":
            q, r = torch.linalg.qr(self.weight)
            return q * torch.where(torch.diagonal(r) < 0, -1.0, 1.0).to(q.dtype)
        return self.weight

    def forward(self, indices: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
        """Latent shifts ``(n, d)`` for direction indices ``(n,)`` and shifts ``(n,)``."""
        return self.matrix().T[indices] * shifts[:, None]


class LeNetReconstructor(nn.Module):
    """The official ``LeNetShiftPredictor`` for grey images: ``K`` logits and one shift from an image pair."""

    def __init__(self, count: int, width: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(2, 3 * width, 5), nn.BatchNorm2d(3 * width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(3 * width, 8 * width, 5), nn.BatchNorm2d(8 * width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8 * width, 60 * width, 5), nn.BatchNorm2d(60 * width), nn.ReLU())
        self.logits = nn.Sequential(nn.Linear(60 * width, 42 * width), nn.BatchNorm1d(42 * width), nn.ReLU(),
                                    nn.Linear(42 * width, count))
        self.shift = nn.Sequential(nn.Linear(60 * width, 42 * width), nn.BatchNorm1d(42 * width), nn.ReLU(),
                                   nn.Linear(42 * width, 1))

    def forward(self, original: torch.Tensor, shifted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(n, K)`` and predicted shifts ``(n,)``."""
        features = self.features(torch.cat([original, shifted], dim=1)).mean(dim=(2, 3))
        return self.logits(features), self.shift(features)[:, 0]


class _BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a (projected when needed) shortcut."""

    def __init__(self, channels_in: int, channels_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False), nn.BatchNorm2d(channels_out), nn.ReLU(),
            nn.Conv2d(channels_out, channels_out, 3, 1, 1, bias=False), nn.BatchNorm2d(channels_out))
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or channels_in != channels_out:
            self.shortcut = nn.Sequential(nn.Conv2d(channels_in, channels_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(channels_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class ResNetReconstructor(nn.Module):
    """A small ResNet on the image pair: stride-2 stem, blocks halving to 4 x 4, linear heads."""

    def __init__(self, count: int, image_size: int, width: int = 32, max_width: int = 256) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(2, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        channels, resolution = width, image_size // 2
        while resolution > 4:
            layers.append(_BasicBlock(channels, min(2 * channels, max_width), 2))
            channels, resolution = min(2 * channels, max_width), resolution // 2
        self.features = nn.Sequential(*layers)
        self.logits = nn.Linear(channels, count)
        self.shift = nn.Linear(channels, 1)

    def forward(self, original: torch.Tensor, shifted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(n, K)`` and predicted shifts ``(n,)``."""
        features = self.features(torch.cat([original, shifted], dim=1)).mean(dim=(2, 3))
        return self.logits(features), self.shift(features)[:, 0]


def make_reconstructor(kind: str, count: int, image_size: int) -> nn.Module:
    """A reconstructor by name (``lenet`` or ``resnet``)."""
    if kind == "lenet":
        return LeNetReconstructor(count)
    if kind == "resnet":
        return ResNetReconstructor(count, image_size)
    raise UserInputError(f"unknown reconstructor {kind!r}; use one of {', '.join(RECONSTRUCTORS)}")


# -- sampling ----------------------------------------------------------------------------------
def make_shifts(count: int, n: int, shift_range: float, min_shift: float,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Direction indices ``(n,)`` and shifts ``(n,)``: ``U(-r, r)`` with small ones pushed out to ``+-min_shift``."""
    indices = torch.randint(0, count, (n,), generator=generator)
    shifts = shift_range * (2.0 * torch.rand(n, generator=generator) - 1.0)
    small = shifts.abs() < min_shift
    shifts = torch.where(small, torch.where(shifts < 0, -min_shift, min_shift), shifts)
    return indices, shifts


def _sample_codes(model: GenerativeModel, space: str, n: int, generator: torch.Generator) -> torch.Tensor:
    source = model.default_space
    with torch.no_grad():
        return model.to_space(model.sample_latent(n, generator, source), source, space).float()


def is_gaussian(model: GenerativeModel, space: str) -> bool:
    """True for a standard normal prior space (``z`` of every model but the VQ-VAE)."""
    return model.prior(space).standard_normal


# -- resumable state ---------------------------------------------------------------------------
def _save_state(path: Path, settings: dict[str, Any], step: int, running: dict[str, float], deformator: nn.Module,
                reconstructor: nn.Module, optimizers: dict[str, torch.optim.Optimizer],
                generator: torch.Generator) -> None:
    tensors: dict[str, torch.Tensor] = {}
    state = {"deformator": deformator.state_dict(), "reconstructor": reconstructor.state_dict(),
             "optimizers": {label: optimizer.state_dict()["state"] for label, optimizer in optimizers.items()},
             "rng": generator.get_state()}
    header = {"settings": settings, "step": step, "running": running,
              "state": flatten_state(state, "state", tensors)}
    write_container(path, STATE_FORMAT, STATE_VERSION, header, tensors, kind=STATE_KIND)


def _load_state(path: Path, settings: dict[str, Any], deformator: nn.Module, reconstructor: nn.Module,
                optimizers: dict[str, torch.optim.Optimizer], generator: torch.Generator) -> tuple[int, dict]:
    """Restore everything from ``path``; return the step and the running numbers."""
    try:
        header, tensors = read_container(path, STATE_FORMAT, STATE_VERSION, kind=STATE_KIND)
    except NewerFormatError:
        raise
    except FormatError as exc:
        raise UserInputError(f"{path}: not a voynov state file (delete it or choose another state= path)") from exc
    if header["format_version"] < STATE_VERSION:
        raise UserInputError(f"{path}: a voynov state file of an earlier napari-latent, which this version cannot "
                             "resume (delete it or choose another state= path)")
    saved = header.get("settings") or {}
    fixed = [k for k in sorted(set(saved) | set(settings)) if k not in RESUMABLE_CHANGES]
    differ = [k for k in fixed if saved.get(k) != settings.get(k)]
    if differ:
        details = ", ".join(f"{k} {saved.get(k)!r} -> {settings.get(k)!r}" for k in differ)
        raise UserInputError(f"{path}: the saved voynov run has other settings ({details}); use the same settings to "
                             "continue it, or another state= path to start afresh")
    try:
        state = unflatten_state(header["state"], tensors)
        deformator.load_state_dict(state["deformator"])
        reconstructor.load_state_dict(state["reconstructor"])
        for label, optimizer in optimizers.items():
            optimizer.load_state_dict({"state": state["optimizers"][label],
                                       "param_groups": optimizer.state_dict()["param_groups"]})
        generator.set_state(state["rng"])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise UserInputError(f"{path}: the {STATE_KIND} is incomplete or damaged ({exc})") from exc
    return int(header["step"]), dict(header.get("running") or {})


# -- evaluation --------------------------------------------------------------------------------
def _evaluate(model: GenerativeModel, space: str, deformator: Deformator, reconstructor: nn.Module, unit: float,
              settings: dict[str, Any], samples: int) -> Operation[dict[str, torch.Tensor]]:
    """RCA, shift error and image change per direction on ``samples`` fresh pairs (balanced over directions)."""
    count, batch = settings["count"], settings["batch_size"]
    generator = torch.Generator().manual_seed(int(settings["seed"]) + 1_000_003)  # not the training stream
    correct, error, change, seen = (torch.zeros(count, dtype=torch.float64) for _ in range(4))
    batches = math.ceil(samples / batch)
    reconstructor.eval()
    with torch.no_grad():
        matrix = deformator.matrix().detach()
        for index, start in enumerate(range(0, samples, batch)):
            n = min(batch, samples - start)
            codes = _sample_codes(model, space, n, generator)
            _, shifts = make_shifts(count, n, settings["shift_range"], settings["min_shift"], generator)
            targets = torch.arange(start, start + n) % count
            steps = matrix.T[targets.to(matrix.device)] * (unit * shifts[:, None]).to(matrix.device)
            original, shifted = model.decode(codes, space), model.decode(codes + steps, space)
            logits, predicted = reconstructor(original, shifted)
            hits = (logits.argmax(1).cpu() == targets).double()
            correct.index_add_(0, targets, hits)
            error.index_add_(0, targets, (predicted.cpu() - shifts).abs().double())
            change.index_add_(0, targets, (shifted - original).abs().flatten(1).mean(1).cpu().double())
            seen.index_add_(0, targets, torch.ones(n, dtype=torch.float64))
            yield ProgressEvent(index + 1, batches, "measuring RCA", {"rca": float(correct.sum() / seen.sum())},
                                stage="evaluate")
    seen = seen.clamp_min(1.0)
    return {"rca": correct / seen, "shift_error": error / seen, "image_change": change / seen,
            "overall": correct.sum() / samples}


# -- the method --------------------------------------------------------------------------------
@register_method("voynov", "Voynov & Babenko: deformator and reconstructor trained so that directions are recognisable")
def iter_voynov(model: GenerativeModel, *, space: str | None = None, count: int = 10, steps: int = 2000,
                deformator: str = "orthonormal", reconstructor: str = "lenet", batch_size: int = 32,
                lr: float = 1e-4, reconstructor_lr: float = 1e-4, shift_range: float = 6.0, min_shift: float = 0.5,
                shift_weight: float = 0.25, seed: int = 0, state: str | os.PathLike[str] | None = None,
                save_every: int = 100, eval_samples: int = 1024,
                stop: StopFlag | None = None) -> Operation[Directions]:
    """Train a deformator and a reconstructor jointly (a generator; run it with ``discover(model, "voynov")``).

    Parameters
    ----------
    model : GenerativeModel
        Frozen during training (``requires_grad`` off, eval mode); both are restored after.
    space : str, optional
        Latent space (``w`` for StyleGAN, the main space otherwise).
    count : int
        Number of directions ``K`` (at most the latent dimension).
    steps : int
        Training steps in all (a resumed run continues up to this many).
    deformator : {"orthonormal", "linear", "proj"}
        The form of the direction matrix (see the module docstring).
    reconstructor : {"lenet", "resnet"}
        The network that tells the directions apart.
    batch_size : int
        Image pairs per step (the official default 32; the CT paper used 128).
    lr, reconstructor_lr : float
        Adam learning rates of the deformator and the reconstructor (the official 1e-4 both).
    shift_range : float
        Shifts are drawn from ``U(-shift_range, shift_range)``, in shift units (see below).
    min_shift : float
        Smaller shifts are set to ``+-min_shift``.
    shift_weight : float
        Weight of the L1 shift loss next to the cross-entropy.
    seed : int
        Seeds the initial networks and the training samples (evaluation samples are drawn
        from a stream of their own).
    state : path-like, optional
        A ``.safetensors`` file for the training state: written every ``save_every`` steps,
        at a stop and at the end; an existing one with the same settings is continued.
    save_every : int
        Steps between state saves (with ``state``).
    eval_samples : int
        Fresh image pairs for the RCA after training (0: no evaluation, no scores).
    stop : StopFlag, optional
        Ends training early; the directions found so far are evaluated and returned.

    Returns
    -------
    Directions
        Ranked by RCA; scores ``rca``, ``shift_error`` and ``image_change``; ``code_std`` is 1
        in Gaussian ``z`` spaces, else the spread of prior samples along each direction;
        ``info`` holds the overall RCA, the chance level, the shift unit, the steps done and
        the deformator column of each direction.

    References
    ----------
    Voynov & Babenko (2020), Unsupervised Discovery of Interpretable Directions in the GAN
    Latent Space, ICML; https://github.com/anvoynov/GANLatentDiscovery.
    """
    space = model.check_space(space or default_space(model))
    check_count(model, space, count)
    if deformator not in DEFORMATORS:
        raise UserInputError(f"unknown deformator {deformator!r}; use one of {', '.join(DEFORMATORS)}")
    if reconstructor not in RECONSTRUCTORS:
        raise UserInputError(f"unknown reconstructor {reconstructor!r}; use one of {', '.join(RECONSTRUCTORS)}")
    steps, batch_size, save_every, eval_samples = int(steps), int(batch_size), int(save_every), int(eval_samples)
    if steps < 0 or batch_size < 2 or save_every < 1 or eval_samples < 0:
        raise UserInputError("voynov needs steps >= 0, batch_size >= 2, save_every >= 1 and eval_samples >= 0")
    if not (lr > 0 and reconstructor_lr > 0 and shift_range > 0 and 0 <= min_shift <= shift_range
            and shift_weight >= 0):
        raise UserInputError("voynov needs positive learning rates and shift_range, 0 <= min_shift <= shift_range "
                             "and shift_weight >= 0")
    state_path = None if state is None else Path(state)
    if state_path is not None and state_path.suffix != ".safetensors":
        raise UserInputError(f"{state_path}: the voynov state file must end in .safetensors")

    dim = model.latent_dim(space)
    unit = 1.0 if is_gaussian(model, space) else latent_statistics(model, space)[1]
    settings: dict[str, Any] = {
        "count": count, "steps": steps, "deformator": deformator, "reconstructor": reconstructor,
        "batch_size": batch_size, "lr": float(lr), "reconstructor_lr": float(reconstructor_lr),
        "shift_range": float(shift_range), "min_shift": float(min_shift), "shift_weight": float(shift_weight),
        "seed": int(seed), "save_every": save_every, "eval_samples": eval_samples}
    identity: dict[str, Any] = {}  # what a saved state must match
    if state_path is not None:
        identity = {**settings, "model": model.name, "space": space, "dim": dim,
                    "model_fingerprint": model.fingerprint or model_fingerprint(model)}

    device = model.device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        deform = Deformator(deformator, dim, count).to(device)
        recon = make_reconstructor(reconstructor, count, model.image_size).to(device)
    optimizers = {"deformator": torch.optim.Adam(deform.parameters(), lr=lr),
                  "reconstructor": torch.optim.Adam(recon.parameters(), lr=reconstructor_lr)}
    generator = torch.Generator().manual_seed(int(seed))
    step, running = 0, {"accuracy": 0.0, "loss": 0.0, "ce": 0.0, "shift_l1": 0.0}
    resumed_from = None
    if state_path is not None and state_path.exists():
        step, saved_running = _load_state(state_path, identity, deform, recon, optimizers, generator)
        running.update(saved_running)
        resumed_from = step

    def save() -> None:
        if state_path is not None:
            _save_state(state_path, identity, step, running, deform, recon, optimizers, generator)

    was_training = model.training
    grad_flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    model.requires_grad_(False)
    try:
        deform.train()
        recon.train()
        saved_at = step
        while step < steps:
            with torch.enable_grad():
                codes = _sample_codes(model, space, batch_size, generator)
                indices, shifts = make_shifts(count, batch_size, shift_range, min_shift, generator)
                indices, shifts = indices.to(device), shifts.to(device)
                with torch.no_grad():
                    original = model.decode(codes, space)
                shifted = model.decode(codes + unit * deform(indices, shifts), space)
                logits, predicted = recon(original, shifted)
                ce = F.cross_entropy(logits, indices)
                shift_l1 = (predicted - shifts).abs().mean()
                loss = ce + shift_weight * shift_l1
                for optimizer in optimizers.values():
                    optimizer.zero_grad(set_to_none=True)
                loss.backward()
                for optimizer in optimizers.values():
                    optimizer.step()
            accuracy = float((logits.detach().argmax(1) == indices).float().mean())
            smoothing = ACCURACY_SMOOTHING if step else 0.0
            running["accuracy"] = smoothing * running["accuracy"] + (1 - smoothing) * accuracy
            running.update(loss=loss.item(), ce=ce.item(), shift_l1=shift_l1.item())
            step += 1
            if step - saved_at >= save_every:
                save()
                saved_at = step
            yield ProgressEvent(step, steps, "training deformator and reconstructor", dict(running),
                                stage="discover")
            if stop_requested(stop):
                break
        if state_path is not None and (step != saved_at or not state_path.exists()):
            save()

        scores: dict[str, list[float]] = {}
        info: dict[str, Any] = {"steps_done": step, "resumed_from": resumed_from, "shift_unit": unit,
                                "chance": 1.0 / count, "training_accuracy": running["accuracy"]}
        matrix = deform.matrix().detach().float().cpu()
        norms = matrix.norm(dim=0)
        order = torch.arange(count)
        if eval_samples > 0:
            measured = yield from _evaluate(model, space, deform, recon, unit, settings, eval_samples)
            rca, change = measured["rca"], measured["image_change"]
            order = torch.tensor(sorted(range(count), key=lambda k: (-float(rca[k]), -float(change[k]), k)))
            scores = {key: measured[key][order].tolist() for key in ("rca", "shift_error", "image_change")}
            info["rca"] = float(measured["overall"])
        vectors = sign_fixed((matrix / norms.clamp_min(1e-12)).T[order])
        info["deformator_column"] = order.tolist()
        if deformator == "linear":
            info["column_norm"] = norms[order].tolist()
    finally:
        model.train(was_training)
        for parameter, flag in zip(model.parameters(), grad_flags):
            parameter.requires_grad_(flag)
    code_std = [1.0] * count if is_gaussian(model, space) else projected_std(model, space, vectors)
    return Directions(vectors, space, model.name, model.fingerprint, "voynov", settings=settings, scores=scores,
                      code_std=code_std, info=info)
