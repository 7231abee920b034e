"""The GAN objective: non-saturating logistic loss, lazy R1, DiffAugment and a generator EMA.

Serves every :class:`~napari_latent.models.gan.GANModel` (DCGAN, StyleGAN2). With ``D`` the
discriminator's logits, ``G`` the generator, ``T`` a random differentiable augmentation
(:func:`~napari_latent.training.diffaugment.diff_augment`, a fresh draw per use) and
``softplus(t) = log(1 + e^t)``, one training step is:

1. **Discriminator** (Goodfellow et al. 2014, in the form of StyleGAN2):
   ``L_D = E softplus(D(T(G(z)))) + E softplus(-D(T(x)))`` with ``G(z)`` made without
   gradients (``model.generate_for_training``) and ``x`` the engine's batch.
2. **R1** (Mescheder et al. 2018), lazily (Karras et al. 2020), every ``r1_interval``
   steps (the model config's ``r1_interval``, default 16; the first step included):
   ``L_R1 = r1_interval * gamma / 2 * E ||grad_x D(T(x))||^2`` with ``gamma`` the config's
   ``r1_gamma`` (0: never computed). It is a separate optimiser step of the
   discriminator (run uncompiled under ``TrainSettings.compile``: ``torch.compile`` has no
   double backward); as in StyleGAN2 the discriminator's Adam learning rate and betas are
   adjusted for the extra steps: ``lr * c`` and ``beta ** c`` with
   ``c = r1_interval / (r1_interval + 1)``. As in StyleGAN2-ADA the gradient is taken
   with respect to the un-augmented images, through the augmentation.
3. **Generator**: ``L_G = E softplus(-D(T(G(z'))))`` for fresh codes ``z'``; the
   discriminator's weights are frozen for this pass. Then ``model.after_generator_step()``.
4. **EMA** of the generator weights (Karras et al. 2018): ``ema <- beta ema + (1 - beta) G``
   with ``beta = 0.5 ** (B / h)``, ``B`` the images of the step over all processes and ``h``
   the half-life in images: the config's ``ema_images`` (default :attr:`GANObjective.ema_images`,
   1,000; StyleGAN2's 10,000 is for data sets of tens of thousands of images), but at most
   :attr:`GANObjective.ema_rampup` (5 %) of the images seen so far, so early EMA weights
   follow the generator closely (StyleGAN2-ADA's ramp-up). Buffers (batch-norm statistics,
   StyleGAN's mean ``w``, noise constants) are copied, not averaged.

Optimisers: one Adam per network, each with its own loss scaler in fp16 (the R1 pass uses
the discriminator's: its input gradient is taken of the scaled logits, then unscaled).
Models declare their family's settings as class attributes ``default_lr`` and
``adam_betas``; without them the StyleGAN2 settings apply
(learning rate 2e-3, betas (0, 0.99)). :class:`~napari_latent.models.dcgan.DCGAN` uses
Radford et al.'s 2e-4 and (0.5, 0.999). ``TrainSettings.lr`` overrides the learning rate of
both networks (before the discriminator's lazy-regularisation adjustment).

DiffAugment: the model config's ``diffaugment`` policy (``"translation,cutout"`` when a
config has no such field; ``""`` turns it off) is applied to real and generated images
every time the discriminator sees them.

Metrics of a step: ``loss_d`` (``L_D``), ``loss_g``, ``d_real`` and ``d_fake`` (mean logits of
real and generated images in the discriminator pass), and ``r1`` (``E ||grad_x D||^2``, the
penalty before its weight ``gamma / 2``) on the steps that compute it (in fp16, not on an R1
step whose scaled gradient overflowed: the discriminator's loss scaler skips that step and
halves its scale, as it does in the first R1 steps while the scale settles). A discriminator that
cannot tell real from fake has ``loss_d = 2 log 2 = 1.386`` and ``loss_g = log 2 = 0.693``.

GANs have no reconstructions, so the engine's validation reports nothing; its epoch rows
and final metrics are the means of these training metrics. Previews and :meth:`samples`
use the EMA generator; :meth:`model_for_use` (what training returns) is a copy of the model
whose generator holds the EMA weights, the same model :func:`load_model` gives.

Distributed training. Gradients are averaged over processes by
:meth:`~napari_latent.training.distributed.DistributedContext.average_gradients` after each
backward pass instead of by DistributedDataParallel: R1 needs a double backward
(``torch.autograd.grad(..., create_graph=True)``), which DDP does not support; the networks
are reached through model methods (``generate_for_training`` may call parts of the
generator several times, as StyleGAN's style mixing does) rather than through one wrapped
``forward``; and real and fake images go through the discriminator in separate calls (a
minibatch-statistics layer must not mix them). Parameters and buffers are broadcast from
rank 0 at the start, and the generator's floating-point buffers (batch-norm running
statistics, StyleGAN's mean ``w``), which each process updates from its own batches, are
averaged over processes after every generator step, so the generator, the discriminator
and the EMA stay identical on every process.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ...models.base import GenerativeModel
from ...models.gan import GANModel
from ..diffaugment import diff_augment
from .base import Objective, register_objective


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """Temporarily stop gradients to a module's weights (they still flow to its inputs)."""
    parameters = list(module.parameters())
    flags = [p.requires_grad for p in parameters]
    for p in parameters:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(parameters, flags, strict=True):
            p.requires_grad_(flag)


