"""The ``tinyae`` training objective: mean squared reconstruction error plus a small code penalty.

The ``napari_latent.objectives`` entry point names this module; the engine looks the
objective up by the name the model class gives (``TinyAE.objective``).
"""

from __future__ import annotations

import torch

from napari_latent.training.objectives.base import Objective, register_objective


@register_objective
class TinyAEObjective(Objective):
    """Adam on ``MSE + code_weight * mean(code ** 2)``."""

    name = "tinyae"
    default_lr = 2e-3

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.network = self.context.wrap(self.model)  # DistributedDataParallel under torchrun
        self.optimizer = self.adam(self.model.parameters())

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adam": self.optimizer}

    def train_step(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
        self.model.train()
        with self.precision.autocast():
            reconstruction, codes = self.network(images)
            mse = (reconstruction.float() - images).pow(2).mean()
            loss = mse + self.model.config.code_weight * codes.float().pow(2).mean()
        self.precision.minimize(loss, self.optimizer, self.settings.grad_clip, self.model.parameters())
        return {"loss": loss.item(), "mse": mse.item()}
