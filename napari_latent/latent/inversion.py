"""Inversion: finding the latent codes whose decoded images reproduce a real volume's slices.

Methods
-------
``encoder``
    One pass of the model's encoder (the posterior mean for VAEs, the continuous
    pre-quantisation map for VQ-VAEs), or of the learned inversion encoder of a GAN.
``optimize``
    Gradient descent on the codes of *all slices of the volume at once, as one batch*,
    after the StyleGAN2 projector (Karras et al. 2020, Appendix D): Adam with a learning
    rate that ramps up over the first 5% of steps and down (cosine) over the last 25%,
    starting from the mean code (the running mean ``w`` for StyleGAN), with Gaussian noise
    added to the codes early on (its scale decays quadratically to zero at 75% of the
    steps). The loss per slice is MSE plus ``ssim_weight`` times (1 - SSIM): no VGG
    weights can be downloaded here, so the LPIPS term of the projector is replaced by SSIM.
    In W+ every style input of a StyleGAN gets its own code.
``hybrid``
    The encoder's output as the starting point, then ``optimize``. No slice ends worse
    than its encoder start.
``auto``
    ``encoder`` for models with their own encoder; ``hybrid`` for GANs with a trained
    inversion encoder; ``optimize`` otherwise.

Each slice's code is independent; batching all slices turns a thousand small steps into a
few large ones, which is what makes whole-volume inversion fast on the CPU.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ..errors import UserInputError
from ..metrics import ssim
from ..models.base import GenerativeModel
from ..models.inversion_encoder import inversion_encoder_of
from ..progress import Operation, ProgressArg, ProgressEvent, StopFlag, run_operation, stop_requested
from ..volumes.io import Volume
from ..volumes.slicing import SliceSpec, slice_volume
from .codes import LatentCodes

METHODS = ("auto", "encoder", "optimize", "hybrid")


@dataclass
class InversionSettings:
    """Settings of optimisation-based inversion (``optimize`` and ``hybrid``).

    Parameters
    ----------
    steps : int
        Optimisation steps.
    lr : float
        Peak Adam learning rate, in units of the codes' spread (scaled by it).
    lr_rampup, lr_rampdown : float
        Fractions of the steps for the linear ramp-up and the cosine ramp-down.
    noise : float
        Initial noise on the codes, as a fraction of their spread.
    noise_ramp : float
        Fraction of the steps after which no noise is added.
    ssim_weight : float
        Weight of (1 - SSIM) beside the MSE.
    batch_size : int
        Slices optimised together (all of a typical volume; larger volumes in groups).
    """

    steps: int = 200
    lr: float = 0.1
    lr_rampup: float = 0.05
    lr_rampdown: float = 0.25
    noise: float = 0.05
    noise_ramp: float = 0.75
    ssim_weight: float = 0.2
    batch_size: int = 256

    def validate(self) -> None:
        """Raise :class:`UserInputError` for impossible settings."""
        if self.steps < 1:
            raise UserInputError(f"inversion needs at least 1 step, got {self.steps}")
        if not self.lr > 0:
            raise UserInputError(f"learning rate must be positive, got {self.lr}")
        if self.batch_size < 1:
            raise UserInputError(f"batch size must be positive, got {self.batch_size}")


def learning_rate(step: int, steps: int, settings: InversionSettings) -> float:
    """The projector's schedule: linear ramp-up, flat, cosine ramp-down."""
    t = step / max(steps, 1)
    ramp = min(1.0, (1.0 - t) / max(settings.lr_rampdown, 1e-8))
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp *= min(1.0, t / max(settings.lr_rampup, 1e-8))
    return settings.lr * ramp


def default_space(model: GenerativeModel) -> str:
    """The space inversion uses by default: the model's :attr:`~GenerativeModel.analysis_space` (StyleGAN ``w``)."""
    return model.analysis_space


