"""Write StyleGAN2-ADA-shaped snapshot pickles from our own networks, for tests.

The pickles have the structure the fixture README describes (persistent-object records
of ``torch_utils.persistence._reconstruct_persistent_obj``, tensors through
``torch._utils._rebuild_tensor_v2`` and legacy storage blobs) but hold our own, benign
source text. ``torch_utils`` and ``dnnlib`` do not exist here: :func:`fake_modules` puts
stand-ins into ``sys.modules`` while pickling (pickle checks that a global is importable),
and nothing ever unpickles these files with the real machinery.
"""

from __future__ import annotations

import collections
import io
import pickle
import sys
import types
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

BENIGN_SOURCE = '"""Networks."""\n\nimport torch\n\nVERSION = 1\n\n\nclass Generator:\n    pass\n'


class Reduce:
    """An object that pickles as ``func(*args)``."""

    def __init__(self, func: Any, args: tuple) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple:
        return self.func, self.args


@contextmanager
def fake_modules() -> Iterator[None]:
    """``torch_utils.persistence._reconstruct_persistent_obj`` and ``dnnlib.util.EasyDict`` as stand-ins."""
    persistence = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta: Any) -> None:  # never called
        raise AssertionError("must not run")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    util = types.ModuleType("dnnlib.util")

    class EasyDict(dict):
        pass

    EasyDict.__module__ = "dnnlib.util"
    EasyDict.__qualname__ = "EasyDict"
    util.EasyDict = EasyDict
    saved = {k: sys.modules.get(k) for k in ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util")}
    sys.modules.update({"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": persistence,
                        "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": util})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = value


def easydict(value: Any) -> Any:
    """Nested dicts as (fake) EasyDicts; call inside :func:`fake_modules`."""
    if isinstance(value, dict):
        return sys.modules["dnnlib.util"].EasyDict({k: easydict(v) for k, v in value.items()})
    return value


def tensor_record(tensor: torch.Tensor) -> Reduce:
    """``_rebuild_tensor_v2(_load_from_bytes(blob), 0, size, stride, False, OrderedDict())``."""
    tensor = tensor.detach().contiguous()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(tensor.storage(), buffer, _use_new_zipfile_serialization=False)
    storage = Reduce(torch.storage._load_from_bytes, (buffer.getvalue(),))
    return Reduce(torch._utils._rebuild_tensor_v2,
                  (storage, 0, tuple(tensor.shape), tuple(tensor.stride()), False, collections.OrderedDict()))


def module_record(module: nn.Module, init_kwargs: dict | None = None, legacy: bool = False,
                  source: str = BENIGN_SOURCE, class_name: str | None = None) -> Reduce:
    """A persistent-object record of ``module`` (and its children); call inside :func:`fake_modules`."""
    mapping = collections.OrderedDict if legacy else dict
    state = {
        "training": False,
        "_parameters": mapping((k, None if v is None else Reduce(
            torch._utils._rebuild_parameter, (tensor_record(v), False, collections.OrderedDict())))
            for k, v in module._parameters.items()),
        "_buffers": mapping((k, None if v is None else tensor_record(v)) for k, v in module._buffers.items()),
        "_non_persistent_buffers_set": set(),
        "_modules": mapping((k, None if v is None else module_record(v, None, legacy, source))
                            for k, v in module._modules.items()),
        "_forward_hooks": collections.OrderedDict(),
        "_init_args": (),
        "_init_kwargs": easydict(init_kwargs or {}),
        "weight_gain": np.float64(0.5),
    }
    meta = {"type": "class", "version": 6, "module_src": source,
            "class_name": class_name or type(module).__name__, "state": state}
    return Reduce(sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj, (meta,))


def snapshot_bytes(generator: nn.Module, g_kwargs: dict, discriminator: nn.Module | None = None,
                   d_kwargs: dict | None = None, legacy: bool = False, **records: Any) -> bytes:
    """The pickle of a snapshot dict ``{training_set_kwargs, G, D, G_ema, augment_pipe}``.

    ``legacy``: OrderedDict module state, protocol 3 (GLOBAL opcodes) and numpy 1.x's ``numpy.core`` names.
    """
    with fake_modules():
        g = module_record(generator, g_kwargs, legacy)
        data = {"training_set_kwargs": {"path": "data.zip"}, "G": g,
                "D": module_record(discriminator, d_kwargs, legacy) if discriminator is not None else None,
                "G_ema": g, "augment_pipe": None, **records}
        raw = pickle.dumps(data, protocol=3 if legacy else 4)
    if legacy:
        raw = raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    return raw
