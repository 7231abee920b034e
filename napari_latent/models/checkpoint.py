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
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_save
from torch import nn

from .._atomic import write_bytes_atomic
from ..device import get_device
from ..errors import CheckpointError, UserInputError
from ..volumes.slicing import SliceSpec
from .base import GenerativeModel, model_class, model_fingerprint

FORMAT = "napari-latent-checkpoint"
FORMAT_VERSION = 1
HEADER_KEY = "napari_latent"
DEMO_NAME = "demo"


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


# -- nested state <-> (JSON, tensors) ----------------------------------------------------------

def flatten_state(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Move every tensor of a nested structure into ``tensors``; return the JSON remainder."""
    if isinstance(obj, torch.Tensor):
        key = f"{prefix}"
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if not all(isinstance(k, str | int) for k in obj):
            raise TypeError(f"state keys must be str or int at {prefix}")
        return {"__dict__": [[k, flatten_state(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        items = [flatten_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if hasattr(obj, "item") and hasattr(obj, "dtype"):  # numpy scalar
        return obj.item()
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix} in a checkpoint")


def unflatten_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            try:
                return tensors[obj["__tensor__"]]
            except KeyError:
                raise CheckpointError(f"the checkpoint is damaged: tensor {obj['__tensor__']!r} is missing") from None
        if "__dict__" in obj:
            return {k: unflatten_state(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(unflatten_state(v, tensors) for v in obj["__tuple__"])
        return {k: unflatten_state(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unflatten_state(v, tensors) for v in obj]
    return obj


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
    path = Path(path)
    if path.suffix != ".safetensors":
        raise UserInputError(f"{path}: a model file must end in .safetensors")
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
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model.name,
        "config": model.config.to_json(),
        "slice_spec": slice_spec.to_json() if slice_spec is not None else None,
        "training": training or {},
        "fingerprint": model_fingerprint(model),
        "extras": sorted(extras or {}),
        "state": state_json,
        "half_precision": bool(half_precision),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    payload = safetensors_save(tensors, metadata={HEADER_KEY: json.dumps(header)})
    return write_bytes_atomic(path, payload)


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


def read_safetensors_header(path: Path, not_ours: str = "not one of napari-latent's",
                            prefix: str = "") -> Any:
    """The parsed JSON header of any napari-latent ``.safetensors`` file (model, codes, directions).

    Reads the header only, never the tensors and never a pickle. ``prefix`` starts the
    message of an unreadable file and ``not_ours`` ends that of a safetensors file without
    our header. Raises :class:`CheckpointError` (a :class:`UserInputError`).
    """
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        hint = " (a PyTorch pickle? napari-latent never loads pickles)" if _looks_like_pickle(path) else ""
        raise CheckpointError(f"{path}: {prefix}not a valid safetensors file{hint}") from exc
    if HEADER_KEY not in metadata:
        raise CheckpointError(f"{path}: a safetensors file, but {not_ours} (no '{HEADER_KEY}' header)")
    try:
        return json.loads(metadata[HEADER_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: the napari-latent header is not valid JSON") from exc


def read_header(path_or_name: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a checkpoint's JSON header without loading weights."""
    path = _resolve(path_or_name)
    header = read_safetensors_header(path, "not a napari-latent model", "not a napari-latent model file: ")
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a napari-latent model file (format {header.get('format')!r})")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: made by a newer napari-latent (format version {version}); please upgrade")
    return header


def _looks_like_pickle(path: Path) -> bool:
    with open(path, "rb") as handle:
        start = handle.read(4)
    return start[:1] == b"\x80" or start[:2] == b"PK"


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
    groups: dict[str, dict[str, torch.Tensor]] = {}
    state_tensors: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open handles are not mappings
                prefix, _, rest = key.partition(".")
                if prefix == "state":
                    if with_state:
                        state_tensors[key] = handle.get_tensor(key)
                    continue
                groups.setdefault(prefix, {})[rest] = handle.get_tensor(key)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: the model file is truncated or damaged ({exc})") from exc
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
        state = unflatten_state(header["state"], state_tensors)
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
        A ``.safetensors`` checkpoint written by napari-latent, or ``"demo"`` for the
        model bundled with the package.
    device : str or torch.device
        ``"auto"`` (CUDA, then MPS, then CPU) or a device name.

    Returns
    -------
    GenerativeModel
        In evaluation mode, with ``slice_spec``, ``training_info``, ``source_path``,
        ``fingerprint`` and ``extras`` (state dicts of extra modules) attributes. A GAN
        comes with the moving average (EMA) of its generator weights.
    """
    checkpoint = read_checkpoint(path_or_name, device="cpu", with_state=False)
    model = checkpoint.model
    ema = checkpoint.extras.get("ema")
    if ema is not None and hasattr(model, "generator"):
        # GANs are used with the moving average of their generator weights.
        model.generator.load_state_dict({k: v.to(torch.float32) for k, v in ema.items()})
        model.fingerprint = model_fingerprint(model)
    model.extras = checkpoint.extras
    return model.to(get_device(device))
