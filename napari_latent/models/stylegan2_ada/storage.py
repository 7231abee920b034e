"""Parse torch's legacy (non-zip) ``torch.save`` stream of one storage, without torch.load.

In a StyleGAN2-ADA snapshot every tensor's storage is stored as
``torch.storage._load_from_bytes(blob)``, where ``blob`` is what the legacy
``torch.save(storage)`` wrote: five small protocol-2 pickles, then the raw data:

1. the magic number ``0x1950a86a20f9469cfc6c``;
2. the protocol version ``1001``;
3. a dict of system facts (``little_endian``, ``type_sizes``);
4. the storage itself, as a persistent id
   ``('storage', <storage type>, key, location, numel[, view_metadata])``;
5. the list of storage keys, ``[key]``;

then, for each key, an int64 little-endian element count and that many little-endian
elements. The pickles are read by :class:`_BlobUnpickler`, which knows only the storage
type names (inert markers); the data is read with ``numpy.frombuffer`` after the counts
were checked against the blob's length.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass

import numpy as np
import torch

from ...errors import CheckpointError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

#: Storage type names and their element types (``bfloat16`` has no numpy type: read as uint16).
STORAGE_TYPES: dict[str, tuple[str, torch.dtype]] = {
    "FloatStorage": ("<f4", torch.float32),
    "DoubleStorage": ("<f8", torch.float64),
    "HalfStorage": ("<f2", torch.float16),
    "BFloat16Storage": ("<u2", torch.bfloat16),
    "LongStorage": ("<i8", torch.int64),
    "IntStorage": ("<i4", torch.int32),
    "ShortStorage": ("<i2", torch.int16),
    "CharStorage": ("i1", torch.int8),
    "ByteStorage": ("u1", torch.uint8),
    "BoolStorage": ("u1", torch.bool),
}


@dataclass(frozen=True)
class StorageType:
    """An inert marker for ``torch.<name>`` inside a storage blob."""

    name: str


@dataclass(frozen=True)
class Storage:
    """The flat data of one storage.

    Attributes
    ----------
    data : Tensor
        1-D, on the CPU, owning its memory.
    """

    data: torch.Tensor

    @property
    def numel(self) -> int:
        """Number of elements."""
        return int(self.data.numel())


class _BlobUnpickler(pickle.Unpickler):
    """Reads the small pickles of a storage blob: only ``torch.<X>Storage`` names, as markers."""

    def find_class(self, module: str, name: str) -> StorageType:
        if module == "torch" and name in STORAGE_TYPES:
            return StorageType(name)
        raise CheckpointError(f"a tensor's storage names {module}.{name}, which a storage does not need; "
                              "refusing the file (nothing was executed)")

    def persistent_load(self, pid: object) -> tuple:
        if (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
                and isinstance(pid[1], StorageType) and isinstance(pid[2], str) and isinstance(pid[3], str)
                and isinstance(pid[4], int) and not isinstance(pid[4], bool) and pid[4] >= 0
                and (len(pid) == 5 or pid[5] is None)):
            return pid
        raise CheckpointError("a tensor's storage has an unexpected persistent id; refusing the file")


def _load_small(stream: io.BytesIO, what: str) -> object:
    try:
        return _BlobUnpickler(stream).load()
    except CheckpointError:
        raise
    except Exception as error:  # malformed data: any unpickling error
        raise CheckpointError(f"a tensor's storage is malformed ({what}: {type(error).__name__})") from None


def parse_legacy_storage(blob: bytes) -> Storage:
    """The data of a legacy ``torch.save`` stream of one storage.

    Parameters
    ----------
    blob : bytes

    Returns
    -------
    Storage

    Raises
    ------
    CheckpointError
        For anything but a well-formed little-endian stream of exactly one storage.
    """
    if not isinstance(blob, bytes | bytearray):
        raise CheckpointError("a tensor's storage is not a byte string")
    stream = io.BytesIO(bytes(blob))
    if _load_small(stream, "magic number") != MAGIC_NUMBER:
        raise CheckpointError("a tensor's storage is not a torch storage stream (wrong magic number)")
    if _load_small(stream, "protocol") != PROTOCOL_VERSION:
        raise CheckpointError("a tensor's storage has an unsupported protocol version")
    info = _load_small(stream, "system info")
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise CheckpointError("a tensor's storage is not little-endian; not supported")
    pid = _load_small(stream, "storage record")
    if not isinstance(pid, tuple):
        raise CheckpointError("a tensor's storage record is not a storage")
    _, storage_type, key, _location, numel = pid[:5]
    keys = _load_small(stream, "storage keys")
    if keys != [key]:
        raise CheckpointError("a tensor's storage stream must hold exactly one storage")
    head = stream.read(8)
    if len(head) != 8:
        raise CheckpointError("a tensor's storage is truncated")
    count = int(np.frombuffer(head, dtype="<i8")[0])
    numpy_type, torch_type = STORAGE_TYPES[storage_type.name]
    itemsize = np.dtype(numpy_type).itemsize
    rest = len(blob) - stream.tell()
    if count != numel or count < 0 or rest != count * itemsize:
        raise CheckpointError(f"a tensor's storage has {rest} bytes of data for {numel} elements "
                              f"of {itemsize} bytes (count {count}); refusing the file")
    array = np.frombuffer(blob, dtype=numpy_type, count=count, offset=stream.tell()).copy()
    data = torch.from_numpy(array)
    if torch_type == torch.bfloat16:
        data = data.view(torch.int16).view(torch.bfloat16)
    elif torch_type == torch.bool:
        data = data.view(torch.bool)
    return Storage(data)
