"""The IntroVAE objective: Algorithm 1 of Huang et al. (2018), with a plain-VAE warm-up.

With ``x`` real, ``z ~ q(z|x)`` reparameterised, ``x_r = Dec(z)``, ``z_p ~ N(0, I)`` and
``x_p = Dec(z_p)``, each step makes one encoder update and then one decoder update:

* encoder: ``L_E = beta L_REG(Enc(x)) + alpha ([m - L_REG(Enc(ng(x_r)))]^+ +
  [m - L_REG(Enc(ng(x_p)))]^+) + recon_weight L_AE(x, x_r)``;
* decoder (with the updated encoder): ``L_G = alpha (L_REG(Enc(x_r)) + L_REG(Enc(x_p))) +
  recon_weight L_AE(x, x_r)``,

where ``ng`` stops gradients, ``L_REG`` is the KL of the posterior from N(0, I) summed over
latent dimensions, and ``L_AE`` the per-image sum of squared errors. Every term is computed
per image (the hinge too) and averaged over the batch, so the loss of a batch split across
processes is the mean of the processes' losses and DistributedDataParallel's gradient
averaging is exact. As in the paper, the decoder's ``x_r`` and ``x_p`` are those of the
step's start (the encoder update does not change the decoder) and its reconstruction term
flows through the encoder's ``z`` of the step's start. Losses are reported per pixel
(divided by the pixel count), like the VAE objective's.

During the first ``warmup_epochs`` epochs the model trains as a plain VAE: one loss
``beta KL + recon_weight SSE``, one backward pass, both optimisers step.

Metrics of a step: ``loss_encoder`` (``L_E``) and ``loss_decoder`` (``L_G``) per pixel (in
warm-up the same losses without the adversarial terms), ``mse`` per pixel, ``kl`` (real
images), ``kl_reconstructed`` and ``kl_sampled`` (the updated encoder's KL of ``x_r`` and
``x_p``, as the decoder sees them), ``hinge`` (the sum of the two mean hinge terms, in nats)
and ``warmup`` (1.0 in warm-up, else 0.0); the adversarial metrics are absent in warm-up,
whose steps do not compute them. Watch ``kl`` against the margin: the game needs
``kl < margin``, while ``kl_sampled`` near ``kl`` means the decoder is winning.

Distributed training. The two halves of the model (:attr:`IntroVAE.enc`,
:attr:`IntroVAE.dec`) are wrapped separately and each wrapped module runs at most once per
backward pass. The encoder update needs ``Enc(x)`` (for ``L_REG`` and for the gradient of
``L_AE`` through ``z``) *before* ``x_r`` exists, so ``Enc(x)`` and ``Enc(ng([x_r, x_p]))``
cannot be one call without a redundant extra encoder pass; instead the encoder's gradient
is accumulated over two backward passes before its optimiser steps (each pass is averaged
over processes, so the sum is the averaged gradient of ``L_E``):

1. ``Enc(x)``, ``Dec(z)``; backward ``beta L_REG + recon_weight L_AE``;
2. ``Enc([ng(x_r), ng(x_p)])`` (one call); backward the hinge terms; step the encoder;
3. ``Dec([ng(z), z_p])``, ``Enc([x_r, x_p])`` (one call each); backward ``L_G``; step the
   decoder.

Gradients that a pass leaves on the other half's parameters (the decoder's in pass 1, the
encoder's in pass 3) are discarded before the next step, so neither optimiser ever steps
with gradients of the other's loss; in one process they are not even computed (that half's
parameters are frozen for the pass, which DistributedDataParallel would not allow).
``x_p`` for pass 2 is decoded without gradients.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from ...models.vae import kl_to_standard_normal
from .base import Objective, register_objective
from .reconstruction import reconstruction_error


def _zero(parameters: list[torch.nn.Parameter]) -> None:
    for p in parameters:
        p.grad = None


@contextlib.contextmanager
def _no_weight_grads(parameters: list[torch.nn.Parameter], enabled: bool = True) -> Iterator[None]:
    """Temporarily stop gradients to ``parameters`` (they still pass gradients to inputs)."""
    if not enabled:
        yield
        return
    flags = [p.requires_grad for p in parameters]
    for p in parameters:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(parameters, flags, strict=True):
            p.requires_grad_(flag)


@register_objective
class IntroVAEObjective(Objective):
    """Two Adam optimisers (encoder, decoder) playing the introspective game."""

    name = "introvae"
    default_lr = 2e-4
    betas = (0.9, 0.999)

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.encoder_params = self.model.encoder_parameters()
        self.decoder_params = self.model.decoder_parameters()
        self.enc = self.context.wrap(self.model.enc)
        self.dec = self.context.wrap(self.model.dec)
        self.optimizer_encoder = self.adam(self.encoder_params)
        self.optimizer_decoder = self.adam(self.decoder_params)
        self.epochs_done = 0

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"encoder": self.optimizer_encoder, "decoder": self.optimizer_decoder}

    def modules(self) -> dict[str, torch.nn.Module]:
        """The two halves the steps call (what ``torch.compile`` should compile)."""
        return {"encoder": self.model.enc, "decoder": self.model.dec}

    @property
    def in_warmup(self) -> bool:
        """True while the run is in its plain-VAE warm-up epochs."""
        return self.epochs_done < int(self.model.config.warmup_epochs)

    def on_epoch_end(self, epoch: int) -> None:
        self.epochs_done = epoch + 1

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "epochs_done": self.epochs_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.epochs_done = int(state.get("epochs_done", 0))

    # -- pieces ------------------------------------------------------------------------------
    def _posterior_sample(self, images: torch.Tensor,
                          generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Posterior mean, log variance and a reparameterised sample (noise from ``generator``)."""
        mean, logvar = self.enc(images)
        noise = torch.randn(mean.shape, generator=generator, device="cpu").to(mean.device)
        return mean, logvar, mean + noise * torch.exp(0.5 * logvar)

    def _frozen(self, parameters: list[torch.nn.Parameter]) -> contextlib.AbstractContextManager[None]:
        """Skip the weight gradients of the half a pass does not train (one process only:
        DistributedDataParallel expects a gradient for every parameter it wraps)."""
        return _no_weight_grads(parameters, enabled=not self.context.is_distributed)

    def _step(self, optimizer: torch.optim.Optimizer, parameters: list[torch.nn.Parameter]) -> None:
        self.precision.step(optimizer, self.settings.grad_clip, parameters)

    def _step_both(self) -> None:
        """Step both optimisers after one backward pass (each with its own loss scaler in fp16)."""
        self._step(self.optimizer_encoder, self.encoder_params)
        self._step(self.optimizer_decoder, self.decoder_params)

    # -- training ------------------------------------------------------------------------------
    def train_step(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
        self.model.train()
        _zero(self.encoder_params + self.decoder_params)
        if self.in_warmup:
            return self.warmup_step(images, generator)
        return self.adversarial_step(images, generator)

    def warmup_step(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
        """A plain VAE step (both halves stepped on ``beta KL + recon_weight SSE``)."""
        config = self.model.config
        pixels = images[0].numel()
        with self.precision.autocast():
            mean, logvar, z = self._posterior_sample(images, generator)
            recon = self.dec(z)
            error, sse = reconstruction_error(recon, images, config.ssim_weight)
            kl = kl_to_standard_normal(mean.float(), logvar.float()).sum(1).mean()
            loss_decoder = config.recon_weight * error
            loss = config.beta * kl + loss_decoder
        self.precision.backward(loss / pixels, self.optimizer_encoder, self.optimizer_decoder)
        self._step_both()
        _zero(self.encoder_params + self.decoder_params)
        return {"loss_encoder": loss.item() / pixels, "loss_decoder": loss_decoder.item() / pixels,
                "mse": sse.item() / pixels, "kl": kl.item(), "warmup": 1.0}

    def adversarial_step(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
        """One encoder update and one decoder update (Algorithm 1 of the paper)."""
        pending = self.encoder_update(images, generator)
        return self.decoder_update(images, pending)

    def encoder_update(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, Any]:
        """Passes 1 and 2: accumulate the gradient of ``L_E`` and step the encoder only.

        Returns the step's ``z`` and ``z_p`` (detached) and the encoder's metrics, for
        :meth:`decoder_update`.
        """
        config = self.model.config
        pixels = images[0].numel()
        n = images.shape[0]
        with self._frozen(self.decoder_params):
            with self.precision.autocast():
                mean, logvar, z = self._posterior_sample(images, generator)
                recon = self.dec(z)
                error, _ = reconstruction_error(recon, images, config.ssim_weight)
                kl = kl_to_standard_normal(mean.float(), logvar.float()).sum(1).mean()
                loss_1 = config.beta * kl + config.recon_weight * error
            self.precision.backward(loss_1 / pixels, self.optimizer_encoder)
        _zero(self.decoder_params)  # under DDP pass 1 also reached the decoder: not the encoder's business

        z_p = torch.randn(z.shape, generator=generator, device="cpu").to(z.device)
        with torch.no_grad(), self.precision.autocast():
            fake = self.dec(z_p)
        with self.precision.autocast():
            mean_f, logvar_f = self.enc(torch.cat([recon.detach(), fake.detach()]))
            kl_f = kl_to_standard_normal(mean_f.float(), logvar_f.float()).sum(1)
            hinge = torch.relu(config.margin - kl_f)
            loss_2 = config.alpha * (hinge[:n].mean() + hinge[n:].mean())
        self.precision.backward(loss_2 / pixels, self.optimizer_encoder)
        self._step(self.optimizer_encoder, self.encoder_params)
        _zero(self.encoder_params)
        loss_encoder = loss_1 + loss_2
        return {"z": z.detach(), "z_p": z_p, "loss_encoder": loss_encoder.item() / pixels, "kl": kl.item(),
                "hinge": (hinge[:n].mean() + hinge[n:].mean()).item()}

    def decoder_update(self, images: torch.Tensor, pending: dict[str, Any]) -> dict[str, float]:
        """Pass 3: ``L_G`` through the updated encoder; step the decoder only."""
        config = self.model.config
        pixels = images[0].numel()
        n = images.shape[0]
        with self._frozen(self.encoder_params):
            with self.precision.autocast():
                generated = self.dec(torch.cat([pending["z"], pending["z_p"]]))
                recon = generated[:n]
                error, sse = reconstruction_error(recon, images, config.ssim_weight)
                mean_g, logvar_g = self.enc(generated)
                kl_g = kl_to_standard_normal(mean_g.float(), logvar_g.float()).sum(1)
                kl_rec, kl_sam = kl_g[:n].mean(), kl_g[n:].mean()
                loss = config.alpha * (kl_rec + kl_sam) + config.recon_weight * error
            self.precision.backward(loss / pixels, self.optimizer_decoder)
        _zero(self.encoder_params)  # under DDP pass 3 also reached the encoder: discard
        self._step(self.optimizer_decoder, self.decoder_params)
        _zero(self.decoder_params)
        return {"loss_encoder": pending["loss_encoder"], "loss_decoder": loss.item() / pixels,
                "mse": sse.item() / pixels, "kl": pending["kl"], "kl_reconstructed": kl_rec.item(),
                "kl_sampled": kl_sam.item(), "hinge": pending["hinge"], "warmup": 0.0}
