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
``projector``
    The official StyleGAN2 projector's recipe, for any model with a ``w`` space: one ``w``
    per slice (broadcast to every style input), starting at ``w_avg``; Adam with the lr
    0.1 ramped up over the first 5% and down (cosine) over the last 25% of the steps;
    Gaussian noise on ``w`` of ``0.05 * w_std`` (``w_std``: the root mean squared distance
    of prior ``w`` samples to the mean) decaying quadratically to zero at 75% of the steps.
    When the model has noise inputs (:meth:`~GenerativeModel.noise_inputs`), each slice
    also gets its own noise maps, started from its random stream, optimised, renormalised
    after each step and regularised (weight ``noise_regularization``, 1e5 as in the
    official code) by their multi-scale autocorrelation. The image loss is this module's
    (MSE plus SSIM), not LPIPS, whose VGG weights cannot be downloaded here. Codes are in
    ``w``; the noise maps only guide the optimisation and are not kept (the codes decode
    with the model's own noise, and their errors are measured so).
``auto``
    ``encoder`` for models with their own encoder; ``hybrid`` for GANs with a trained
    inversion encoder; ``optimize`` otherwise.

Each slice's code is independent; batching all slices turns a thousand small steps into a
few large ones, which is what makes whole-volume inversion fast on the CPU. Nothing couples
the codes of a batch: each slice's loss depends on its code alone (the summed loss gives each
code its own gradient), Adam's moments and the learning-rate schedule act element by element,
and the early noise of each slice is drawn from its own random stream, keyed by the seed and
the slice's position in its volume (:func:`slice_noise_generators`). So a slice gets the same
code (to float rounding) whichever slices, of whichever volumes, share its batch:
:mod:`napari_latent.latent.batched_inversion` relies on this to batch slices across volumes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
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
from ..volumes.slicing import SliceGeometry, SliceSpec, slice_volume
from .codes import LatentCodes

METHODS = ("auto", "encoder", "optimize", "hybrid", "projector")

