"""The volume reader registry: which files (and, later, folders) open as a :class:`Volume`.

A reader has a name, the path suffixes it accepts (and/or a predicate, for formats that are
folders, such as a DICOM series) and a ``read(path, index=None) -> Volume`` function.
:func:`~napari_latent.volumes.open_volume` dispatches through the registry; the cohort
folder scan, the napari reader and the command line ask :func:`readable` whether a path is
an input volume. Outputs stay NIfTI.

The registry (:data:`READERS`) is filled from the ``napari_latent.readers`` entry points,
the built-in NIfTI reader's included (:mod:`napari_latent.volumes.nifti`; see
:mod:`napari_latent.registry`). A plugin registers its reader in the module its entry point
names::

    # setup.cfg of the plugin
    [options.entry_points]
    napari_latent.readers =
        mha = napari_latent_mha.reader

    # napari_latent_mha/reader.py
    from napari_latent.volumes import Volume
    from napari_latent.volumes.readers import register_reader

    def read(path, index=None):
        ...  # raise napari_latent.errors.VolumeError naming the path for a bad file
        return Volume(data, affine, path, {"format": "mha"})

    register_reader("mha", read, suffixes=(".mha", ".mhd"), title="MetaImage")

``read`` returns the voxels as they are in the file: :func:`open_volume` then applies the
non-finite voxel policy and checks the affine, the same for every format.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import VolumeError
from ..registry import Registry

if TYPE_CHECKING:
    import numpy as np

    from .io import Volume

#: ``read(path, index=None) -> Volume``: one 3D volume (``index``: the frame of a 4D series).
ReadFunction = Callable[[Path, "int | None"], "Volume"]

#: Modules (in this package) that register the built-in readers; declared as
#: ``napari_latent.readers`` entry points in ``setup.cfg`` (imported directly only when the
#: package's metadata is not installed).
BUILTIN_READER_MODULES = ("nifti", "mgh", "itk_formats", "dicom")


@dataclass(frozen=True)
class VolumeReader:
    """One registered volume format.

    Attributes
    ----------
    name : str
        The registry name (``"nifti"``).
    read : callable
        ``read(path, index=None) -> Volume``; raises
        :class:`~napari_latent.errors.VolumeError` naming the path for a bad file.
    suffixes : tuple of str
        Lower-case file name endings it accepts (``".nii"``, ``".nii.gz"``).
    title : str
        The format's name in messages (``"NIfTI"``).
    accepts : callable or None
        ``accepts(path) -> bool`` for paths the suffixes do not cover (a folder format);
        must be cheap and must not raise.
    read_series : callable or None
        ``read_series(path) -> (t, i, j, k) float32 array`` of every frame at once, when
        the format can do better than one :attr:`read` per frame.
    """

    name: str
    read: ReadFunction
    suffixes: tuple[str, ...] = ()
    title: str = ""
    accepts: Callable[[Path], bool] | None = None
    read_series: Callable[[Path], np.ndarray] | None = None


#: The volume readers by registry name.
READERS: Registry[VolumeReader] = Registry(
    "volume reader", "napari_latent.readers", tuple(f"{__package__}.{m}" for m in BUILTIN_READER_MODULES))


def register_reader(name: str, read: ReadFunction, suffixes: Sequence[str] = (), *, title: str = "",
                    accepts: Callable[[Path], bool] | None = None,
                    read_series: Callable[[Path], np.ndarray] | None = None) -> VolumeReader:
    """Register a volume reader (plugins call it in the module their entry point names).

    Parameters
    ----------
    name : str
        The registry name; a later registration of the same name replaces the reader.
    read : callable
        ``read(path, index=None) -> Volume``.
    suffixes : sequence of str
        File name endings it accepts, each starting with a dot (matched case-insensitively).
    title : str, optional
        The format's name in messages (default: ``name``).
    accepts : callable, optional
        ``accepts(path) -> bool`` for paths the suffixes do not cover (folders).
    read_series : callable, optional
        ``read_series(path)``: every frame of a 4D file at once, ``(t, i, j, k)``.

    Returns
    -------
    VolumeReader
    """
    endings = tuple(str(s).lower() for s in suffixes)
    if any(not s.startswith(".") or len(s) < 2 for s in endings):
        raise TypeError(f"the suffixes of the volume reader {name!r} must start with a dot, got {list(suffixes)}")
    if not endings and accepts is None:
        raise TypeError(f"the volume reader {name!r} needs suffixes or an accepts() predicate")
    if not callable(read):
        raise TypeError(f"the volume reader {name!r} needs a read(path, index=None) function")
    return READERS.add(name, VolumeReader(name, read, endings, title or name, accepts, read_series),
                       origin=str(getattr(read, "__module__", "") or ""))


def frame_index(path: Path, frames: int, index: int | None) -> int:
    """Check a reader's ``index`` against a file's frame count; the frame to read (0 for 3D).

    Raises
    ------
    VolumeError
        For a multi-frame file without an index, an index out of range, or an index other
        than 0/-1 for a single volume.
    """
    if frames > 1:
        if index is None:
            raise VolumeError(f"{path}: a 4D series with {frames} frames; choose one with an index "
                              f"from 0 to {frames - 1}")
        if not -frames <= index < frames:
            raise VolumeError(f"{path}: frame index {index} is out of range; the series has {frames} "
                              f"frames (0 to {frames - 1})")
        return index % frames
    if index not in (None, 0, -1):
        raise VolumeError(f"{path}: frame index {index} given, but the file holds a single 3D volume")
    return 0


def readers() -> list[VolumeReader]:
    """The registered readers, by name."""
    return [reader for _, reader in READERS.items()]


def reader_suffixes() -> tuple[str, ...]:
    """Every suffix a registered reader accepts, in reader-name order."""
    out: list[str] = []
    for reader in readers():
        out += [s for s in reader.suffixes if s not in out]
    return tuple(out)


def find_reader(path: str | os.PathLike[str]) -> VolumeReader | None:
    """The reader for a path, or None.

    A path that is not a folder goes to the reader with the longest suffix its name ends
    with (judged by name, so a missing or broken file still finds its reader and gets its
    specific error); anything else to the first reader whose ``accepts`` says yes.
    """
    p = Path(path)
    if not p.is_dir():
        name = p.name.lower()
        matches = [(len(s), reader) for reader in readers() for s in reader.suffixes if name.endswith(s)]
        if matches:
            return max(matches, key=lambda match: match[0])[1]
    for reader in readers():
        if reader.accepts is not None and reader.accepts(p):
            return reader
    return None


def predicate_reader(path: str | os.PathLike[str]) -> VolumeReader | None:
    """The first reader whose ``accepts`` predicate takes the path (folder formats, and paths
    into a container such as a DICOM folder's ``FOLDER::SERIESUID``), or None."""
    p = Path(path)
    return next((r for r in readers() if r.accepts is not None and r.accepts(p)), None)


def readable(path: str | os.PathLike[str]) -> bool:
    """True when a registered reader accepts the path (see :func:`find_reader`)."""
    return find_reader(path) is not None


def formats_phrase() -> str:
    """The readable formats for messages: ``"NIfTI"``, ``"NIfTI or MetaImage"``."""
    return _either([reader.title for reader in readers()]) or "volume"


def suffixes_phrase() -> str:
    """The readable suffixes for messages: ``".nii or .nii.gz"``."""
    return _either(list(reader_suffixes())) or "no suffix (no volume reader is registered)"


def reader_for(path: str | os.PathLike[str]) -> VolumeReader:
    """The reader that opens ``path``, after checking that it exists and is not empty.

    Raises
    ------
    VolumeError
        For a missing path, a folder no reader accepts, a file no reader accepts (the
        message lists the accepted suffixes) and an empty file.
    """
    p = Path(path)
    if not p.exists():
        # A path that names a part of a container (``FOLDER::SERIESUID``) does not exist as
        # such; a reader whose accepts() takes it checks the rest.
        reader = predicate_reader(p)
        if reader is not None:
            return reader
        raise VolumeError(f"{p}: no such file")
    reader = find_reader(p)
    if reader is None:
        if p.is_dir():
            raise VolumeError(f"{p}: is a folder, not a {formats_phrase()} file")
        raise VolumeError(f"{p}: not a {formats_phrase()} file (expected a {suffixes_phrase()} name)")
    if p.is_file() and p.stat().st_size == 0:
        raise VolumeError(f"{p}: the file is empty")
    return reader


def _either(items: list[str]) -> str:
    """``"a"``, ``"a or b"``, ``"a, b or c"``."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} or {items[-1]}"