@torch.no_grad()
def latent_statistics(model: GenerativeModel, space: str, samples: int = 512,
                      seed: int = 0) -> tuple[torch.Tensor, float]:
    """Mean code (:meth:`~GenerativeModel.mean_latent`) and spread (root mean squared distance to it) of
    prior samples in ``space``."""
    generator = torch.Generator().manual_seed(seed)
    source = model.default_space
    codes = model.to_space(model.sample_latent(samples, generator, source), source, space).float()
    mean = model.mean_latent(space, samples, seed).float().reshape(1, -1).to(codes.device)
    spread = float((codes - mean).pow(2).sum(1).mean().sqrt()) / math.sqrt(codes.shape[1])
    return mean.cpu(), max(spread, 1e-6)


def resolve_method(model: GenerativeModel, method: str, space: str) -> str:
    """Turn ``auto`` into a concrete method and check the method fits the model and space."""
    if method not in METHODS:
        raise UserInputError(f"unknown inversion method {method!r}; use one of {', '.join(METHODS)}")
    encoder = inversion_encoder_of(model)
    own_encoder = model.has_encoder and space == model.default_space
    has_encoder = own_encoder or (encoder is not None and encoder.space == space)
    if method == "auto":
        return "encoder" if own_encoder else ("hybrid" if has_encoder else "optimize")
    if method in ("encoder", "hybrid") and not has_encoder:
        hint = (" (train one with 'napari-latent train-encoder MODEL')" if not model.has_encoder else "")
        raise UserInputError(f"model {model.name!r} has no encoder for space {space!r}{hint}; use method 'optimize'")
    return method


@torch.no_grad()
def encode_images(model: GenerativeModel, images: torch.Tensor, space: str, batch_size: int = 128) -> torch.Tensor:
    """Codes of images from the model's encoder or its inversion encoder."""
    encoder = None if (model.has_encoder and space == model.default_space) else inversion_encoder_of(model)
    out = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].to(model.device)
        codes = model.encode(batch, space) if encoder is None else encoder(batch)
        out.append(codes.float().cpu())
    return torch.cat(out)


