"""The ``monai`` importer: a MONAI AutoencoderKL or VQVAE from its weights and constructor arguments.

MONAI saves a network as a state dict (``torch.save(net.state_dict(), "model.pt")``, or a
``.safetensors`` file) and describes it by its constructor arguments, either in a JSON file of
their own (``{"_target_": "AutoencoderKL", "spatial_dims": 2, ...}``) or in a MONAI bundle's
config (``configs/inference.json``: ``{"autoencoder_def": {"_target_": ...}, ...}``). The
importer needs both: ``import_model("model.pt", config="network.json")``.

Nothing from the files is executed: ``.pt`` files are read by torch's weights-only loader
(``weights_only=True``), which rebuilds tensors and plain containers only; bundle configs
are read as data, ``@name`` references to plain values are resolved and ``$`` expressions
are refused.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import torch

from ...errors import CheckpointError, UserInputError
from ..importers import MissingImportOptionError, ModelImporter, register_importer
from .config import DEFAULT_INTENSITY_RANGE, parse_intensity_range
from .model import MonaiAutoencoder, MonaiAutoencoderKL, MonaiVQVAE

#: The families by MONAI class name (the last part of a ``_target_``).
FAMILIES: dict[str, type[MonaiAutoencoder]] = {"AutoencoderKL": MonaiAutoencoderKL, "VQVAE": MonaiVQVAE}
#: Default square image size when the ``image_size`` option is not given.
DEFAULT_IMAGE_SIZE = 64
#: State-dict wrappers we look into (``{"state_dict": {...}}``).
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "network", "net")
_SHOWN = 3


# -- sniffing -------------------------------------------------------------------------------------

def sniff(path: Path) -> bool:
    """A ``.pt``/``.pth`` zip (what ``torch.save`` writes) or a safetensors file that is not ours."""
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth"):
        return zipfile.is_zipfile(path)
    if suffix == ".safetensors":
        return _foreign_safetensors(path)
    return False


def _foreign_safetensors(path: Path) -> bool:
    from safetensors import safe_open

    from ...container import HEADER_KEY

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
    except Exception:
        return False
    return HEADER_KEY not in metadata


# -- the constructor arguments ----------------------------------------------------------------

def read_config_file(path: Path) -> dict[str, Any]:
    """A JSON or YAML config file as a dict (one-line errors)."""
    if not path.is_file():
        raise UserInputError(f"{path}: no such network config file")
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise UserInputError(f"{path}: reading YAML needs PyYAML (pip install pyyaml)") from None
        parse: Any = yaml.safe_load
    else:
        parse = json.loads
    try:
        document = parse(text)
    except Exception as error:
        raise UserInputError(f"{path}: not a valid config file ({' '.join(str(error).split())})") from None
    if not isinstance(document, dict):
        raise UserInputError(f"{path}: the network config must be a JSON/YAML object")
    return document


def _class_name(target: Any) -> str:
    return str(target).rsplit(".", 1)[-1] if isinstance(target, str) else ""


def network_section(document: dict[str, Any], network: str | None, path: Path) -> tuple[str, dict[str, Any]]:
    """The MONAI class name and the constructor arguments (references resolved) of a config."""
    if network is None and "_target_" in document:
        section = document
    else:
        candidates = {k: v for k, v in document.items() if isinstance(v, dict) and "_target_" in v}
        if network is not None:
            if network not in document or not isinstance(document[network], dict):
                names = ", ".join(candidates) or "none"
                raise UserInputError(f"{path}: no network {network!r} in the config "
                                     f"(entries with a _target_: {names})")
            section = document[network]
        else:
            ours = [k for k, v in candidates.items()
                    if _class_name(_resolve(v["_target_"], document, path)) in FAMILIES]
            if len(ours) != 1:
                names = ", ".join(f"{k} ({_class_name(v['_target_']) or v['_target_']})" for k, v in candidates.items())
                what = "several AutoencoderKL/VQVAE networks" if ours else "no AutoencoderKL or VQVAE network"
                raise UserInputError(f"{path}: {what}; choose one with network=<key> (entries with a _target_: "
                                     f"{names or 'none'})")
            section = document[ours[0]]
    target = _resolve(section.get("_target_"), document, path)
    name = _class_name(target)
    if name not in FAMILIES:
        raise CheckpointError(f"{path}: unknown architecture {target!r}; the monai importer reads "
                              f"{' and '.join(FAMILIES)} (monai.networks.nets)")
    args = {key: _resolve(value, document, path) for key, value in section.items() if not key.startswith("_")}
    return name, args


def _resolve(value: Any, document: dict[str, Any], path: Path, depth: int = 0) -> Any:
    """Resolve bundle references ``@a#b`` to plain values; refuse ``$`` expressions and ``%`` macros."""
    if depth > 20:
        raise UserInputError(f"{path}: the config's references are circular")
    if isinstance(value, list):
        return [_resolve(item, document, path, depth + 1) for item in value]
    if isinstance(value, dict):
        return {k: _resolve(v, document, path, depth + 1) for k, v in value.items()}
    if not isinstance(value, str):
        return value
    if value.startswith(("$", "%")):
        raise UserInputError(f"{path}: the config value {value!r} is an expression or macro, which the importer "
                             "never evaluates; replace it by its value")
    if value.startswith("@"):
        node: Any = document
        for part in value[1:].split("#"):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise UserInputError(f"{path}: the config reference {value!r} names nothing in the file")
        return _resolve(node, document, path, depth + 1)
    return value


