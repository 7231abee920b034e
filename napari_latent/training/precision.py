"""Mixed precision: bf16 or fp16 autocast on CUDA (fp16 with one loss scaler per optimiser), fp32 elsewhere.

The ``precision`` setting of a run is one of :data:`PRECISIONS`:

``auto`` (the default)
    bf16 autocast on a CUDA GPU that has native bfloat16 (compute capability 8.0 and later:
    A100, RTX 30xx/40xx, H100, ...); fp16 autocast with gradient scaling on older GPUs
    (V100, T4, RTX 20xx), or plain fp32 for models that refuse fp16 (StyleGAN); fp32 on the
    CPU and on Apple MPS.
``bf16``
    bfloat16 autocast: the range of float32 with fewer mantissa bits, so no loss scaling is
    needed. On CUDA it needs native bfloat16 support; on the CPU it is offered explicitly
    (useful on CPUs with AVX-512 BF16 or AMX; on others it is slower than fp32).
``fp16``
    float16 autocast with a :class:`torch.amp.GradScaler` per optimiser (CUDA only). Each
    optimiser's gradients get their own dynamic scale: a GAN's generator and discriminator
    losses differ by orders of magnitude, and one overflow in the discriminator's backward
    pass should not halve the generator's scale.
``fp32``
    No autocast (what ``--no-amp`` asks for).

Models declare the autocast dtypes they train safely in
:attr:`~napari_latent.models.base.GenerativeModel.mixed_precision`; asking for another one
is a :class:`~napari_latent.errors.UserInputError`, and ``auto`` falls back to fp32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from ..errors import UserInputError
from .settings import PRECISIONS

__all__ = ["DTYPES", "PRECISIONS", "Precision", "bf16_supported", "resolve_precision"]

#: Autocast dtypes by resolved precision.
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def bf16_supported(device: torch.device) -> bool:
    """True when ``device`` computes in bfloat16 natively (not by emulation).

    The CPU always can (autocast runs bf16 kernels there, fast only with AVX-512 BF16 or
    AMX); CUDA devices from compute capability 8.0 (Ampere) on, and ROCm devices.
    """
    if device.type == "cpu":
        return True
    if device.type != "cuda":
        return False
    if device.index is None or device.index == torch.cuda.current_device():
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    with torch.cuda.device(device):
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))


def resolve_precision(requested: str | bool, device: torch.device,
                      allowed: Sequence[str] = ("bf16", "fp16")) -> str:
    """The precision a run uses: ``"bf16"``, ``"fp16"`` or ``"fp32"``.

    Parameters
    ----------
    requested : str or bool
        One of :data:`PRECISIONS`; ``True`` means ``"auto"`` and ``False`` ``"fp32"`` (the
        old ``amp`` flag).
    device : torch.device
        Where the run trains.
    allowed : sequence of str
        The autocast dtypes the model trains safely with (its ``mixed_precision``).

    Returns
    -------
    str

    Raises
    ------
    UserInputError
        For an unknown value, bf16 on a device without it, fp16 off CUDA, or a dtype the
        model refuses.
    """
    if isinstance(requested, bool):
        requested = "auto" if requested else "fp32"
    text = str(requested).strip().lower()
    if text not in PRECISIONS:
        raise UserInputError(f"unknown precision {requested!r}; use one of {', '.join(PRECISIONS)}")
    if text == "fp32":
        return "fp32"
    if text == "auto":
        if device.type != "cuda":
            return "fp32"
        if "bf16" in allowed and bf16_supported(device):
            return "bf16"
        return "fp16" if "fp16" in allowed else "fp32"
    if text not in allowed:
        raise UserInputError(f"this model does not train in {text} autocast (it allows "
                             f"{', '.join(allowed) or 'fp32 only'}); use --precision auto or fp32")
    if text == "fp16" and device.type != "cuda":
        raise UserInputError(f"fp16 mixed precision needs a CUDA device, not {device.type}; "
                             "use --precision bf16 or fp32")
    if text == "bf16" and not bf16_supported(device):
        what = "this GPU has no native bfloat16 (compute capability 8.0 or later)" if device.type == "cuda" \
            else f"bf16 autocast is offered on CUDA and the CPU, not on {device.type}"
        raise UserInputError(f"--precision bf16: {what}; use --precision auto, fp16 or fp32")
    return text


class Precision:
    """Autocast and loss scaling for one run.

    Parameters
    ----------
    device : torch.device
    mode : str or bool
        The requested precision (see :func:`resolve_precision`; ``True``/``False`` are the
        old ``amp`` flag).
    allowed : sequence of str
        The autocast dtypes the model allows.

    Attributes
    ----------
    mode : str
        The resolved precision: ``"bf16"``, ``"fp16"`` or ``"fp32"``.
    dtype : torch.dtype or None
        The autocast dtype (None: no autocast).

    Notes
    -----
    In fp16 every optimiser has its own :class:`torch.amp.GradScaler`. The engine calls
    :meth:`attach` with the objective's optimisers (their names key the checkpointed scaler
    states); :meth:`backward` scales a loss with the scaler of the optimiser(s) it trains,
    and :meth:`step` unscales, clips, steps and updates that optimiser's scaler.
    """

    def __init__(self, device: torch.device, mode: str | bool = "auto",
                 allowed: Sequence[str] = ("bf16", "fp16")) -> None:
        self.device = device
        self.mode = resolve_precision(mode, device, allowed)
        self.dtype: torch.dtype | None = DTYPES.get(self.mode)
        self._scalers: dict[int, torch.amp.GradScaler] = {}
        self._attached: dict[str, torch.optim.Optimizer] = {}

    @property
    def enabled(self) -> bool:
        """True when forward passes run under autocast."""
        return self.dtype is not None

    @property
    def scaling(self) -> bool:
        """True when losses are scaled (fp16)."""
        return self.mode == "fp16"

    def attach(self, optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
        """Give every optimiser its scaler (fp16), named as in the objective's ``optimizers()``."""
        self._attached = dict(optimizers)
        for optimizer in self._attached.values():
            self.scaler(optimizer)

    def scaler(self, optimizer: torch.optim.Optimizer) -> torch.amp.GradScaler | None:
        """The loss scaler of ``optimizer`` (None unless fp16)."""
        if not self.scaling:
            return None
        key = id(optimizer)
        if key not in self._scalers:
            self._scalers[key] = torch.amp.GradScaler(self.device.type)
        return self._scalers[key]

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Context for the forward pass."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def _loss_optimizers(self, optimizers: tuple[torch.optim.Optimizer, ...]) -> tuple[torch.optim.Optimizer, ...]:
        if optimizers:
            return optimizers
        if len(self._attached) == 1:
            return tuple(self._attached.values())
        raise TypeError("with fp16 loss scaling and several optimisers, name the optimiser(s) a loss trains: "
                        "precision.backward(loss, optimizer)")

    def backward(self, loss: torch.Tensor, *optimizers: torch.optim.Optimizer) -> None:
        """Backward pass of ``loss``, scaled for the optimiser(s) whose parameters it trains.

        Without optimisers, the objective's only optimiser (see :meth:`attach`). When one
        loss trains several optimisers (IntroVAE's warm-up) it is scaled by the smallest of
        their scales and each optimiser's gradients are then multiplied up to its own scale
        (the scales are powers of two, so this is exact); their parameters must hold no
        gradients before the call.
        """
        if not self.scaling:
            loss.backward()
            return
        optimizers = self._loss_optimizers(optimizers)
        scalers = [self.scaler(o) for o in optimizers]
        if len(scalers) == 1:
            scalers[0].scale(loss).backward()
            return
        params = [[p for group in o.param_groups for p in group["params"]] for o in optimizers]
        if any(p.grad is not None for group in params for p in group):
            raise RuntimeError("a loss scaled for several optimisers needs their gradients zeroed first")
        scaled = [s.scale(loss) for s in scalers]  # also initialises every scaler's scale
        scales = [s.get_scale() for s in scalers]
        low = min(range(len(scales)), key=scales.__getitem__)
        scaled[low].backward()
        for group, scale in zip(params, scales, strict=True):
            if scale != scales[low]:
                for p in group:
                    if p.grad is not None:
                        p.grad.mul_(scale / scales[low])

    def step(self, optimizer: torch.optim.Optimizer, clip: float | None = None,
             parameters: Iterable[torch.nn.Parameter] | None = None) -> None:
        """Optimizer step (unscaling and clipping gradients first when asked); updates its scale."""
        scaler = self.scaler(optimizer)
        if clip is not None and parameters is not None:
            if scaler is not None:
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(list(parameters), clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()

    def minimize(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, clip: float | None = None,
                 parameters: Iterable[torch.nn.Parameter] | None = None) -> None:
        """Zero the gradients, backward, and step."""
        optimizer.zero_grad(set_to_none=True)
        self.backward(loss, optimizer)
        self.step(optimizer, clip, parameters)

    def state_dict(self, optimizers: Mapping[str, torch.optim.Optimizer] | None = None) -> dict[str, Any]:
        """The scalers' states by optimiser name (``{"scalers": {...}}``; empty unless fp16)."""
        if not self.scaling:
            return {}
        named = self._attached if optimizers is None else optimizers
        return {"scalers": {name: self.scaler(o).state_dict() for name, o in named.items()}}

    def load_state_dict(self, state: Mapping[str, Any],
                        optimizers: Mapping[str, torch.optim.Optimizer] | None = None) -> None:
        """Restore :meth:`state_dict` output.

        Also reads the one shared scaler state of checkpoints written before there was a
        scaler per optimiser (every optimiser's scaler then continues from it), and ignores
        scaler states when this run does not scale (a run resumed in bf16 or fp32).
        """
        if not self.scaling or not state:
            return
        named = self._attached if optimizers is None else optimizers
        states = state.get("scalers")
        for name, optimizer in named.items():
            saved = state if states is None else states.get(name)
            if saved:
                self.scaler(optimizer).load_state_dict(dict(saved))
