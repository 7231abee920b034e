"""A restricted unpickler for StyleGAN2-ADA snapshots: nothing in the file is executed.

A pickle runs code by naming globals (``GLOBAL``/``STACK_GLOBAL``) and calling them
(``REDUCE``, ``NEWOBJ``, ``BUILD``). :class:`SnapshotUnpickler` resolves only the few
names a snapshot needs, each to our *own* inert function (never the real one):

==============================================================  ==========================================
name in the file                                                becomes
==============================================================  ==========================================
``torch_utils.persistence._reconstruct_persistent_obj``         :class:`PersistentRecord` (plain data)
``torch._utils._rebuild_tensor_v2``                             a tensor, size/stride/offset checked
``torch._utils._rebuild_parameter``                             its data tensor
``torch.storage._load_from_bytes``                              :func:`.storage.parse_legacy_storage`
``collections.OrderedDict``, ``builtins.set``                   a plain ``dict``, ``set``
``dnnlib.util.EasyDict``                                        a plain ``dict`` subclass
``numpy(._core|.core).multiarray.scalar``, ``numpy.dtype``      a Python number (numeric dtypes only)
==============================================================  ==========================================

Any other name is refused with a :class:`~napari_latent.errors.CheckpointError` before
anything is called, and persistent ids (``PERSID``) are refused. The callables handed to
the pickle machine are slot-only stand-ins and the ``EasyDict`` class is made per
unpickler; a ``BUILD`` on any of them is refused, so a file cannot alter the reader.

The source text in each persistent record (``module_src``) is never executed. It is
parsed with :func:`ast.parse` only, and a file whose source would run code when imported
(a top-level call, a ``with`` block, ...) is refused: see :func:`check_module_source`.
"""

from __future__ import annotations

import ast
import hashlib
import io
import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ...errors import CheckpointError
from .storage import Storage, parse_legacy_storage

#: Classes of the official ``training/networks.py`` a StyleGAN2-ADA snapshot holds.
KNOWN_CLASSES = frozenset({
    "Generator", "SynthesisNetwork", "SynthesisBlock", "SynthesisLayer", "ToRGBLayer", "MappingNetwork",
    "FullyConnectedLayer", "Discriminator", "DiscriminatorBlock", "Conv2dLayer", "DiscriminatorEpilogue",
    "MinibatchStdLayer",
})
#: Classes of StyleGAN3's networks (named in the refusal message).
STYLEGAN3_CLASSES = frozenset({"SynthesisInput", "SynthesisLayer3"})

#: numpy dtypes a snapshot's scalars may have.
SCALAR_DTYPES = frozenset({"f8", "f4", "f2", "i8", "i4", "i2", "i1", "u8", "u4", "u2", "u1", "b1"})

#: Top-level statements allowed in embedded source (they define things; they run nothing of note).
_DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


@dataclass
class PersistentRecord:
    """One persistent object of a snapshot, as plain data.

    Attributes
    ----------
    class_name : str
        The class (``"Generator"``, ``"SynthesisLayer"``, ...).
    state : dict
        The module's ``__dict__``: ``_parameters``, ``_buffers``, ``_modules`` (more
        records), ``_init_kwargs`` and plain attributes.
    module_src : str
        The embedded source, as text only (never executed).
    version : int
        The persistence format version.
    """

    class_name: str
    state: dict[str, Any]
    module_src: str = field(repr=False, default="")
    version: int = 0


class _ScalarDType:
    """An inert stand-in for ``numpy.dtype(name)``; ``BUILD`` sets its byte order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.byteorder = "<"

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.byteorder = "<" if state[1] == "=" else state[1]

    def numpy(self) -> np.dtype:
        order = "" if self.byteorder == "|" else self.byteorder
        return np.dtype(order + self.name)


def check_module_source(source: str, class_name: str = "") -> None:
    """Refuse embedded source that would run code when imported.

    The source is parsed, never executed. Allowed at the top level (and in class bodies):
    imports, function and class definitions (decorated by dotted names), assignments of
    constants and string expressions (docstrings). Anything else, such as a call or a
    ``with open(...)`` block, is refused.

    Raises
    ------
    CheckpointError
        Naming the first offending statement and its line.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError) as error:
        raise CheckpointError(f"the embedded source of {class_name or 'a network'} is not valid Python "
                              f"({type(error).__name__}); refusing the file") from None
    _check_body(tree.body, class_name)


