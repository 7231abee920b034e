"""A StyleGAN2-ADA snapshot as plain data: each network's class, constructor arguments and state dict.

:func:`read_snapshot` reads a ``network-snapshot-*.pkl`` with the restricted unpickler
(:mod:`.unpickler`; nothing in the file runs) and turns the persistent-object records of
its networks (``G``, ``G_ema``, ``D``) into :class:`NetworkRecord` objects. The state dict
of a record is collected the way ``nn.Module.state_dict`` names it (``synthesis.b8.conv0.weight``),
from the records' ``_parameters``, ``_buffers`` and ``_modules``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ...errors import CheckpointError
from .unpickler import PersistentRecord, read_snapshot_pickle

#: Networks a snapshot may hold, and what is read of them.
NETWORKS = ("G_ema", "G", "D")
#: Positional constructor arguments of the official top-level networks (for records made with them).
POSITIONAL_ARGUMENTS = {
    "Generator": ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs"),
    "Discriminator": ("c_dim", "img_resolution", "img_channels", "architecture", "channel_base", "channel_max",
                      "num_fp16_res", "conv_clamp", "cmap_dim", "block_kwargs", "mapping_kwargs", "epilogue_kwargs"),
}
#: Bytes of the file's start the importer's sniff reads.
SNIFF_BYTES = 1 << 16


@dataclass
class NetworkRecord:
    """One network of a snapshot.

    Attributes
    ----------
    class_name : str
        ``"Generator"`` or ``"Discriminator"``.
    init_kwargs : dict
        The constructor arguments (nested dicts are plain dicts).
    state_dict : dict of str to Tensor
        Parameters and buffers by their ``state_dict`` names.
    """

    class_name: str
    init_kwargs: dict[str, Any]
    state_dict: dict[str, torch.Tensor] = field(repr=False)


@dataclass
class Snapshot:
    """The networks of a snapshot (those present) and its other plain entries."""

    networks: dict[str, NetworkRecord]
    training_set_kwargs: dict[str, Any] = field(default_factory=dict)


def sniff_snapshot(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` looks like a StyleGAN2-ADA snapshot: a pickle naming ``torch_utils.persistence``.

    Reads only the first :data:`SNIFF_BYTES` bytes; nothing is unpickled.
    """
    with open(path, "rb") as file:
        head = file.read(SNIFF_BYTES)
    is_pickle = len(head) > 2 and head[0] == 0x80 and 2 <= head[1] <= 5
    return is_pickle and (b"torch_utils.persistence" in head or b"_reconstruct_persistent_obj" in head)