@contextlib.contextmanager
def _eager(module: nn.Module) -> Iterator[None]:
    """Run modules compiled with ``nn.Module.compile`` eagerly for a while.

    The R1 pass needs a double backward, which ``torch.compile`` does not support; with
    ``TrainSettings.compile`` the discriminator runs uncompiled for that pass only.
    """
    saved = [(m, m._compiled_call_impl) for m in module.modules() if getattr(m, "_compiled_call_impl", None)]
    for m, _ in saved:
        m._compiled_call_impl = None
    try:
        yield
    finally:
        for m, impl in saved:
            m._compiled_call_impl = impl


def _zero(module: nn.Module) -> None:
    for p in module.parameters():
        p.grad = None


@register_objective
class GANObjective(Objective):
    """Adam on the non-saturating GAN game with lazy R1, DiffAugment and a generator EMA."""

    name = "gan"
    #: Defaults of StyleGAN-type models; a model class may set ``default_lr`` and ``adam_betas``.
    default_lr: ClassVar[float] = 2e-3
    betas: ClassVar[tuple[float, float]] = (0.0, 0.99)
    #: Steps between R1 passes when the model config has no ``r1_interval``.
    r1_interval: ClassVar[int] = 16
    #: EMA half-life in images when the model config has no ``ema_images``.
    ema_images: ClassVar[float] = 1000.0
    #: The EMA half-life is at most this fraction of the images seen so far (None: no ramp-up).
    ema_rampup: ClassVar[float | None] = 0.05
    #: DiffAugment policy when the model config has no ``diffaugment``.
    diffaugment: ClassVar[str] = "translation,cutout"

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        model = self.model
        if not isinstance(model, GANModel):
            raise TypeError(f"the GAN objective trains GAN models, not {type(model).__name__}")
        self.generator_module: nn.Module = model.generator
        self.discriminator_module: nn.Module = model.discriminator
        owned = {id(p) for p in self.generator_module.parameters()} | {
            id(p) for p in self.discriminator_module.parameters()}
        stray = [n for n, p in model.named_parameters() if id(p) not in owned]
        if stray:
            raise TypeError(f"{type(model).__name__} has parameters outside its generator and discriminator: "
                            f"{', '.join(stray[:5])}")
        config = model.config
        self.r1_gamma = float(getattr(config, "r1_gamma", 0.0))
        self.r1_every = max(1, int(getattr(config, "r1_interval", self.r1_interval)))
        self.ema_half_life = float(getattr(config, "ema_images", self.ema_images))
        self.policy = str(getattr(config, "diffaugment", self.diffaugment))

        base_lr = self.settings.lr if self.settings.lr is not None else float(getattr(model, "default_lr",
                                                                                      self.default_lr))
        betas = tuple(float(b) for b in getattr(model, "adam_betas", self.betas))
        self.lr = base_lr
        ratio = self.r1_every / (self.r1_every + 1) if self.r1_gamma > 0 else 1.0
        self.optimizer_g = torch.optim.Adam(self.generator_module.parameters(), lr=base_lr, betas=betas)
        self.optimizer_d = torch.optim.Adam(self.discriminator_module.parameters(), lr=base_lr * ratio,
                                            betas=(betas[0] ** ratio, betas[1] ** ratio))

        self.context.broadcast_module(model)
        self.ema = copy.deepcopy(self.generator_module).eval().requires_grad_(False)
        self.steps = 0
        self.images_seen = 0

    # -- bookkeeping -----------------------------------------------------------------------------
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.optimizer_g, "discriminator": self.optimizer_d}

    def modules(self) -> dict[str, nn.Module]:
        """The two networks (what ``torch.compile`` should compile)."""
        return {"generator": self.generator_module, "discriminator": self.discriminator_module}

    def extras(self) -> dict[str, nn.Module]:
        """The EMA generator, stored in checkpoints under ``ema``."""
        return {"ema": self.ema}

    def load_extras(self, extras: dict[str, dict[str, torch.Tensor]]) -> None:
        """Restore the EMA generator (kept as a copy of the generator if the checkpoint has none)."""
        state = extras.get("ema")
        if state is None:
            return
        reference = self.ema.state_dict()
        self.ema.load_state_dict({k: v.to(dtype=reference[k].dtype, device=reference[k].device)
                                  for k, v in state.items()})

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "steps": self.steps, "images_seen": self.images_seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.steps = int(state.get("steps", 0))
        self.images_seen = int(state.get("images_seen", 0))

    @contextlib.contextmanager
    def _ema_in_place(self) -> Iterator[GenerativeModel]:
        """The model with its generator temporarily replaced by the EMA generator."""
        model = self.model
        raw = model.generator
        model.generator = self.ema
        try:
            yield model
        finally:
            model.generator = raw

    @torch.no_grad()
    def samples(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Images of prior samples decoded by the EMA generator (for previews)."""
        with self._ema_in_place() as model:
            return model.decode(model.sample_latent(n, generator))

    def model_for_use(self) -> GenerativeModel:
        """A copy of the model whose generator has the EMA weights, in evaluation mode."""
        final = copy.deepcopy(self.model)
        final.generator.load_state_dict(self.ema.state_dict())
        return final.eval()

    # -- pieces ------------------------------------------------------------------------------------
    def _augment(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return diff_augment(images, self.policy, generator) if self.policy else images

    def _logits(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.model.discriminate(self._augment(images, generator)).float()

    def _step(self, optimizer: torch.optim.Optimizer, module: nn.Module) -> None:
        self.context.average_gradients(module.parameters())
        self.precision.step(optimizer, self.settings.grad_clip, module.parameters())
        _zero(module)

    @property
    def r1_due(self) -> bool:
        """True when this step computes R1."""
        return self.r1_gamma > 0 and self.steps % self.r1_every == 0

    def ema_beta(self, batch_images: int) -> float:
        """Decay of the EMA for a step of ``batch_images`` images (all processes)."""
        half_life = self.ema_half_life
        if self.ema_rampup is not None:
            half_life = min(half_life, (self.images_seen + batch_images) * self.ema_rampup)
        if half_life <= 0:
            return 0.0
        return 0.5 ** (batch_images / half_life)

    @torch.no_grad()
    def update_ema(self, batch_images: int) -> None:
        """Move the EMA weights towards the generator's; copy its buffers."""
        beta = self.ema_beta(batch_images)
        for p_ema, p in zip(self.ema.parameters(), self.generator_module.parameters(), strict=True):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(self.ema.buffers(), self.generator_module.buffers(), strict=True):
            b_ema.copy_(b)

    # -- training ----------------------------------------------------------------------------------
    def train_step(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
        model = self.model
        model.train()
        _zero(model)
        n = images.shape[0]
        metrics = self.discriminator_step(images, generator)
        if self.r1_due:
            r1 = self.r1_step(images, generator)
            if math.isfinite(r1) or not self.precision.scaling:
                metrics["r1"] = r1  # (an fp16 overflow is a step the loss scaler skips, not a value)
        metrics["loss_g"] = self.generator_step(n, generator)
        model.after_generator_step()
        self.context.average_buffers(self.generator_module)
        batch_images = n * self.context.world_size
        self.update_ema(batch_images)
        self.images_seen += batch_images
        self.steps += 1
        return metrics

    def discriminator_step(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
        """One update of the discriminator on the logistic loss."""
        model = self.model
        z = model.sample_latent(images.shape[0], generator)
        with torch.no_grad(), self.precision.autocast():
            fake = model.generate_for_training(z, generator)
        with self.precision.autocast():
            real_logits = self._logits(images, generator)
            fake_logits = self._logits(fake.detach(), generator)
            loss = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
        self.precision.backward(loss, self.optimizer_d)
        self._step(self.optimizer_d, self.discriminator_module)
        return {"loss_d": loss.item(), "d_real": real_logits.mean().item(), "d_fake": fake_logits.mean().item()}

    def r1_step(self, images: torch.Tensor, generator: torch.Generator) -> float:
        """One lazy R1 update of the discriminator; returns ``E ||grad_x D(T(x))||^2``."""
        x = images.detach().requires_grad_(True)
        with _eager(self.discriminator_module):
            with self.precision.autocast():
                logits = self._logits(x, generator)
            scaler = self.precision.scaler(self.optimizer_d)
            scale = float(scaler.get_scale()) if scaler is not None else 1.0
            (grad,) = torch.autograd.grad(logits.sum() * scale, x, create_graph=True)
            penalty = (grad.float() / scale).square().flatten(1).sum(1).mean()
            loss = penalty * (self.r1_gamma / 2 * self.r1_every)
            self.precision.backward(loss, self.optimizer_d)
        self._step(self.optimizer_d, self.discriminator_module)
        return penalty.item()

    def generator_step(self, n: int, generator: torch.Generator) -> float:
        """One update of the generator on the non-saturating loss (discriminator frozen)."""
        model = self.model
        z = model.sample_latent(n, generator)
        with _frozen(self.discriminator_module):
            with self.precision.autocast():
                fake = model.generate_for_training(z, generator)
                loss = F.softplus(-self._logits(fake, generator)).mean()
            self.precision.backward(loss, self.optimizer_g)
        self._step(self.optimizer_g, self.generator_module)
        return loss.item()