# -- the weights --------------------------------------------------------------------------------

def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.pt``/``.pth`` (weights only) or ``.safetensors``, unwrapped and without ``module.``."""
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            loaded: Any = load_file(str(path), device="cpu")
        except Exception as error:
            raise CheckpointError(f"{path}: not a readable safetensors file ({' '.join(str(error).split())})") from None
    else:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise CheckpointError(f"{path}: not a weights-only PyTorch state dict ({first})") from None
    for _ in range(3):
        if not isinstance(loaded, dict):
            break
        if loaded and all(isinstance(v, torch.Tensor) for v in loaded.values()):
            break
        inner = next((loaded[k] for k in WRAPPER_KEYS if isinstance(loaded.get(k), dict)), None)
        if inner is None:
            break
        loaded = inner
    if not isinstance(loaded, dict) or not loaded or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise CheckpointError(f"{path}: holds no state dict of tensors (a bare state dict, or one under "
                              f"{', '.join(repr(k) for k in WRAPPER_KEYS)})")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in loaded.items()}


def load_weights(model: MonaiAutoencoder, weights: dict[str, torch.Tensor], path: Path) -> None:
    """Load MONAI weights into ``model.network``; one line for missing, unexpected or misshapen keys."""
    reference = model.network.state_dict()
    missing = [k for k in reference if k not in weights]
    unexpected = [k for k in weights if k not in reference]
    if missing or unexpected:
        parts = [f"{len(keys)} {what} ({_first(keys)})" for what, keys in (("missing", missing),
                                                                          ("unexpected", unexpected)) if keys]
        raise CheckpointError(f"{path}: the weights do not fit a {model.monai_class} with these constructor "
                              f"arguments: {'; '.join(parts)}")
    for key, value in reference.items():
        if tuple(weights[key].shape) != tuple(value.shape):
            raise CheckpointError(f"{path}: weight {key!r} has shape {tuple(weights[key].shape)}, the network "
                                  f"expects {tuple(value.shape)}")
    model.network.load_state_dict({k: weights[k].to(reference[k].dtype) for k in reference})


def _first(keys: list[str]) -> str:
    return ", ".join(keys[:_SHOWN]) + (", ..." if len(keys) > _SHOWN else "")


# -- the importer ---------------------------------------------------------------------------------

def read(path: Path, config: str | None = None, network: str | None = None, image_size: int | str | None = None,
         intensity_range: str | None = None) -> MonaiAutoencoder:
    """A MONAI autoencoder of ours from its weights and its constructor arguments (see the module doc)."""
    if not config:
        raise MissingImportOptionError(f"{path}: a MONAI state dict needs its network's constructor arguments: "
                                       "import it with config=<network JSON or bundle config>",
                                       hint="a MONAI AutoencoderKL or VQVAE state dict? import_model(path, "
                                            "format='monai', config=<network JSON or bundle config>)")
    config_path = Path(config)
    name, args = network_section(read_config_file(config_path), network, config_path)
    family = FAMILIES[name]
    try:
        size = int(image_size) if image_size is not None else DEFAULT_IMAGE_SIZE
    except ValueError:
        raise UserInputError(f"image_size must be an integer, got {image_size!r}") from None
    intensity = intensity_range or DEFAULT_INTENSITY_RANGE
    parse_intensity_range(intensity)
    try:
        settings = family.config_class(image_size=size, network=args, intensity_range=intensity)
        model = family(settings)
    except CheckpointError:
        raise
    except UserInputError as error:
        raise UserInputError(f"{config_path}: {error}") from None
    load_weights(model, read_state_dict(path), path)
    model.eval()
    model.training_info = {"imported": {"format": "monai", "file": path.name, "network": name,
                                        "config": config_path.name}}
    return model


register_importer(ModelImporter(
    name="monai",
    description="MONAI 2D AutoencoderKL / VQVAE state dicts (.pt, .pth, .safetensors) with their constructor "
                "arguments (config=)",
    suffixes=(".pt", ".pth", ".safetensors"),
    sniff=sniff,
    read=read,
    options={
        "config": "JSON/YAML of the network's constructor arguments with a _target_, or a MONAI bundle config "
                  "(configs/inference.json); required",
        "network": "the bundle config's key of the network (default: its one AutoencoderKL or VQVAE)",
        "image_size": f"square slice size the network works at (default {DEFAULT_IMAGE_SIZE})",
        "intensity_range": f"intensities the network was trained on, 'low,high' (default '{DEFAULT_INTENSITY_RANGE}'; "
                           "or '-1,1')",
    },
))