def _is_constant(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        return _is_constant(node.operand)
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return all(_is_constant(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(k is not None and _is_constant(k) and _is_constant(v) for k, v in zip(node.keys, node.values))
    return False


def _is_dotted_name(node: ast.AST) -> bool:
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name)


def _check_body(body: list[ast.stmt], class_name: str) -> None:
    for statement in body:
        bad = _offending(statement)
        if bad is not None:
            where = f"the embedded source of {class_name}" if class_name else "the embedded source"
            raise CheckpointError(f"{where} would run code when imported ({bad} at line {statement.lineno}); "
                                  "refusing the file (nothing was executed)")
        if isinstance(statement, ast.ClassDef):
            _check_body(statement.body, class_name)


def _offending(statement: ast.stmt) -> str | None:
    """A description of ``statement`` if it is not allowed, else None."""
    if isinstance(statement, ast.Import | ast.ImportFrom):
        return None
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        if not all(_is_dotted_name(d) for d in statement.decorator_list):
            return f"a decorator call on {statement.name!r}"
        if isinstance(statement, ast.ClassDef) and (statement.keywords or not all(
                _is_dotted_name(b) for b in statement.bases)):
            return f"computed base classes of {statement.name!r}"
        return None
    if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant) \
            and isinstance(statement.value.value, str):
        return None
    if isinstance(statement, ast.Assign) and _is_constant(statement.value) \
            and all(isinstance(t, ast.Name) for t in statement.targets):
        return None
    if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name) \
            and (statement.value is None or _is_constant(statement.value)):
        return None
    if isinstance(statement, ast.Pass):
        return None
    if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call):
        return "a top-level call"
    return f"a top-level {type(statement).__name__.lower()} statement"


def _refuse_build(*args: Any) -> None:
    raise CheckpointError("the file tries to set attributes of a reader function (BUILD); refused, nothing was "
                          "executed")


class _StandIn:
    """A callable handed to the pickle machine in place of a real global; a ``BUILD`` on it is refused."""

    __slots__ = ("function",)

    def __init__(self, function: Any) -> None:
        self.function = function

    def __call__(self, *args: Any) -> Any:
        return self.function(*args)

    __setstate__ = staticmethod(_refuse_build)


