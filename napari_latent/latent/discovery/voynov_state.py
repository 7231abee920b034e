"""The resumable training state of a Voynov & Babenko run (a safetensors file with a JSON header).

The deformator, the reconstructor (with its batch norm statistics), both Adam states, the
step, the random generator and the running accuracy are written atomically; loading never
unpickles, and continues a run only when it was made with the same settings and model (all
but :data:`RESUMABLE_CHANGES`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...container import (
    FormatError,
    NewerFormatError,
    flatten_state,
    read_container,
    unflatten_state,
    write_container,
)
from ...errors import UserInputError

STATE_FORMAT = "napari-latent-voynov-state"
#: Version 2 stores the nested state through :func:`~napari_latent.container.flatten_state`.
STATE_VERSION = 2
STATE_KIND = "voynov state file"
#: Settings that may differ between a saved state and the run that continues from it.
RESUMABLE_CHANGES = ("steps", "eval_samples", "save_every")


def save_state(path: Path, settings: dict[str, Any], step: int, running: dict[str, float], deformator: nn.Module,
               reconstructor: nn.Module, optimizers: dict[str, torch.optim.Optimizer],
               generator: torch.Generator) -> None:
    """Write the whole training state to ``path`` (atomically), with ``settings`` as its identity."""
    tensors: dict[str, torch.Tensor] = {}
    state = {"deformator": deformator.state_dict(), "reconstructor": reconstructor.state_dict(),
             "optimizers": {label: optimizer.state_dict()["state"] for label, optimizer in optimizers.items()},
             "rng": generator.get_state()}
    header = {"settings": settings, "step": step, "running": running,
              "state": flatten_state(state, "state", tensors)}
    write_container(path, STATE_FORMAT, STATE_VERSION, header, tensors, kind=STATE_KIND)


def load_state(path: Path, settings: dict[str, Any], deformator: nn.Module, reconstructor: nn.Module,
               optimizers: dict[str, torch.optim.Optimizer], generator: torch.Generator) -> tuple[int, dict]:
    """Restore everything from ``path`` into the given objects; return the step and the running numbers.

    Raises
    ------
    UserInputError
        For a file that is not a voynov state, one of an earlier version, one made with other
        ``settings``, or a damaged one.
    """
    try:
        header, tensors = read_container(path, STATE_FORMAT, STATE_VERSION, kind=STATE_KIND)
    except NewerFormatError:
        raise
    except FormatError as exc:
        raise UserInputError(f"{path}: not a voynov state file (delete it or choose another state= path)") from exc
    if header["format_version"] < STATE_VERSION:
        raise UserInputError(f"{path}: a voynov state file of an earlier napari-latent, which this version cannot "
                             "resume (delete it or choose another state= path)")
    saved = header.get("settings") or {}
    fixed = [k for k in sorted(set(saved) | set(settings)) if k not in RESUMABLE_CHANGES]
    differ = [k for k in fixed if saved.get(k) != settings.get(k)]
    if differ:
        details = ", ".join(f"{k} {saved.get(k)!r} -> {settings.get(k)!r}" for k in differ)
        raise UserInputError(f"{path}: the saved voynov run has other settings ({details}); use the same settings to "
                             "continue it, or another state= path to start afresh")
    try:
        state = unflatten_state(header["state"], tensors)
        deformator.load_state_dict(state["deformator"])
        reconstructor.load_state_dict(state["reconstructor"])
        for label, optimizer in optimizers.items():
            optimizer.load_state_dict({"state": state["optimizers"][label],
                                       "param_groups": optimizer.state_dict()["param_groups"]})
        generator.set_state(state["rng"])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise UserInputError(f"{path}: the {STATE_KIND} is incomplete or damaged ({exc})") from exc
    return int(header["step"]), dict(header.get("running") or {})

