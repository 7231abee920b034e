"""The training loop of the Voynov & Babenko method, its sampling and its evaluation.

:class:`VoynovRun` holds what one run trains (the deformator, the reconstructor, their Adam
optimisers, the random stream of the training samples, the step and the running numbers),
saves and restores it through :mod:`~napari_latent.latent.discovery.voynov_state`, and
trains it step by step with the generator frozen (:func:`frozen`). See
:mod:`napari_latent.latent.discovery.voynov` for the method.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...models.base import GenerativeModel
from ...progress import Operation, ProgressEvent, StopFlag, stop_requested
from .pca import sign_fixed
from .voynov_networks import Deformator, make_reconstructor
from .voynov_state import load_state, save_state

#: Smoothing of the running accuracy reported during training (an exponential moving average).
ACCURACY_SMOOTHING = 0.98


# -- sampling ----------------------------------------------------------------------------------
def make_shifts(count: int, n: int, shift_range: float, min_shift: float,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Direction indices ``(n,)`` and shifts ``(n,)``: ``U(-r, r)`` with small ones pushed out to ``+-min_shift``."""
    indices = torch.randint(0, count, (n,), generator=generator)
    shifts = shift_range * (2.0 * torch.rand(n, generator=generator) - 1.0)
    small = shifts.abs() < min_shift
    shifts = torch.where(small, torch.where(shifts < 0, -min_shift, min_shift), shifts)
    return indices, shifts