#: Slices per batch at 64 px and below when ``batch_size`` is not set; larger images get
#: fewer, in proportion to their pixels (:func:`default_batch_size`).
DEFAULT_BATCH_SIZE = 256


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
    batch_size : int, optional
        Slices encoded or optimised together (of one volume or, in cohort inversion, of
        several). None: :func:`default_batch_size` of the model's image size (256 up to
        64 px, 64 at 128 px, 16 at 256 px, 4 at 512 px). The batch changes memory and
        speed, not the codes.
    noise_regularization : float
        Weight of the noise maps' autocorrelation penalty (``projector`` only).
    """

    steps: int = 200
    lr: float = 0.1
    lr_rampup: float = 0.05
    lr_rampdown: float = 0.25
    noise: float = 0.05
    noise_ramp: float = 0.75
    ssim_weight: float = 0.2
    batch_size: int | None = None
    noise_regularization: float = 1e5

    def validate(self) -> None:
        """Raise :class:`UserInputError` for impossible settings."""
        if self.steps < 1:
            raise UserInputError(f"inversion needs at least 1 step, got {self.steps}")
        if not self.lr > 0:
            raise UserInputError(f"learning rate must be positive, got {self.lr}")
        if self.batch_size is not None and self.batch_size < 1:
            raise UserInputError(f"batch size must be positive, got {self.batch_size}")


def default_batch_size(image_size: int) -> int:
    """Slices per batch when none is set: 256 up to 64 px, then fewer in proportion to the pixels.

    Optimisation keeps every activation of the decoder for the backward pass, about
    ``S**2`` floats per channel and layer and slice, so the batch shrinks with ``S**2``
    to keep memory near that of 256 slices at 64 px (a few GB): 64 at 128 px, 16 at 256 px,
    4 at 512 px.
    """
    return max(1, min(DEFAULT_BATCH_SIZE, DEFAULT_BATCH_SIZE * 64 * 64 // (int(image_size) ** 2)))


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
    if method == "projector":
        if "w" not in model.spaces:
            raise UserInputError(f"inversion method 'projector' needs a model with a w space; model {model.name!r} "
                                 f"has {', '.join(model.spaces)} (use 'optimize')")
        if space != "w":
            raise UserInputError(f"inversion method 'projector' finds codes in space 'w', not {space!r}")
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


def slice_noise_generators(keys: Sequence[int] | np.ndarray | torch.Tensor, seed: int = 0) -> list[torch.Generator]:
    """One random stream per slice, seeded by ``(seed, key)``: the slice's noise, whatever its batch.

    Parameters
    ----------
    keys : sequence of int
        A key per slice (its position in its volume: ``geometry.indices``), non-negative.
    seed : int
        The inversion's seed.
    """
    out = []
    for key in np.asarray(keys, dtype=np.int64).reshape(-1):
        state = np.random.SeedSequence([int(seed) % 2 ** 63, int(key)]).generate_state(1, np.uint64)[0]
        out.append(torch.Generator().manual_seed(int(state)))
    return out


def _iter_in_batches(model: GenerativeModel, targets: torch.Tensor, start: torch.Tensor,
                     settings: InversionSettings, seed: int, keys: Sequence[int] | np.ndarray | None,
                     stop: StopFlag | None, message: str,
                     optimise_batch: Callable[[torch.Tensor, torch.Tensor, list[torch.Generator]],
                                              Iterator[dict[str, float]]]) -> Operation[torch.Tensor]:
    """The frame the optimisation methods share: batches of targets, frozen weights, progress and stop.

    ``optimise_batch(target, codes, streams)`` optimises one batch's ``codes`` (a leaf tensor
    that requires grad, on the model's device) in place, with ``streams`` the targets' noise
    generators, and yields the numbers of each step. A stop keeps the codes reached and the
    starts of the targets not yet begun.
    """
    device = model.device
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    keys = np.arange(len(targets)) if keys is None else np.asarray(keys, dtype=np.int64)
    if len(keys) != len(targets):
        raise UserInputError(f"{len(keys)} noise keys given for {len(targets)} targets")
    batch_size = settings.batch_size or default_batch_size(model.image_size)
    results = []
    total = settings.steps * math.ceil(len(targets) / batch_size)
    done = 0
    try:
        for begin in range(0, len(targets), batch_size):
            target = targets[begin:begin + batch_size].to(device)
            codes = start[begin:begin + batch_size].clone().to(device).requires_grad_(True)
            streams = slice_noise_generators(keys[begin:begin + batch_size], seed)
            for numbers in optimise_batch(target, codes, streams):
                done += 1
                yield ProgressEvent(done, total, message, numbers, stage="invert")
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


def _noisy(codes: torch.Tensor, streams: list[torch.Generator], scale: float) -> torch.Tensor:
    """``codes`` plus ``scale`` times each target's next normal draw from its own stream (unchanged at 0)."""
    if scale <= 0:
        return codes
    noise = torch.stack([torch.randn(codes.shape[1], generator=g) for g in streams])
    return codes + noise.to(codes.device) * scale


def _noise_scale(step: int, settings: InversionSettings, spread: float) -> float:
    """The code noise of a step: ``spread * noise``, ramped down quadratically over ``noise_ramp`` of the steps."""
    t = step / settings.steps
    return spread * settings.noise * max(0.0, 1.0 - t / max(settings.noise_ramp, 1e-8)) ** 2


