"""Training the inversion encoder of a model on the model's own samples.

GANs have no encoder, but optimisation-based inversion converges far faster from a good
start. The inversion encoder (:class:`~napari_latent.models.inversion_encoder.InversionEncoder`)
learns to predict the codes of images the model itself generates: codes are drawn from
the prior (mapped to the target space, e.g. ``w``), decoded, and the encoder is trained on
two losses: the code error (normalised by the codes' variance per dimension) and the
image error of decoding its prediction (in the spirit of Tov et al. 2021, "Designing an
encoder for StyleGAN image manipulation", without their perceptual terms, which need
downloaded weights). The encoder is stored in the model's checkpoint file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import UserInputError
from ..models.base import GenerativeModel
from ..models.checkpoint import read_checkpoint, save_checkpoint
from ..models.inversion_encoder import EXTRA_NAME, InversionEncoder
from ..progress import Operation, ProgressArg, ProgressEvent, StopFlag, run_operation, stop_requested


@dataclass
class EncoderResult:
    """A trained inversion encoder and how well it did on fresh samples."""

    encoder: InversionEncoder
    space: str
    steps: int
    code_error: float
    image_mse: float
    stopped: bool = False

    def info(self) -> dict[str, Any]:
        """The facts stored in the checkpoint under ``training["inversion_encoder"]``."""
        return {"space": self.space, "steps": self.steps, "code_error": self.code_error,
                "image_mse": self.image_mse}


def iter_train_encoder(model: GenerativeModel, space: str | None = None, steps: int = 2000, batch_size: int = 32,
                       lr: float = 1e-3, image_weight: float = 1.0, seed: int = 0,
                       stop: StopFlag | None = None) -> Operation[EncoderResult]:
    """Train an inversion encoder for ``model`` (a generator of progress events).

    Parameters
    ----------
    model : GenerativeModel
    space : str, optional
        The space to predict (default ``w`` for StyleGAN, the main space otherwise).
    steps, batch_size, lr : int, int, float
        Adam optimisation of the encoder.
    image_weight : float
        Weight of the image MSE of decoded predictions beside the code error.
    seed : int
        Seed of the encoder's initial weights and the sampled codes.
    """
    space = model.check_space(space or ("w" if "w" in model.spaces else model.default_space))
    if steps < 1 or batch_size < 2:
        raise UserInputError("train-encoder needs at least 1 step and a batch of at least 2")
    device = model.device
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = InversionEncoder(model, space).to(device)
    generator = torch.Generator().manual_seed(seed)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            codes = model.to_space(model.sample_latent(n, generator), model.default_space, space).float()
            return codes, model.decode(codes, space).float()

    reference, _ = draw(512)
    scale = reference.std(0).clamp_min(1e-6)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=lr)
    code_error = image_mse = float("nan")
    done = 0
    try:
        for done in range(1, steps + 1):
            encoder.train()
            codes, images = draw(batch_size)
            predicted = encoder(images)
            code_loss = ((predicted - codes) / scale).pow(2).mean()
            loss = code_loss
            if image_weight > 0:
                loss = loss + image_weight * (model.decode(predicted, space).float() - images).pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            yield ProgressEvent(done, steps, "training the inversion encoder",
                                {"loss": float(loss.detach()), "code_error": float(code_loss.detach())},
                                stage="train-encoder")
            if stop_requested(stop):
                break
        encoder.eval()
        with torch.no_grad():
            codes, images = draw(256)
            predicted = encoder(images)
            code_error = float(((predicted - codes) / scale).pow(2).mean())
            image_mse = float((model.decode(predicted, space).float() - images).pow(2).mean())
    finally:
        for parameter in model.parameters():
            parameter.requires_grad_(True)
    return EncoderResult(encoder, space, done, code_error, image_mse, stopped=stop_requested(stop))


def train_encoder(model: GenerativeModel, space: str | None = None, steps: int = 2000, batch_size: int = 32,
                  lr: float = 1e-3, seed: int = 0, progress: ProgressArg = None,
                  stop: StopFlag | None = None) -> EncoderResult:
    """Train an inversion encoder to the end (see :func:`iter_train_encoder`)."""
    return run_operation(iter_train_encoder(model, space, steps, batch_size, lr, seed=seed, stop=stop), progress)


def store_inversion_encoder(path: str | os.PathLike[str], result: EncoderResult) -> Path:
    """Add (or replace) the inversion encoder in a model's checkpoint file, atomically."""
    checkpoint = read_checkpoint(path, device="cpu", with_state=True)
    extras: dict[str, Any] = dict(checkpoint.extras)
    extras[EXTRA_NAME] = {k: v.detach().cpu() for k, v in result.encoder.state_dict().items()}
    training = dict(checkpoint.training)
    training[EXTRA_NAME] = result.info()
    half = bool(checkpoint.header.get("half_precision"))
    return save_checkpoint(path, checkpoint.model, checkpoint.slice_spec, training, extras, checkpoint.state,
                           half_precision=half)
