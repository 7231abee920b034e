"""The checkpoint format: one ``.safetensors`` file per model.

The file holds the weights (``model.*``; optional extra modules such as ``ema.*`` or
``inversion_encoder.*``; optional training state under ``state.*``) and, in the
safetensors header's metadata under the key ``napari_latent``, a JSON document:

```
{"format": "napari-latent-checkpoint", "format_version": 1,
 "model": "vae", "config": {...}, "slice_spec": {...} | null,
 "training": {epochs, steps, seed, data_fingerprint, final_metrics, ...},
 "fingerprint": "...", "extras": [...], "state": {...} | null, "created": "..."}
```

Loading never unpickles anything: safetensors stores raw tensors and the header is JSON.
A file that is not a valid checkpoint (a ``.pt`` pickle, a random or truncated file, a
safetensors file of another program) gets a :class:`CheckpointError`. Writes are atomic.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..container import flatten_state, read_container, read_container_header, unflatten_state, write_container
from ..device import get_device
from ..errors import CheckpointError
from ..volumes.slicing import SliceSpec
from .base import MODELS, GenerativeModel, model_class, model_fingerprint

FORMAT = "napari-latent-checkpoint"
FORMAT_VERSION = 1
DEMO_NAME = "demo"
KIND = "model file"


@dataclass
class Checkpoint:
    """Everything a checkpoint file holds.

    Attributes
    ----------
    model : GenerativeModel
        The model with its weights loaded.
    slice_spec : SliceSpec or None
        The preprocessing the model was trained with.
    training : dict
        Training facts (epochs, steps, seed, data fingerprint, final metrics, settings).
    extras : dict of str to dict
        State dicts of extra modules (for example ``"ema"``, ``"inversion_encoder"``).
    state : dict or None
        Resumable training state (optimisers, counters, random generators), if saved.
    header : dict
        The raw JSON header.
    path : Path or None
    """

    model: GenerativeModel
    slice_spec: SliceSpec | None = None
    training: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    state: dict[str, Any] | None = None
    header: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


# -- save --------------------------------------------------------------------------------------

def _state_dict_of(module: nn.Module | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return module.state_dict() if isinstance(module, nn.Module) else dict(module)


def save_checkpoint(path: str | os.PathLike[str], model: GenerativeModel, slice_spec: SliceSpec | None = None,
                    training: dict[str, Any] | None = None,
                    extras: dict[str, nn.Module | dict[str, torch.Tensor]] | None = None,
                    state: dict[str, Any] | None = None, half_precision: bool = False) -> Path:
    """Write a model (and optionally its training state) to one ``.safetensors`` file, atomically.

    Parameters
    ----------
    path : path-like
        Output file; ``.safetensors`` is the expected suffix.
    model : GenerativeModel
    slice_spec : SliceSpec, optional
        The preprocessing the model was trained with.
    training : dict, optional
        JSON-serialisable training facts.
    extras : dict, optional
        Extra modules or state dicts to store under their name (``"ema"``, ...).
    state : dict, optional
        Resumable training state: nested dicts/lists of tensors and plain values.
    half_precision : bool
        Store floating-point weights as float16 (halves the file; used for bundled models).

    Returns
    -------
    Path
    """
    _check_registered(model)
    tensors: dict[str, torch.Tensor] = {}

    def put(prefix: str, state_dict: dict[str, torch.Tensor]) -> None:
        for key, value in state_dict.items():
            value = value.detach().cpu().contiguous().clone()
            if half_precision and value.is_floating_point():
                value = value.half()
            tensors[f"{prefix}.{key}"] = value

    put("model", model.state_dict())
    for name, module in (extras or {}).items():
        put(name, _state_dict_of(module))
    state_json = flatten_state(state, "state", tensors) if state is not None else None
    header = {
        "model": model.name,
        "config": model.config.to_json(),
        "slice_spec": slice_spec.to_json() if slice_spec is not None else None,
        "training": training or {},
        "fingerprint": model_fingerprint(model),
        "extras": sorted(extras or {}),
        "state": state_json,
        "half_precision": bool(half_precision),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    return write_container(path, FORMAT, FORMAT_VERSION, header, tensors, kind=KIND)


def _check_registered(model: GenerativeModel) -> None:
    """Refuse a model whose class is not the family registered under its name: it could not be loaded back."""
    cls = MODELS.get(model.name) if model.name in MODELS else None
    if cls is None or not isinstance(model, cls):
        raise CheckpointError(f"model {model.name!r} is not a registered model family, so a checkpoint of it could "
                              "not be opened again; use it from the script (a wrap()ped model), or register a family "
                              "with @register_model in a plugin (docs/models.md, 'Your own PyTorch module')")


# -- load --------------------------------------------------------------------------------------

def demo_model_path() -> Path:
    """Path of the model bundled with the package."""
    return Path(str(resources.files("napari_latent.models") / "data" / "demo.safetensors"))


def _resolve(path_or_name: str | os.PathLike[str]) -> Path:
    if str(path_or_name) == DEMO_NAME:
        path = demo_model_path()
        if not path.is_file():
            raise CheckpointError("the bundled demo model is missing from this installation")
        return path
    path = Path(path_or_name)
    if not path.exists():
        raise CheckpointError(f"{path}: no such model file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a model file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty")
    return path


def read_header(path_or_name: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a checkpoint's JSON header without loading weights."""
    return read_container_header(_resolve(path_or_name), FORMAT, FORMAT_VERSION, kind=KIND, error=CheckpointError)


