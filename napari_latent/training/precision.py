"""Mixed precision: float16 autocast with gradient scaling on CUDA, plain float32 elsewhere."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

import torch


class Precision:
    """Autocast and loss scaling for one device.

    Parameters
    ----------
    device : torch.device
    enabled : bool
        Request mixed precision; it is used only on CUDA (on the CPU, float32 training is
        both safer and, for these small convolutional nets, not slower).
    """

    def __init__(self, device: torch.device, enabled: bool = True) -> None:
        self.device = device
        self.enabled = bool(enabled and device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.enabled) if self.enabled else None

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Context for the forward pass."""
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=torch.float16)

    def backward(self, loss: torch.Tensor) -> None:
        """Backward pass of a (scaled) loss."""
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def step(self, optimizer: torch.optim.Optimizer, clip: float | None = None,
             parameters: Iterable[torch.nn.Parameter] | None = None) -> None:
        """Optimizer step (unscaling and clipping gradients first when asked)."""
        if clip is not None and parameters is not None:
            if self.scaler is not None:
                self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(list(parameters), clip)
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()

    def minimize(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, clip: float | None = None,
                 parameters: Iterable[torch.nn.Parameter] | None = None) -> None:
        """Zero the gradients, backward, and step."""
        optimizer.zero_grad(set_to_none=True)
        self.backward(loss)
        self.step(optimizer, clip, parameters)

    def state_dict(self) -> dict[str, Any]:
        """Scaler state (empty when not scaling)."""
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
