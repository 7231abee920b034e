"""Our one file container: a ``.safetensors`` file of tensors plus a JSON header.

Checkpoints, latent codes, directions, discovery state and results are all this container.
The JSON document sits in the safetensors header's metadata under :data:`HEADER_KEY` and
always names its ``format`` and ``format_version``; the tensors are raw arrays. Reading
never unpickles anything and never executes code.

* :func:`write_container` writes atomically (a temporary file beside the target, then a
  rename), so a crash never leaves half a file.
* :func:`read_container_header` reads the header only; :func:`read_container` also the
  tensors (optionally only some of them).
* A header larger than :data:`MAX_HEADER_BYTES`, a file that is no safetensors file (with a
  hint when it is a pickle: we never load those), a safetensors file of another program,
  another of our formats, or a newer format version each get a :class:`FormatError` naming
  the file.
* :func:`flatten_state` / :func:`unflatten_state` store nested state (optimiser state, random
  generators) as JSON plus tensors.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_save

from ._atomic import write_bytes_atomic
from .errors import UserInputError

HEADER_KEY = "napari_latent"
SUFFIX = ".safetensors"
#: Largest safetensors header (tensor index plus our JSON) we read.
MAX_HEADER_BYTES = 64 * 1024 * 1024


class FormatError(UserInputError):
    """A file is not the napari-latent container it should be (or is damaged)."""


class NewerFormatError(FormatError):
    """A file of a newer format version than this napari-latent reads."""


def write_container(path: str | os.PathLike[str], format: str, version: int, header: dict[str, Any],
                    tensors: dict[str, torch.Tensor], kind: str = "file") -> Path:
    """Write tensors and a JSON header to one ``.safetensors`` file, atomically.

    Parameters
    ----------
    path : path-like
        Must end in ``.safetensors``.
    format : str
        The format name stored as ``header["format"]`` (``"napari-latent-codes"``, ...).
    version : int
        The format version stored as ``header["format_version"]``.
    header : dict
        The JSON-serialisable rest of the header.
    tensors : dict of str to Tensor
        Stored contiguous, on the CPU.
    kind : str
        What the file is, for messages (``"codes file"``).

    Returns
    -------
    Path
    """
    path = Path(path)
    if path.suffix != SUFFIX:
        raise UserInputError(f"{path}: a {kind} must end in {SUFFIX}")
    document = {"format": format, "format_version": int(version), **header}
    text = json.dumps(document)
    if len(text.encode()) > MAX_HEADER_BYTES:
        raise UserInputError(f"{path}: the header of this {kind} would exceed {MAX_HEADER_BYTES // 2**20} MiB")
    stored = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    return write_bytes_atomic(path, safetensors_save(stored, metadata={HEADER_KEY: text}))


def looks_like_pickle(path: Path) -> bool:
    """Whether a file starts like a pickle or a zip (what ``torch.save`` writes)."""
    try:
        with open(path, "rb") as handle:
            start = handle.read(4)
    except OSError:
        return False
    return start[:1] == b"\x80" or start[:2] == b"PK"


def _not_safetensors(path: Path, kind: str, error: type[UserInputError]) -> UserInputError:
    hint = " (a PyTorch pickle? napari-latent never loads pickles)" if looks_like_pickle(path) else ""
    return error(f"{path}: not a napari-latent {kind} (not a valid safetensors file{hint})")


def _check_header_size(path: Path, kind: str, error: type[UserInputError]) -> None:
    """Refuse a header larger than :data:`MAX_HEADER_BYTES` before the safetensors reader allocates it."""
    try:
        with open(path, "rb") as handle:
            start = handle.read(8)
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    (size,) = struct.unpack("<Q", start) if len(start) == 8 else (-1,)
    if size < 0 or size + 8 > path.stat().st_size:
        raise _not_safetensors(path, kind, error)
    if size > MAX_HEADER_BYTES:
        raise error(f"{path}: not a napari-latent {kind} (its header has {size} bytes, more than the "
                    f"{MAX_HEADER_BYTES // 2**20} MiB we read)")


def check_format(path: Path, document: dict[str, Any], format: str, version: int, kind: str,
                 error: type[UserInputError] = FormatError) -> dict[str, Any]:
    """Raise unless ``document`` is of ``format`` with a version up to ``version``; return it."""
    found = document.get("format")
    if found != format:
        raise error(f"{path}: not a {kind} (it is a {found!r} file)")
    stored = document.get("format_version")
    if not isinstance(stored, int) or isinstance(stored, bool):
        raise error(f"{path}: not a valid {kind} (format version {stored!r})")
    if stored > version:
        newer = NewerFormatError if error is FormatError else error
        raise newer(f"{path}: made by a newer napari-latent (format version {stored}); please upgrade")
    return document


def read_container_header(path: str | os.PathLike[str], format: str | None = None, version: int = 1, *,
                          kind: str = "file", error: type[UserInputError] = FormatError) -> dict[str, Any]:
    """The JSON header of a container file, without reading its tensors.

    Parameters
    ----------
    path : path-like
    format : str, optional
        The expected format name; None accepts any of ours (then no version check either).
    version : int
        The newest format version this code reads.
    kind : str
        What the file should be, for messages (``"codes file"``).
    error : type
        The exception class raised (a :class:`UserInputError`).
    """
    path = Path(path)
    if not path.exists():
        raise error(f"{path}: no such {kind}")
    if not path.is_file():
        raise error(f"{path}: is a folder, not a {kind}")
    _check_header_size(path, kind, error)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise _not_safetensors(path, kind, error) from exc
    if HEADER_KEY not in metadata:
        raise error(f"{path}: a safetensors file, but not a napari-latent {kind} (no '{HEADER_KEY}' header)")
    try:
        document = json.loads(metadata[HEADER_KEY])
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not a napari-latent {kind} (its header is not valid JSON)") from exc
    if not isinstance(document, dict):
        raise error(f"{path}: not a napari-latent {kind} (its header is not a JSON object)")
    return document if format is None else check_format(path, document, format, version, kind, error)


def read_container(path: str | os.PathLike[str], format: str | None = None, version: int = 1, *,
                   keys: Callable[[str], bool] | None = None, kind: str = "file",
                   error: type[UserInputError] = FormatError) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The JSON header and the tensors of a container file.

    Parameters are those of :func:`read_container_header`, and:

    keys : callable, optional
        Reads only the tensors whose name it accepts (default: all).

    Returns
    -------
    header : dict
    tensors : dict of str to Tensor
    """
    header = read_container_header(path, format, version, kind=kind, error=error)
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            tensors = {k: handle.get_tensor(k) for k in handle.keys() if keys is None or keys(k)}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise error(f"{path}: the {kind} is truncated or damaged ({exc})") from exc
    return header, tensors


def require_tensors(path: Path, tensors: dict[str, torch.Tensor], names: tuple[str, ...], kind: str = "file",
                    error: type[UserInputError] = FormatError) -> None:
    """Raise unless every name in ``names`` is among ``tensors``."""
    missing = [n for n in names if n not in tensors]
    if missing:
        raise error(f"{path}: the {kind} is damaged: tensor(s) {', '.join(missing)} missing")


# -- nested state <-> (JSON, tensors) ----------------------------------------------------------

def flatten_state(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Move every tensor of a nested structure into ``tensors``; return the JSON remainder."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": prefix}
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
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix} in a napari-latent file")


def unflatten_state(obj: Any, tensors: dict[str, torch.Tensor], error: type[UserInputError] = FormatError) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            try:
                return tensors[obj["__tensor__"]]
            except KeyError:
                raise error(f"the file is damaged: tensor {obj['__tensor__']!r} is missing") from None
        if "__dict__" in obj:
            return {k: unflatten_state(v, tensors, error) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(unflatten_state(v, tensors, error) for v in obj["__tuple__"])
        return {k: unflatten_state(v, tensors, error) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unflatten_state(v, tensors, error) for v in obj]
    return obj