def read_checkpoint(path_or_name: str | os.PathLike[str], device: str | torch.device = "cpu",
                    with_state: bool = True) -> Checkpoint:
    """Read a checkpoint file completely.

    Parameters
    ----------
    path_or_name : path-like or "demo"
    device : str or torch.device
        Where to put the model (``"auto"`` allowed).
    with_state : bool
        Also read the resumable training state.

    Raises
    ------
    CheckpointError
        For files that are missing, not ours, truncated or inconsistent.
    """
    path = _resolve(path_or_name)
    header = read_header(path)
    cls = model_class(header.get("model", ""))
    config = cls.config_class.from_json(header.get("config") or {})
    model = cls(config)
    _, tensors = read_container(path, FORMAT, FORMAT_VERSION, kind=KIND, error=CheckpointError,
                                keys=lambda key: with_state or not key.startswith("state."))
    groups: dict[str, dict[str, torch.Tensor]] = {}
    state_tensors: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        prefix, _, rest = key.partition(".")
        if prefix == "state":
            state_tensors[key] = tensor
        else:
            groups.setdefault(prefix, {})[rest] = tensor
    weights = groups.pop("model", {})
    reference = model.state_dict()
    missing = sorted(set(reference) - set(weights))
    unexpected = sorted(set(weights) - set(reference))
    if missing or unexpected:
        raise CheckpointError(f"{path}: the weights do not match a {cls.name!r} model with its settings "
                              f"({len(missing)} missing, {len(unexpected)} unexpected)")
    for key, value in weights.items():
        if value.shape != reference[key].shape:
            raise CheckpointError(f"{path}: weight {key!r} has shape {tuple(value.shape)}, "
                                  f"expected {tuple(reference[key].shape)}")
    model.load_state_dict({k: v.to(reference[k].dtype) for k, v in weights.items()})
    model.eval()
    model.to(get_device(device))
    spec = SliceSpec.from_json(header["slice_spec"]) if header.get("slice_spec") else None
    state = None
    if with_state and header.get("state") is not None:
        state = unflatten_state(header["state"], state_tensors, CheckpointError)
    attach_checkpoint_facts(model, spec, header.get("training") or {}, path)
    return Checkpoint(model, spec, header.get("training") or {}, groups, state, header, path)


def attach_checkpoint_facts(model: GenerativeModel, slice_spec: SliceSpec | None, training: dict[str, Any],
                            path: Path | None) -> None:
    """Keep the preprocessing and provenance on the model object for later stages."""
    model.slice_spec = slice_spec
    model.training_info = training
    model.source_path = path
    model.fingerprint = model_fingerprint(model)


def load_model(path_or_name: str | os.PathLike[str], device: str | torch.device = "auto") -> GenerativeModel:
    """Load a model for use.

    Parameters
    ----------
    path_or_name : path-like or "demo"
        A ``.safetensors`` checkpoint written by napari-latent, ``"demo"`` for the
        model bundled with the package, or a file one of the model importers reads (an
        official StyleGAN2-ADA ``network-snapshot-*.pkl``; see
        :mod:`napari_latent.models.importers`), imported with its default options.
    device : str or torch.device
        ``"auto"`` (CUDA, then MPS, then CPU) or a device name.

    Returns
    -------
    GenerativeModel
        In evaluation mode, with ``slice_spec``, ``training_info``, ``source_path``,
        ``fingerprint`` and ``extras`` (state dicts of extra modules) attributes. A GAN
        comes with the moving average (EMA) of its generator weights.
    """
    try:
        checkpoint = read_checkpoint(path_or_name, device="cpu", with_state=False)
    except CheckpointError as error:
        model = _import_foreign(path_or_name, error)
        return model.to(get_device(device))
    model = checkpoint.model
    ema = checkpoint.extras.get("ema")
    if ema is not None and hasattr(model, "generator"):
        # GANs are used with the moving average of their generator weights.
        model.generator.load_state_dict({k: v.to(torch.float32) for k, v in ema.items()})
        model.fingerprint = model_fingerprint(model)
    model.extras = checkpoint.extras
    return model.to(get_device(device))


def _import_foreign(path_or_name: str | os.PathLike[str], error: CheckpointError) -> GenerativeModel:
    """Open a file that is not our checkpoint through the importer that reads it, else raise ``error``."""
    from .importers import MissingImportOptionError, find_importer, import_model

    path = Path(path_or_name)
    if str(path_or_name) == DEMO_NAME or not path.is_file() or path.stat().st_size == 0:
        raise error
    try:
        importer = find_importer(path)
    except CheckpointError:
        raise error from None
    try:
        model = import_model(path, importer.name)
    except MissingImportOptionError as needs:  # the file may be that importer's: say how to import it
        raise CheckpointError(f"{error}; {needs.hint}") from None
    attach_checkpoint_facts(model, model.slice_spec, model.training_info, path)
    return model