def _image_losses(model: GenerativeModel, codes: torch.Tensor, targets: torch.Tensor, space: str,
                  ssim_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image optimisation loss and MSE."""
    images = model.decode(codes, space).float()
    mse = (images - targets).pow(2).flatten(1).mean(1)
    loss = mse + ssim_weight * (1.0 - ssim(images, targets, reduction="none")) if ssim_weight > 0 else mse
    return loss, mse


@torch.no_grad()
def reconstruction_errors(model: GenerativeModel, codes: torch.Tensor, targets: torch.Tensor, space: str,
                          batch_size: int = 128) -> np.ndarray:
    """Per-slice MSE of decoded codes against target images."""
    errors = []
    for start in range(0, len(codes), batch_size):
        decoded = model.decode(codes[start:start + batch_size].to(model.device), space).float().cpu()
        errors.append((decoded - targets[start:start + batch_size]).pow(2).flatten(1).mean(1))
    return torch.cat(errors).double().numpy()


def iter_optimize_codes(model: GenerativeModel, targets: torch.Tensor, start: torch.Tensor, space: str,
                        settings: InversionSettings, spread: float, stop: StopFlag | None = None,
                        seed: int = 0) -> Operation[torch.Tensor]:
    """Optimise codes of all target images together (see the module docstring)."""
    device = model.device
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    results = []
    total = settings.steps * math.ceil(len(targets) / settings.batch_size)
    done = 0
    try:
        for begin in range(0, len(targets), settings.batch_size):
            target = targets[begin:begin + settings.batch_size].to(device)
            codes = start[begin:begin + settings.batch_size].clone().to(device).requires_grad_(True)
            optimizer = torch.optim.Adam([codes], lr=settings.lr, betas=(0.9, 0.999))
            for step in range(settings.steps):
                t = step / settings.steps
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(step, settings.steps, settings) * spread
                noise_scale = spread * settings.noise * max(0.0, 1.0 - t / max(settings.noise_ramp, 1e-8)) ** 2
                noise = torch.randn(codes.shape, generator=generator).to(device) * noise_scale
                loss, mse = _image_losses(model, codes + noise, target, space, settings.ssim_weight)
                optimizer.zero_grad(set_to_none=True)
                loss.sum().backward()
                optimizer.step()
                done += 1
                numbers = {"mse": float(mse.detach().mean()), "loss": float(loss.detach().mean())}
                yield ProgressEvent(done, total, "optimising codes", numbers, stage="invert")
                if stop_requested(stop):
                    break
            results.append(codes.detach().cpu())
            if stop_requested(stop):
                results.append(start[begin + len(target):].clone())
                break
    finally:
        for parameter in model.parameters():
            parameter.requires_grad_(True)
    return torch.cat(results)


def iter_invert(model: GenerativeModel, volume: Volume, method: str = "auto", space: str | None = None,
                steps: int | None = None, settings: InversionSettings | None = None, spec: SliceSpec | None = None,
                stop: StopFlag | None = None, seed: int = 0) -> Operation[LatentCodes]:
    """Invert a volume slice by slice (a generator; see :func:`invert`)."""
    space = model.check_space(space or default_space(model))
    method = resolve_method(model, method, space)
    settings = settings or InversionSettings()
    if steps is not None:
        settings.steps = int(steps)
    settings.validate()
    spec = spec or model.slice_spec or SliceSpec(size=model.image_size)
    if spec.size != model.image_size:
        raise UserInputError(f"slice size {spec.size} does not match the model's image size {model.image_size}")
    yield ProgressEvent(0, None, f"slicing {volume.name}", stage="slice")
    targets, geometry = slice_volume(volume, spec)
    mean, spread = latent_statistics(model, space)
    if method in ("encoder", "hybrid"):
        start = encode_images(model, targets, space)
        yield ProgressEvent(0, None, "encoded", stage="encode")
    else:
        start = mean.expand(len(targets), -1).clone()
    codes = start
    if method in ("optimize", "hybrid"):
        codes = yield from iter_optimize_codes(model, targets, start, space, settings, spread, stop, seed)
    errors = reconstruction_errors(model, codes, targets, space)
    if method == "hybrid":  # never worse than the encoder's start
        start_errors = reconstruction_errors(model, start, targets, space)
        worse = start_errors < errors
        codes[torch.from_numpy(worse)] = start[torch.from_numpy(worse)]
        errors = np.minimum(errors, start_errors)
    used: dict[str, Any] = {"seed": seed}
    if method != "encoder":
        used.update(asdict(settings))
    return LatentCodes(codes, geometry, space, errors, method, used, model.name, model.fingerprint,
                       str(volume.path) if volume.path else volume.name)


def invert(model: GenerativeModel, volume: Volume, method: str = "auto", space: str | None = None,
           steps: int | None = None, settings: InversionSettings | None = None, progress: ProgressArg = None,
           stop: StopFlag | None = None) -> LatentCodes:
    """Invert a volume into latent codes, one per kept slice.

    Parameters
    ----------
    model : GenerativeModel
        A loaded model; its ``slice_spec`` decides the slicing (any file orientation is
        resliced to the model's anatomical plane).
    volume : Volume
        The volume to invert.
    method : {"auto", "encoder", "optimize", "hybrid"}
        See the module docstring.
    space : str, optional
        Latent space (default ``w`` for StyleGAN, the main space otherwise; ``w+`` fits
        best, ``w`` stays closest to what the generator learned).
    steps : int, optional
        Optimisation steps (default 200).
    settings : InversionSettings, optional
        All optimisation settings.
    progress : callable, bool or None
        ``True`` for a terminal progress bar, a callable for every event.
    stop : StopFlag, optional
        Ends optimisation early; the codes found so far are returned.

    Returns
    -------
    LatentCodes
        Codes, slice positions, per-slice error, the method and settings; maps back onto
        the volume's grid with ``codes.reconstruct(model)``.
    """
    return run_operation(iter_invert(model, volume, method, space, steps, settings, stop=stop), progress)
