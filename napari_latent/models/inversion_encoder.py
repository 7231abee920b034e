"""The learned inversion encoder of models that have no encoder of their own (GANs).

An :class:`InversionEncoder` maps images to codes in one latent space of its model. It is
trained on the model's own samples (``napari-latent train-encoder MODEL``; see
:mod:`napari_latent.training.encoder`) and stored in the model's checkpoint file under the
extra ``inversion_encoder``; its space and size are in the checkpoint's training facts
under ``"inversion_encoder"``. Inversion uses it as the starting point (``hybrid``) or
alone (``encoder``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import GenerativeModel
from .blocks import DownPath

EXTRA_NAME = "inversion_encoder"


class InversionEncoder(nn.Module):
    """Residual down path to 4x4 and a linear head to flat codes.

    Parameters
    ----------
    model : GenerativeModel
        The model whose codes it predicts (sizes and widths follow its config).
    space : str
        The latent space of the predicted codes.
    """

    def __init__(self, model: GenerativeModel, space: str) -> None:
        super().__init__()
        self.space = model.check_space(space)
        self.out_dim = model.latent_dim(space)
        self.down = DownPath(model.config, stop=4, blocks_per_level=1)
        self.head = nn.Linear(self.down.out_channels * 16, self.out_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.down(images).flatten(1))


def inversion_encoder_of(model: GenerativeModel) -> InversionEncoder | None:
    """The trained inversion encoder stored with ``model`` (None if it has none)."""
    state = (model.extras or {}).get(EXTRA_NAME)
    info: dict[str, Any] = (model.training_info or {}).get(EXTRA_NAME) or {}
    if state is None or "space" not in info:
        return None
    encoder = InversionEncoder(model, info["space"])
    encoder.load_state_dict({k: v.float() for k, v in state.items()})
    return encoder.to(model.device).eval()