def iter_optimize_codes(model: GenerativeModel, targets: torch.Tensor, start: torch.Tensor, space: str,
                        settings: InversionSettings, spread: float, stop: StopFlag | None = None,
                        seed: int = 0, keys: Sequence[int] | np.ndarray | None = None) -> Operation[torch.Tensor]:
    """Optimise codes of all target images, ``settings.batch_size`` at a time (see the module docstring).

    ``keys`` (one non-negative integer per target; default ``0 .. n-1``) with ``seed`` choose
    each target's noise stream (:func:`slice_noise_generators`), so a target's code does
    not depend on the other targets of its batch.
    """

    def optimise_batch(target: torch.Tensor, codes: torch.Tensor,
                       streams: list[torch.Generator]) -> Iterator[dict[str, float]]:
        optimizer = torch.optim.Adam([codes], lr=settings.lr, betas=(0.9, 0.999))
        for step in range(settings.steps):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, settings.steps, settings) * spread
            noisy = _noisy(codes, streams, _noise_scale(step, settings, spread))
            loss, mse = _image_losses(model, noisy, target, space, settings.ssim_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
            yield {"mse": float(mse.detach().mean()), "loss": float(loss.detach().mean())}

    return (yield from _iter_in_batches(model, targets, start, settings, seed, keys, stop, "optimising codes",
                                        optimise_batch))


def noise_autocorrelation(noise: torch.Tensor) -> torch.Tensor:
    """The official projector's noise penalty per image: squared mean autocorrelation at one pixel's shift,
    summed over scales (halving down to 8 pixels). ``noise`` is ``(n, 1, h, w)``; returns ``(n,)``."""
    total = noise.new_zeros(noise.shape[0])
    while True:
        total = total + (noise * torch.roll(noise, 1, dims=3)).mean(dim=(1, 2, 3)).square()
        total = total + (noise * torch.roll(noise, 1, dims=2)).mean(dim=(1, 2, 3)).square()
        if noise.shape[2] <= 8:
            return total
        noise = torch.nn.functional.avg_pool2d(noise, kernel_size=2)


@torch.no_grad()
def _renormalize(maps: list[torch.Tensor]) -> None:
    for noise in maps:
        noise -= noise.mean(dim=(1, 2, 3), keepdim=True)
        noise *= noise.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()


def iter_project_codes(model: GenerativeModel, targets: torch.Tensor, start: torch.Tensor,
                       settings: InversionSettings, w_std: float, stop: StopFlag | None = None, seed: int = 0,
                       keys: Sequence[int] | np.ndarray | None = None) -> Operation[torch.Tensor]:
    """The ``projector`` method (see the module docstring): ``w`` codes of all target images.

    Each target's ``w`` noise and initial noise maps come from its own stream
    (:func:`slice_noise_generators`), so its code does not depend on its batch.
    """
    sizes = model.noise_inputs()

    def optimise_batch(target: torch.Tensor, codes: torch.Tensor,
                       streams: list[torch.Generator]) -> Iterator[dict[str, float]]:
        maps = [torch.stack([torch.randn(1, h, w, generator=g) for g in streams]).to(codes.device)
                for h, w in sizes]
        for noise in maps:
            noise.requires_grad_(True)
        optimizer = torch.optim.Adam([codes, *maps], lr=settings.lr, betas=(0.9, 0.999))
        for step in range(settings.steps):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, settings.steps, settings)
            noisy = _noisy(codes, streams, _noise_scale(step, settings, w_std))
            images = model.decode_noise(noisy, "w", maps or None).float()
            mse = (images - target).pow(2).flatten(1).mean(1)
            loss = mse
            if settings.ssim_weight > 0:
                loss = loss + settings.ssim_weight * (1.0 - ssim(images, target, reduction="none"))
            if maps:
                loss = loss + settings.noise_regularization * sum(noise_autocorrelation(m) for m in maps)
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
            _renormalize(maps)
            yield {"mse": float(mse.detach().mean()), "loss": float(loss.detach().mean())}

    return (yield from _iter_in_batches(model, targets, start, settings, seed, keys, stop, "projecting codes",
                                        optimise_batch))


@dataclass
class InversionPlan:
    """Everything decided before the first slice is inverted: method, space, settings, slicing, start statistics.

    Made by :func:`plan_inversion`; shared by the inversion of one volume (:func:`iter_invert`)
    and of many (:mod:`napari_latent.latent.batched_inversion`), so both find the same codes.

    Attributes
    ----------
    model : GenerativeModel
    method : str
        The concrete method (``auto`` resolved).
    space : str
    settings : InversionSettings
        A copy, with ``steps`` applied and ``batch_size`` resolved.
    spec : SliceSpec
        The slicing (the model's).
    mean : torch.Tensor
        ``(1, d)`` start code of ``optimize``.
    spread : float
        The codes' spread (the unit of the learning rate and the noise).
    seed : int
    """

    model: GenerativeModel
    method: str
    space: str
    settings: InversionSettings
    spec: SliceSpec
    mean: torch.Tensor
    spread: float
    seed: int = 0

    @property
    def batch_size(self) -> int:
        """Slices per batch."""
        return int(self.settings.batch_size or default_batch_size(self.model.image_size))

    @property
    def optimizes(self) -> bool:
        """True for ``optimize``, ``hybrid`` and ``projector``."""
        return self.method in ("optimize", "hybrid", "projector")

    def used_settings(self) -> dict[str, Any]:
        """The settings recorded with the codes (the seed; the optimisation settings unless ``encoder``)."""
        used: dict[str, Any] = {"seed": self.seed}
        if self.method != "encoder":
            used.update(asdict(self.settings))
        return used

    def codes(self, codes: torch.Tensor, errors: np.ndarray, geometry: SliceGeometry, source: str) -> LatentCodes:
        """The :class:`LatentCodes` of one volume's slices."""
        return LatentCodes(codes, geometry, self.space, errors, self.method, self.used_settings(), self.model.name,
                           self.model.fingerprint, source)


