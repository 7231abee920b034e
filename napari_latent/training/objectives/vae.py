"""The (beta-)VAE objective: negative ELBO with a weighted KL term.

Loss per image: the sum of squared errors over pixels (a Gaussian likelihood with fixed
variance) plus ``beta`` times the KL divergence of the posterior from N(0, I), summed over
latent dimensions (Kingma & Welling 2014; Higgins et al. 2017). The loss is reported per
pixel (divided by the pixel count) so that numbers are comparable across image sizes.
With ``ssim_weight`` the squared error gains an SSIM term
(:mod:`~napari_latent.training.objectives.reconstruction`).
"""

from __future__ import annotations

import torch

from ...models.vae import kl_to_standard_normal
from .base import Objective, register_objective
from .reconstruction import reconstruction_error


@register_objective
class VAEObjective(Objective):
    """Adam on the negative ELBO of a VAE."""

    name = "vae"
    default_lr = 1e-3

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.network = self.context.wrap(self.model)
        self.optimizer = self.adam(self.model.parameters())

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adam": self.optimizer}

    def train_step(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
        self.model.train()
        pixels = images[0].numel()
        with self.precision.autocast():
            out = self.network(images, generator)
            error, sse = reconstruction_error(out["reconstruction"], images, self.model.config.ssim_weight)
            kl = kl_to_standard_normal(out["mean"].float(), out["logvar"].float()).sum(1).mean()
            loss = (error + self.model.config.beta * kl) / pixels
        self.precision.minimize(loss, self.optimizer, self.settings.grad_clip, self.model.parameters())
        return {"loss": loss.item(), "mse": sse.item() / pixels, "kl": kl.item()}