class SnapshotUnpickler(pickle.Unpickler):
    """Unpickle a StyleGAN2-ADA snapshot into plain data (see the module docstring).

    Parameters
    ----------
    file : binary file
    where : str
        Named in error messages (the file name).
    """

    def __init__(self, file: io.BufferedIOBase, where: str = "the file") -> None:
        super().__init__(file)
        self.where = where
        self._checked_sources: set[str] = set()

        class EasyDict(dict):
            """A plain stand-in for ``dnnlib.util.EasyDict`` (a dict; made per unpickler)."""

            __setstate__ = staticmethod(_refuse_build)

        functions: dict[tuple[str, str], Any] = {
            ("torch_utils.persistence", "_reconstruct_persistent_obj"): self._persistent_record,
            ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor,
            ("torch._utils", "_rebuild_parameter"): self._rebuild_parameter,
            ("torch.storage", "_load_from_bytes"): self._load_storage,
            ("collections", "OrderedDict"): self._ordered_dict,
            ("builtins", "set"): self._set,
            ("__builtin__", "set"): self._set,
            ("numpy._core.multiarray", "scalar"): self._numpy_scalar,
            ("numpy.core.multiarray", "scalar"): self._numpy_scalar,
            ("numpy", "dtype"): self._numpy_dtype,
        }
        self._allowed: dict[tuple[str, str], Any] = {key: _StandIn(f) for key, f in functions.items()}
        self._allowed[("dnnlib.util", "EasyDict")] = EasyDict
        self._allowed[("dnnlib", "EasyDict")] = EasyDict

    # -- the gate ------------------------------------------------------------------------------
    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise CheckpointError(f"{self.where}: the file calls {module}.{name}, which a StyleGAN2-ADA snapshot "
                                  "does not need (it could run code); refused, nothing was executed") from None

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError(f"{self.where}: the file uses persistent ids, which a StyleGAN2-ADA snapshot "
                              "does not; refused, nothing was executed")

    # -- our stand-ins ---------------------------------------------------------------------------
    def _persistent_record(self, meta: Any) -> PersistentRecord:
        if not isinstance(meta, dict) or meta.get("type") != "class":
            raise CheckpointError(f"{self.where}: a persistent object is not a class record")
        class_name, state, source = meta.get("class_name"), meta.get("state"), meta.get("module_src")
        if not isinstance(class_name, str) or not isinstance(state, dict) or not isinstance(source, str):
            raise CheckpointError(f"{self.where}: a persistent object record is malformed")
        if class_name not in KNOWN_CLASSES:
            hint = " (StyleGAN3 snapshots are not supported)" if class_name in STYLEGAN3_CLASSES else ""
            raise CheckpointError(f"{self.where}: unknown network class {class_name!r} in the snapshot{hint}; "
                                  "only StyleGAN2-ADA networks are read")
        digest = hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()
        if digest not in self._checked_sources:
            check_module_source(source, class_name)
            self._checked_sources.add(digest)
        version = meta.get("version", 0)
        return PersistentRecord(class_name, state, source, int(version) if isinstance(version, int) else 0)

    def _load_storage(self, blob: Any) -> Storage:
        return parse_legacy_storage(blob)

    def _rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                        hooks: Any = None, metadata: Any = None) -> torch.Tensor:
        if not isinstance(storage, Storage):
            raise CheckpointError(f"{self.where}: a tensor has no storage")
        ints = [offset, *size, *stride] if isinstance(size, tuple) and isinstance(stride, tuple) else None
        if ints is None or len(size) != len(stride) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ints):
            raise CheckpointError(f"{self.where}: a tensor has a malformed size, stride or offset")
        numel = int(np.prod(size, dtype=np.int64)) if size else 1
        if numel > 0:
            last = offset + sum((n - 1) * s for n, s in zip(size, stride))
            if last >= storage.numel:
                raise CheckpointError(f"{self.where}: a tensor of size {tuple(size)} reaches past its storage "
                                      f"of {storage.numel} elements")
        elif offset > storage.numel:
            raise CheckpointError(f"{self.where}: a tensor's offset lies past its storage")
        view = storage.data.as_strided(tuple(size), tuple(stride), offset)
        return view.clone(memory_format=torch.contiguous_format)

    def _rebuild_parameter(self, data: Any, requires_grad: Any = False, hooks: Any = None) -> torch.Tensor:
        if not isinstance(data, torch.Tensor):
            raise CheckpointError(f"{self.where}: a parameter has no tensor")
        return data

    def _ordered_dict(self, items: Any = ()) -> dict:
        return dict(items)

    def _set(self, items: Any = ()) -> set:
        return set(items)

    def _numpy_dtype(self, name: Any, align: Any = False, copy: Any = True) -> _ScalarDType:
        if name not in SCALAR_DTYPES:
            raise CheckpointError(f"{self.where}: a numpy value of type {name!r} is not supported")
        return _ScalarDType(name)

    def _numpy_scalar(self, dtype: Any, data: Any = b"") -> float | int | bool:
        if not isinstance(dtype, _ScalarDType) or not isinstance(data, bytes):
            raise CheckpointError(f"{self.where}: a numpy scalar is malformed")
        numpy_dtype = dtype.numpy()
        if len(data) != numpy_dtype.itemsize:
            raise CheckpointError(f"{self.where}: a numpy scalar has {len(data)} bytes for type {dtype.name}")
        return np.frombuffer(data, dtype=numpy_dtype)[0].item()


def read_snapshot_pickle(data: bytes, where: str = "the file") -> Any:
    """Unpickle a snapshot's bytes into plain data (dicts, tensors, :class:`PersistentRecord`).

    Raises
    ------
    CheckpointError
        One line, for a refused or malformed file.
    """
    try:
        return SnapshotUnpickler(io.BytesIO(data), where).load()
    except CheckpointError as error:
        message = str(error)
        if not message.startswith(where):
            message = f"{where}: {message}"
        raise CheckpointError(message) from None
    except RecursionError:
        raise CheckpointError(f"{where}: the pickle nests too deeply; not a StyleGAN2-ADA snapshot") from None
    except Exception as error:  # any malformed pickle
        detail = str(error).splitlines()[0][:120] if str(error) else ""
        raise CheckpointError(f"{where}: not a readable StyleGAN2-ADA snapshot ({type(error).__name__}"
                              f"{': ' + detail if detail else ''})") from None
