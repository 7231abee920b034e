"""gzip compression through ISA-L (``isal``), several times faster than zlib at the same ratio.

NIfTI files are gzip streams; writing a CT-sized float volume with the standard library's
zlib takes seconds (about 5 s for 315 MB at level 6 on this project's 2-core machine).
ISA-L's level 1 writes the same format, as small as zlib's level 6 on our maps, about six
times faster (measured 0.6-1.0 s against 3.7-6.1 s for zlib's levels 1 and 6 on one
512 x 512 x 300 float32 map). Every gzip reader reads it. Without ``isal`` installed the
standard library is used.
"""

from __future__ import annotations

import gzip
from typing import IO

try:
    from isal import igzip as _igzip
except ImportError:  # pragma: no cover - isal is a dependency; the fallback keeps odd installs working
    _igzip = None

#: ISA-L's level 1 (its range is 0-3): the ratio of zlib's level 6 on our maps, at a fraction of its time.
ISAL_LEVEL = 1

#: The standard library's level when ISA-L is missing.
ZLIB_LEVEL = 6


def compress(data: bytes) -> bytes:
    """gzip ``data`` with ``mtime=0`` (the same data gives the same bytes)."""
    if _igzip is not None:
        return _igzip.compress(data, compresslevel=ISAL_LEVEL, mtime=0)
    return gzip.compress(data, compresslevel=ZLIB_LEVEL, mtime=0)


def writer(fileobj: IO[bytes]) -> IO[bytes]:
    """A gzip stream that writes compressed bytes to ``fileobj``; close it when done.

    No time stamp and no file name in the gzip header (``fileobj`` is usually a temporary
    file with a random name): the same data gives the same bytes.
    """
    if _igzip is not None:
        return _igzip.GzipFile(filename="", fileobj=fileobj, mode="wb", compresslevel=ISAL_LEVEL, mtime=0)
    return gzip.GzipFile(filename="", fileobj=fileobj, mode="wb", compresslevel=ZLIB_LEVEL, mtime=0)