def plan_inversion(model: GenerativeModel, method: str = "auto", space: str | None = None, steps: int | None = None,
                   settings: InversionSettings | None = None, spec: SliceSpec | None = None,
                   seed: int = 0) -> InversionPlan:
    """Check the arguments of an inversion and decide what it will do (see :class:`InversionPlan`).

    Raises
    ------
    UserInputError
        For a space the model lacks, an unknown method, a method the model cannot serve,
        impossible settings, or a slice size other than the model's.
    """
    space = model.check_space(space or default_space(model))
    method = resolve_method(model, method, space)
    settings = dataclasses.replace(settings or InversionSettings())
    if steps is not None:
        settings.steps = int(steps)
    settings.validate()
    settings.batch_size = int(settings.batch_size or default_batch_size(model.image_size))
    spec = spec or model.slice_spec or SliceSpec(size=model.image_size)
    if spec.size != model.image_size:
        raise UserInputError(f"slice size {spec.size} does not match the model's image size {model.image_size}")
    mean, spread = latent_statistics(model, space)
    return InversionPlan(model, method, space, settings, spec, mean, spread, int(seed))


def iter_invert_slices(plan: InversionPlan, targets: torch.Tensor, keys: Sequence[int] | np.ndarray | None = None,
                       stop: StopFlag | None = None) -> Operation[tuple[torch.Tensor, np.ndarray]]:
    """Codes and per-slice MSE of target images ``(n, 1, S, S)`` under ``plan`` (a generator).

    ``keys`` choose each slice's noise stream (see :func:`iter_optimize_codes`): pass the
    slices' positions in their volume (``geometry.indices``) so that a slice's code does not
    depend on its batch.
    """
    model, space, batch = plan.model, plan.space, plan.batch_size
    if plan.method in ("encoder", "hybrid"):
        start = encode_images(model, targets, space, batch_size=batch)
        yield ProgressEvent(0, None, "encoded", stage="encode")
    else:
        start = plan.mean.expand(len(targets), -1).clone()
    codes = start
    if plan.method == "projector":
        w_std = plan.spread * math.sqrt(model.latent_dim(space))  # the official projector's w_std
        codes = yield from iter_project_codes(model, targets, start, plan.settings, w_std, stop, plan.seed, keys)
    elif plan.optimizes:
        codes = yield from iter_optimize_codes(model, targets, start, space, plan.settings, plan.spread, stop,
                                               plan.seed, keys)
    errors = reconstruction_errors(model, codes, targets, space, batch_size=batch)
    if plan.method == "hybrid":  # never worse than the encoder's start
        start_errors = reconstruction_errors(model, start, targets, space, batch_size=batch)
        worse = torch.from_numpy(start_errors < errors)
        codes[worse] = start[worse]
        errors = np.minimum(errors, start_errors)
    return codes, errors


def iter_invert(model: GenerativeModel, volume: Volume, method: str = "auto", space: str | None = None,
                steps: int | None = None, settings: InversionSettings | None = None, spec: SliceSpec | None = None,
                stop: StopFlag | None = None, seed: int = 0) -> Operation[LatentCodes]:
    """Invert a volume slice by slice (a generator; see :func:`invert`)."""
    plan = plan_inversion(model, method, space, steps, settings, spec, seed)
    yield ProgressEvent(0, None, f"slicing {volume.name}", stage="slice")
    targets, geometry = slice_volume(volume, plan.spec)
    codes, errors = yield from iter_invert_slices(plan, targets, geometry.indices, stop)
    return plan.codes(codes, errors, geometry, str(volume.path) if volume.path else volume.name)


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
    method : {"auto", "encoder", "optimize", "hybrid", "projector"}
        See the module docstring.
    space : str, optional
        Latent space (default ``w`` for StyleGAN, the main space otherwise; ``w+`` fits
        best, ``w`` stays closest to what the generator learned).
    steps : int, optional
        Optimisation steps (default 200).
    settings : InversionSettings, optional
        All optimisation settings (not changed by the call).
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
