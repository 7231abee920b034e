"""The ``stylegan2-ada`` importer: an official ``network-snapshot-*.pkl`` to a :class:`~.model.StyleGAN2ADA`.

The snapshot is read without executing it (:mod:`.snapshot`), its constructor arguments
become our settings, and its weights are loaded after checking that every key and shape
is the one our re-implementation has.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ...errors import CheckpointError, UserInputError
from ..base import model_fingerprint
from ..importers import ModelImporter, register_importer
from .model import GREY_CHOICES, StyleGAN2ADA, StyleGAN2ADAConfig
from .snapshot import discriminator_settings, generator_settings, read_snapshot, sniff_snapshot

OPTIONS = {
    "network": "which generator: G_ema (the moving average; default) or G",
    "grey": "a 3-channel generator's grey image: luminance (0.299 R + 0.587 G + 0.114 B; default), "
            "red, green, blue or a channel index 0-2",
    "class_index": "the class of a conditional generator (required when it has classes)",
    "truncation_psi": "truncation when z codes are mapped (default 1: none)",
}


def _names(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def load_checked(module: torch.nn.Module, weights: dict[str, torch.Tensor], where: str, what: str) -> None:
    """Load ``weights`` into ``module`` after checking keys and shapes (one-line CheckpointError)."""
    reference = module.state_dict()
    missing = sorted(set(reference) - set(weights))
    unexpected = sorted(set(weights) - set(reference))
    if missing:
        raise CheckpointError(f"{where}: the snapshot's {what} lacks weights {_names(missing)} for its settings")
    if unexpected:
        raise CheckpointError(f"{where}: the snapshot's {what} has unexpected weights {_names(unexpected)}")
    for key, value in weights.items():
        if tuple(value.shape) != tuple(reference[key].shape):
            raise CheckpointError(f"{where}: {what} weight {key!r} has shape {tuple(value.shape)}, expected "
                                  f"{tuple(reference[key].shape)}")
        if not value.is_floating_point():
            raise CheckpointError(f"{where}: {what} weight {key!r} is not floating point")
    module.load_state_dict({k: v.to(reference[k].dtype) for k, v in weights.items()})


def _option_int(name: str, value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserInputError(f"{name} must be a whole number, got {value!r}") from None


def _option_float(name: str, value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UserInputError(f"{name} must be a number, got {value!r}") from None


def read_stylegan2_ada(path: str | os.PathLike[str], network: str = "G_ema", grey: str | None = None,
                       class_index: int | str | None = None,
                       truncation_psi: float | str | None = None) -> StyleGAN2ADA:
    """Read an official StyleGAN2-ADA snapshot into our model (see :data:`OPTIONS`).

    Raises
    ------
    CheckpointError
        For refused, malformed or unsupported snapshots (one line).
    UserInputError
        For bad options (a conditional generator without ``class_index``, ...).
    """
    path = Path(path)
    where = path.name
    if network not in ("G_ema", "G"):
        raise UserInputError(f"network must be G_ema or G, got {network!r}")
    if grey is not None and str(grey).lower() not in GREY_CHOICES:
        raise UserInputError(f"unknown grey choice {grey!r}; use one of {', '.join(GREY_CHOICES)}")
    snapshot = read_snapshot(path)
    record = snapshot.networks.get(network)
    if record is None:
        raise CheckpointError(f"{where}: the snapshot has no {network} network")
    discriminator = snapshot.networks.get("D")
    model = model_from_state_dicts(where, network, record.init_kwargs, record.state_dict,
                                   discriminator.init_kwargs if discriminator is not None else None,
                                   discriminator.state_dict if discriminator is not None else None,
                                   grey, class_index, truncation_psi)
    model.training_info["imported"]["training_set"] = snapshot.training_set_kwargs.get("path", "")
    return model


def model_from_state_dicts(where: str, network: str, g_init_kwargs: dict[str, Any], g_state: dict[str, torch.Tensor],
                           d_init_kwargs: dict[str, Any] | None = None, d_state: dict[str, torch.Tensor] | None = None,
                           grey: str | None = None, class_index: int | str | None = None,
                           truncation_psi: float | str | None = None) -> StyleGAN2ADA:
    """Our model from the official networks' constructor arguments and state dicts.

    What :func:`read_stylegan2_ada` does once the snapshot is read; also for state dicts saved
    by other means (``G_ema.state_dict()`` in a safetensors file with its ``init_kwargs``).

    Parameters
    ----------
    where : str
        The source's name, for messages.
    network : str
        ``"G_ema"`` or ``"G"``, for messages.
    g_init_kwargs, g_state : dict
        The generator's ``_init_kwargs`` (plain data) and ``state_dict()``.
    d_init_kwargs, d_state : dict, optional
        The same for the discriminator, if there is one.
    grey, class_index, truncation_psi
        The importer's options.
    """
    settings = generator_settings(g_init_kwargs, where)
    image_size = settings.get("image_size")
    if image_size not in (32, 64, 128, 256, 512, 1024):
        raise CheckpointError(f"{where}: resolution {image_size} is not supported (32 to 1024, powers of two)")
    if settings.get("img_channels") not in (1, 3):
        raise CheckpointError(f"{where}: {settings.get('img_channels')} image channels are not supported (1 or 3)")
    if d_init_kwargs is not None:
        d_settings = discriminator_settings(d_init_kwargs, where)
        for ours, theirs in (("c_dim", "d_c_dim"), ("image_size", "d_image_size"),
                             ("img_channels", "d_img_channels")):
            if theirs in d_settings and d_settings.pop(theirs) != settings.get(ours, 0):
                raise CheckpointError(f"{where}: the discriminator's {ours} differs from the generator's")
        settings.update(d_settings)
    channel_base = int(settings.get("channel_base", 32768))
    channel_max = int(settings.get("channel_max", 512))
    settings.update(channel_base=channel_base, channel_max=channel_max,
                    base_channels=max(1, min(channel_base // image_size, channel_max)), max_channels=channel_max,
                    discriminator=d_init_kwargs is not None)
    settings.setdefault("d_channel_base", channel_base)
    settings.setdefault("d_channel_max", channel_max)
    psi = _option_float("truncation_psi", truncation_psi)
    extra = {"grey": str(grey).lower() if grey is not None else None,
             "class_index": _option_int("class_index", class_index),
             "truncation_psi": psi}
    settings.update({k: v for k, v in extra.items() if v is not None})
    if settings.get("c_dim", 0) > 0 and settings.get("class_index") is None:
        raise UserInputError(f"{where}: the generator is conditional ({settings['c_dim']} classes); "
                             "choose one with the class_index option")
    try:
        config = StyleGAN2ADAConfig(**settings)
    except TypeError as error:
        raise CheckpointError(f"{where}: unsupported settings ({error})") from None
    try:
        config.validate()
    except UserInputError as error:
        if isinstance(error, CheckpointError):
            raise
        if "class_index" in str(error) or "grey" in str(error) or "truncation" in str(error):
            raise UserInputError(f"{where}: {error}") from None
        raise CheckpointError(f"{where}: {error}") from None
    with torch.random.fork_rng():  # the random initial weights are replaced; keep the caller's random state
        torch.manual_seed(0)
        model = StyleGAN2ADA(config)
    load_checked(model.generator, g_state, where, network)
    if d_init_kwargs is not None:
        load_checked(model.discriminator, d_state or {}, where, "discriminator D")
    model.fingerprint = model_fingerprint(model)
    model.training_info = {"imported": {"format": "stylegan2-ada", "file": where, "network": network}}
    return model.eval()


STYLEGAN2_ADA_IMPORTER = register_importer(ModelImporter(
    name="stylegan2-ada",
    description="official StyleGAN2-ADA (PyTorch) network-snapshot-*.pkl, read without executing it",
    suffixes=(".pkl",),
    sniff=sniff_snapshot,
    read=read_stylegan2_ada,
    options=OPTIONS,
))