def plain(value: Any) -> Any:
    """``value`` with dict subclasses (EasyDict) turned into plain dicts and tuples kept."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    return value


def init_kwargs_of(record: PersistentRecord, where: str) -> dict[str, Any]:
    """The constructor arguments of a record (positional ones named by the official signature)."""
    kwargs = record.state.get("_init_kwargs", {})
    args = record.state.get("_init_args", ())
    if not isinstance(kwargs, dict) or not isinstance(args, tuple | list):
        raise CheckpointError(f"{where}: the {record.class_name} record has no constructor arguments")
    names = POSITIONAL_ARGUMENTS.get(record.class_name, ())
    if len(args) > len(names):
        raise CheckpointError(f"{where}: the {record.class_name} record has {len(args)} positional arguments; "
                              f"at most {len(names)} are known")
    return plain({**dict(zip(names, args)), **kwargs})


def state_dict_of(record: PersistentRecord, where: str, prefix: str = "") -> dict[str, torch.Tensor]:
    """The state dict of a record and its sub-records (persistent buffers only)."""
    state = record.state
    parameters, buffers, modules = state.get("_parameters"), state.get("_buffers"), state.get("_modules")
    if not all(isinstance(x, dict) for x in (parameters, buffers, modules)):
        raise CheckpointError(f"{where}: the {record.class_name} record at {prefix or 'the top'!r} "
                              "has no parameters, buffers or modules")
    skip = state.get("_non_persistent_buffers_set") or set()
    out: dict[str, torch.Tensor] = {}
    for kind, entries in (("parameter", parameters), ("buffer", buffers)):
        for name, tensor in entries.items():
            if tensor is None or (kind == "buffer" and name in skip):
                continue
            if not isinstance(tensor, torch.Tensor):
                raise CheckpointError(f"{where}: {kind} {prefix + name!r} is not a tensor")
            out[prefix + name] = tensor
    for name, child in modules.items():
        if child is None:
            continue
        if not isinstance(child, PersistentRecord):
            raise CheckpointError(f"{where}: submodule {prefix + name!r} is not a network record")
        out.update(state_dict_of(child, where, f"{prefix}{name}."))
    return out


def read_snapshot(path: str | os.PathLike[str]) -> Snapshot:
    """Read a StyleGAN2-ADA ``network-snapshot-*.pkl`` without executing it.

    Raises
    ------
    CheckpointError
        One line, for a refused, malformed or unrecognised file.
    """
    path = Path(path)
    where = path.name
    data = read_snapshot_pickle(path.read_bytes(), where)
    if not isinstance(data, dict):
        raise CheckpointError(f"{where}: not a StyleGAN2-ADA snapshot (the pickle is not a dict of networks)")
    networks: dict[str, NetworkRecord] = {}
    for key in NETWORKS:
        record = data.get(key)
        if record is None:
            continue
        if not isinstance(record, PersistentRecord):
            raise CheckpointError(f"{where}: {key} is not a network record")
        expected = "Discriminator" if key == "D" else "Generator"
        if record.class_name != expected:
            raise CheckpointError(f"{where}: {key} is a {record.class_name}, expected a {expected}")
        networks[key] = NetworkRecord(record.class_name, init_kwargs_of(record, where),
                                      state_dict_of(record, where))
    if "G_ema" not in networks and "G" not in networks:
        raise CheckpointError(f"{where}: the snapshot has no generator (G_ema or G)")
    training = data.get("training_set_kwargs")
    return Snapshot(networks, plain(training) if isinstance(training, dict) else {})


# -- constructor arguments to our settings ------------------------------------------------------

#: Constructor arguments that do not change the computation on a CPU in evaluation mode
#: (training-only settings, memory layout) and are ignored. ``resample_filter``: the stored
#: filter buffers are what is used.
IGNORED_ARGUMENTS = frozenset({"resample_filter", "fp16_channels_last", "channels_last", "w_avg_beta",
                               "freeze_layers", "class_name"})


def _take(kwargs: dict[str, Any], known: dict[str, str], where: str, what: str) -> dict[str, Any]:
    """Rename ``kwargs`` by ``known`` (official name -> our field); unknown names are an error."""
    out: dict[str, Any] = {}
    unknown = []
    for name, value in kwargs.items():
        if name in known:
            out[known[name]] = value
        elif name not in IGNORED_ARGUMENTS:
            unknown.append(name)
    if unknown:
        raise CheckpointError(f"{where}: unsupported {what} setting(s) {', '.join(sorted(unknown)[:5])}; "
                              "not a StyleGAN2-ADA network this reader knows")
    return out


def _check_activation(kwargs: dict[str, Any], where: str, what: str) -> dict[str, Any]:
    kwargs = dict(kwargs)
    activation = kwargs.pop("activation", "lrelu")
    if activation != "lrelu":
        raise CheckpointError(f"{where}: the {what} uses activation {activation!r}; only 'lrelu' is supported")
    return kwargs


def generator_settings(kwargs: dict[str, Any], where: str) -> dict[str, Any]:
    """Our config fields (see :class:`~.model.StyleGAN2ADAConfig`) from a Generator's constructor arguments."""
    kwargs = dict(kwargs)
    mapping = _check_activation(kwargs.pop("mapping_kwargs", None) or {}, where, "mapping network")
    synthesis = _check_activation(kwargs.pop("synthesis_kwargs", None) or {}, where, "synthesis network")
    out = _take(kwargs, {"z_dim": "latent_dim", "c_dim": "c_dim", "w_dim": "w_dim", "img_resolution": "image_size",
                         "img_channels": "img_channels"}, where, "generator")
    out.update(_take(mapping, {"num_layers": "mapping_layers", "lr_multiplier": "mapping_lr_multiplier",
                               "embed_features": "mapping_embed_features",
                               "layer_features": "mapping_layer_features"}, where, "mapping network"))
    out.update(_take(synthesis, {"channel_base": "channel_base", "channel_max": "channel_max",
                                 "num_fp16_res": "num_fp16_res", "conv_clamp": "conv_clamp",
                                 "architecture": "architecture", "use_noise": "use_noise"}, where,
                     "synthesis network"))
    missing = [k for k in ("latent_dim", "w_dim", "image_size", "img_channels") if k not in out]
    if missing:
        raise CheckpointError(f"{where}: the generator's constructor arguments lack {', '.join(missing)}")
    return out


def discriminator_settings(kwargs: dict[str, Any], where: str) -> dict[str, Any]:
    """Our ``d_*`` config fields from a Discriminator's constructor arguments."""
    kwargs = dict(kwargs)
    block = _check_activation(kwargs.pop("block_kwargs", None) or {}, where, "discriminator")
    mapping = _check_activation(kwargs.pop("mapping_kwargs", None) or {}, where, "discriminator's mapping")
    epilogue = _check_activation(kwargs.pop("epilogue_kwargs", None) or {}, where, "discriminator")
    out = _take(kwargs, {"c_dim": "d_c_dim", "img_resolution": "d_image_size", "img_channels": "d_img_channels",
                         "architecture": "d_architecture", "channel_base": "d_channel_base",
                         "channel_max": "d_channel_max", "num_fp16_res": "d_num_fp16_res",
                         "conv_clamp": "d_conv_clamp", "cmap_dim": "d_cmap_dim"}, where, "discriminator")
    _take(block, {}, where, "discriminator block")
    out.update(_take(mapping, {"num_layers": "d_mapping_layers", "lr_multiplier": "d_mapping_lr_multiplier",
                               "embed_features": "d_mapping_embed_features",
                               "layer_features": "d_mapping_layer_features"}, where, "discriminator mapping"))
    out.update(_take(epilogue, {"mbstd_group_size": "d_mbstd_group_size",
                                "mbstd_num_channels": "d_mbstd_num_channels"}, where, "discriminator epilogue"))
    return out