def sample_codes(model: GenerativeModel, space: str, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` prior codes mapped into ``space`` (float32, no gradient), drawn from ``generator``."""
    source = model.default_space
    with torch.no_grad():
        return model.to_space(model.sample_latent(n, generator, source), source, space).float()



# -- evaluation --------------------------------------------------------------------------------
def evaluate(model: GenerativeModel, space: str, deformator: Deformator, reconstructor: nn.Module, unit: float,
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
            codes = sample_codes(model, space, n, generator)
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



@contextlib.contextmanager
def frozen(model: GenerativeModel) -> Iterator[None]:
    """The model in eval mode without gradients for its parameters; both restored afterwards."""
    was_training = model.training
    grad_flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    model.requires_grad_(False)
    try:
        yield
    finally:
        model.train(was_training)
        for parameter, flag in zip(model.parameters(), grad_flags):
            parameter.requires_grad_(flag)


class VoynovRun:
    """One training run: both networks, their optimisers, the sample stream, the step (resumable).

    Parameters
    ----------
    model : GenerativeModel
        The frozen generator (see :func:`frozen`).
    space : str
    settings : dict
        The checked settings of :func:`~napari_latent.latent.discovery.voynov.iter_voynov`
        (``count``, ``deformator``, ``reconstructor``, ``batch_size``, ``lr``,
        ``reconstructor_lr``, ``shift_range``, ``min_shift``, ``shift_weight``, ``seed``).
    unit : float
        The shift unit (the spread of the prior codes).
    state_path : Path, optional
        Where the state is saved, and continued from when it exists.
    identity : dict
        What a saved state must match to be continued.
    """

    def __init__(self, model: GenerativeModel, space: str, settings: dict[str, Any], unit: float,
                 state_path: Path | None = None, identity: dict[str, Any] | None = None) -> None:
        self.model, self.space, self.settings, self.unit = model, space, settings, unit
        self.state_path, self.identity = state_path, identity or {}
        seed, count, device = int(settings["seed"]), settings["count"], model.device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.deformator = Deformator(settings["deformator"], model.latent_dim(space), count).to(device)
            self.reconstructor = make_reconstructor(settings["reconstructor"], count, model.image_size).to(device)
        self.optimizers = {"deformator": torch.optim.Adam(self.deformator.parameters(), lr=settings["lr"]),
                           "reconstructor": torch.optim.Adam(self.reconstructor.parameters(),
                                                             lr=settings["reconstructor_lr"])}
        self.generator = torch.Generator().manual_seed(seed)
        self.step = 0
        self.running = {"accuracy": 0.0, "loss": 0.0, "ce": 0.0, "shift_l1": 0.0}
        self.resumed_from: int | None = None

    # -- state -------------------------------------------------------------------------------
    def resume(self) -> None:
        """Continue from the saved state when its file exists."""
        if self.state_path is not None and self.state_path.exists():
            self.step, saved_running = load_state(self.state_path, self.identity, self.deformator,
                                                  self.reconstructor, self.optimizers, self.generator)
            self.running.update(saved_running)
            self.resumed_from = self.step

    def save(self) -> None:
        """Write the state (with a state path)."""
        if self.state_path is not None:
            save_state(self.state_path, self.identity, self.step, self.running, self.deformator, self.reconstructor,
                       self.optimizers, self.generator)

    # -- training ----------------------------------------------------------------------------
    def train_step(self) -> None:
        """One step of both networks on a fresh batch of image pairs; updates the running numbers."""
        settings, model, space = self.settings, self.model, self.space
        batch_size, device = settings["batch_size"], model.device
        with torch.enable_grad():
            codes = sample_codes(model, space, batch_size, self.generator)
            indices, shifts = make_shifts(settings["count"], batch_size, settings["shift_range"],
                                          settings["min_shift"], self.generator)
            indices, shifts = indices.to(device), shifts.to(device)
            with torch.no_grad():
                original = model.decode(codes, space)
            shifted = model.decode(codes + self.unit * self.deformator(indices, shifts), space)
            logits, predicted = self.reconstructor(original, shifted)
            ce = F.cross_entropy(logits, indices)
            shift_l1 = (predicted - shifts).abs().mean()
            loss = ce + settings["shift_weight"] * shift_l1
            for optimizer in self.optimizers.values():
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for optimizer in self.optimizers.values():
                optimizer.step()
        accuracy = float((logits.detach().argmax(1) == indices).float().mean())
        smoothing = ACCURACY_SMOOTHING if self.step else 0.0
        self.running["accuracy"] = smoothing * self.running["accuracy"] + (1 - smoothing) * accuracy
        self.running.update(loss=loss.item(), ce=ce.item(), shift_l1=shift_l1.item())
        self.step += 1

    def iter_train(self, steps: int, save_every: int, stop: StopFlag | None = None) -> Operation[None]:
        """Train up to ``steps`` steps in all, saving every ``save_every`` steps, at a stop and at the end."""
        self.deformator.train()
        self.reconstructor.train()
        saved_at = self.step
        while self.step < steps:
            self.train_step()
            if self.step - saved_at >= save_every:
                self.save()
                saved_at = self.step
            yield ProgressEvent(self.step, steps, "training deformator and reconstructor", dict(self.running),
                                stage="discover")
            if stop_requested(stop):
                break
        if self.state_path is not None and (self.step != saved_at or not self.state_path.exists()):
            self.save()

    # -- result ------------------------------------------------------------------------------
    def iter_directions(self, eval_samples: int) -> Operation[tuple[torch.Tensor, dict[str, list[float]],
                                                                     dict[str, Any]]]:
        """The unit directions (ranked by RCA after an evaluation on ``eval_samples`` pairs), scores and info."""
        count = self.settings["count"]
        scores: dict[str, list[float]] = {}
        info: dict[str, Any] = {"steps_done": self.step, "resumed_from": self.resumed_from, "shift_unit": self.unit,
                                "chance": 1.0 / count, "training_accuracy": self.running["accuracy"]}
        matrix = self.deformator.matrix().detach().float().cpu()
        norms = matrix.norm(dim=0)
        order = torch.arange(count)
        if eval_samples > 0:
            measured = yield from evaluate(self.model, self.space, self.deformator, self.reconstructor, self.unit,
                                           self.settings, eval_samples)
            rca, change = measured["rca"], measured["image_change"]
            order = torch.tensor(sorted(range(count), key=lambda k: (-float(rca[k]), -float(change[k]), k)))
            scores = {key: measured[key][order].tolist() for key in ("rca", "shift_error", "image_change")}
            info["rca"] = float(measured["overall"])
        vectors = sign_fixed((matrix / norms.clamp_min(1e-12)).T[order])
        info["deformator_column"] = order.tolist()
        if self.settings["deformator"] == "linear":
            info["column_norm"] = norms[order].tolist()
        return vectors, scores, info
