"""The interface of a training objective, and the objective registry.

An objective owns the optimisers of one model family and knows how to make one training
step from a batch. The engine (:mod:`napari_latent.training.loop`) owns everything else:
data order, augmentation, checkpoints, progress, distribution.

Rules for objectives, so that every model trains the same way everywhere:

* draw every random number from the ``generator`` passed to :meth:`Objective.train_step`
  (that makes resumed runs identical to uninterrupted ones);
* call each module wrapped by ``context.wrap`` at most once per backward pass
  (concatenate batches instead), as DistributedDataParallel requires;
* run forward passes under ``precision.autocast()`` and step with ``precision``; with
  several optimisers, name the one a loss trains (``precision.backward(loss, optimizer)``):
  in fp16 each optimiser has its own loss scaler.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import torch
from torch import nn

from ...models.base import GenerativeModel
from ...registry import Registry
from ..distributed import DistributedContext
from ..precision import Precision
from ..settings import TrainSettings

#: Modules in this package that define and register the built-in objectives; declared as
#: ``napari_latent.objectives`` entry points in ``setup.cfg``.
BUILTIN_OBJECTIVE_MODULES = ("vae", "introvae", "vqvae", "gan")

#: The training objectives by name (a model class names its own in ``objective``).
OBJECTIVES: Registry[type[Objective]] = Registry(
    "training objective", "napari_latent.objectives",
    tuple(f"{__package__}.{m}" for m in BUILTIN_OBJECTIVE_MODULES))


class Objective(abc.ABC):
    """Training logic of one model family.

    Parameters
    ----------
    model : GenerativeModel
        The model to train (already on its device).
    settings : TrainSettings
    context : DistributedContext
    precision : Precision
    """

    name: ClassVar[str] = ""
    default_lr: ClassVar[float] = 2e-4
    betas: ClassVar[tuple[float, float]] = (0.9, 0.999)

    def __init__(self, model: GenerativeModel, settings: TrainSettings, context: DistributedContext,
                 precision: Precision) -> None:
        self.model = model
        self.settings = settings
        self.context = context
        self.precision = precision
        self.lr = settings.lr if settings.lr is not None else self.default_lr

    def adam(self, parameters: Any) -> torch.optim.Adam:
        """An Adam optimiser with the run's learning rate and the family's betas."""
        return torch.optim.Adam(parameters, lr=self.lr, betas=self.betas)

    @abc.abstractmethod
    def train_step(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
        """One optimisation step on a batch; returns the step's losses and metrics."""

    @abc.abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The objective's optimisers by name (their state is checkpointed)."""

    def modules(self) -> dict[str, nn.Module]:
        """Trainable modules (for ``torch.compile``); the model by default."""
        return {"model": self.model}

    def extras(self) -> dict[str, nn.Module]:
        """Extra modules stored in the checkpoint beside the model (e.g. an EMA copy)."""
        return {}

    def model_for_use(self) -> GenerativeModel:
        """The model users get when training ends (a GAN returns a copy with its EMA weights)."""
        return self.model

    def load_extras(self, extras: dict[str, dict[str, torch.Tensor]]) -> None:
        """Restore :meth:`extras` from a checkpoint."""
        return

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor | None:
        """Reconstructions for validation (None for models without an encoder)."""
        if not self.model.has_encoder:
            return None
        return self.model.decode(self.model.encode(images))

    @torch.no_grad()
    def samples(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Images decoded from prior samples (for previews)."""
        return self.model.decode(self.model.sample_latent(n, generator))

    def on_epoch_end(self, epoch: int) -> None:
        """Hook called after each epoch."""
        return

    def state_dict(self) -> dict[str, Any]:
        """Resumable state: optimisers and their loss scalers."""
        optimizers = self.optimizers()
        return {"optimizers": {k: v.state_dict() for k, v in optimizers.items()},
                "precision": self.precision.state_dict(optimizers)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        optimizers = self.optimizers()
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        self.precision.load_state_dict(state.get("precision") or {}, optimizers)


def register_objective(cls: type[Objective]) -> type[Objective]:
    """Class decorator: make an objective available by its name.

    Plugins use it in a module named by a ``napari_latent.objectives`` entry point (or in
    their model's module: a model's objective is looked up by the name the model class gives).
    """
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    return OBJECTIVES.add(cls.name, cls)


def objective_class(name: str) -> type[Objective]:
    """The objective registered under ``name``."""
    return OBJECTIVES.get(name)
