"""The traversal store: a chunked Zarr v3 folder written as frames are computed, read lazily.

A traversal of a CT-sized volume is ``A`` x the volume: 15 alphas of 512 x 512 x 300
float32 are 4.7 GB. Kept whole in memory, or gzipped into one 4D NIfTI and read back whole,
it sets the memory and most of the time of every step after it. The store avoids both:

* **Written as computed.** :meth:`LazyTraversal.iter_store` hands every finished alpha
  volume to a writer thread that compresses it into the store while the next ones are
  decoded; memory holds the frames being decoded plus one being written.
* **Read lazily.** :class:`StoredTraversal` reads one frame, or one slab of planes of every
  alpha (:meth:`StoredTraversal.iter_blocks`, what the eigen analysis streams), and gives
  napari a dask array (:meth:`StoredTraversal.display_array`) that reads only the chunks
  of the planes on screen.

Layout of ``OUT.zarr`` (a Zarr v3 group)
----------------------------------------
``frames``
    ``(A, S, P, L)`` float32 in the napari *display* orientation
    (:mod:`napari_latent.volumes.orientation`: axis 0 inferior to superior, rows anterior
    to posterior, columns right to left), the alphas ascending. Chunks are one alpha by 8
    planes by at most 256 x 256 voxels (:func:`default_chunks`, 2 MB): napari's slider runs
    along axis 0, so a plane on screen reads a few chunks, and the eigen analysis's slabs of
    planes align with the chunks (chunks of a few MB keep Zarr's per-chunk cost small: 128 x
    128 cost 25% more CPU to write a CT frame). Blosc-LZ4 (level 1) with byte shuffling:
    fast enough to keep up with the decoder, and 4x smaller than raw float32 on a head in a
    CT field of view.
group attributes ``napari_latent``
    The same facts as a NIfTI traversal's JSON sidecar (format, alphas, units, direction,
    model fingerprint, the source *grid* with its exact affine, slicing geometry, ...) plus
    ``storage``: the stored axes, their orientation codes and the affine of the stored
    voxel order (``stored_affine``), so other tools can place the voxels in world space.

Why Zarr, and not OME-Zarr or an uncompressed NIfTI through a memmap: OME-Zarr 0.5 places
voxels with scales and translations only, so an oblique scan's affine cannot be expressed
(we keep the exact affine in the attributes instead, and the axes are OME-Zarr's
``(t, z, y, x)`` order). A NIfTI is stored in Fortran order: a memmapped 4D NIfTI reads a
whole frame's pages to show one plane of napari's default view, and it cannot be
compressed. Zarr's chunks serve both the planes napari shows and the eigen analysis's slabs.

Writes are atomic: the store is built in a hidden temporary folder beside the target and
renamed into place when complete (a crash leaves the previous store, or none). A stopped
traversal keeps the frames finished so far (the store is resized to them).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import MismatchError, UserInputError, VolumeError
from ...volumes.arrays import contiguous
from ...volumes.grid import Grid
from ...volumes.orientation import DISPLAY_CODES, DisplayGeometry, display_geometry
from ...volumes.slicing import SliceGeometry
from .alphas import baseline_index
from .direction import TraversalDirection
from .facts import TRAVERSAL_FORMAT, _TraversalFacts

#: Suffix of a traversal store folder.
STORE_SUFFIX = ".zarr"

#: Version of the store layout (the ``storage`` entry); a newer one is refused.
STORE_VERSION = 1

#: Name of the frames array in the store's group.
FRAMES = "frames"

#: Largest in-plane chunk edge and planes per chunk (see :func:`default_chunks`).
CHUNK_EDGE = 256
CHUNK_PLANES = 8


def is_store_path(path: str | os.PathLike[str]) -> bool:
    """True for a path that names a traversal store (``*.zarr``)."""
    return str(path).rstrip("/\\").lower().endswith(STORE_SUFFIX)


def default_chunks(display_shape: tuple[int, int, int]) -> tuple[int, int, int, int]:
    """Chunks of the ``frames`` array: one alpha, :data:`CHUNK_PLANES` planes, <= 256 x 256 in plane."""
    planes, rows, cols = display_shape
    return (1, min(planes, CHUNK_PLANES), min(rows, CHUNK_EDGE), min(cols, CHUNK_EDGE))


def chunk_codec() -> Any:
    """The compressor of the store's chunks: Blosc-LZ4, level 1, byte shuffling."""
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="lz4", clevel=1, shuffle="shuffle")


# -- writing ------------------------------------------------------------------------------------

class StoreWriter:
    """Builds a traversal store in a temporary folder; :meth:`commit` renames it into place.

    Parameters
    ----------
    path : path-like
        The store to create (``*.zarr``); an existing store there is replaced on commit.
    grid : Grid
        The source volume's grid (frames are given in its array order).
    count : int
        Alphas announced (the store shrinks to the frames written when committed early).
    chunks : tuple of int, optional
        Chunks of ``frames`` (:func:`default_chunks` by default).
    """

    def __init__(self, path: str | os.PathLike[str], grid: Grid, count: int,
                 chunks: tuple[int, int, int, int] | None = None) -> None:
        import zarr

        self.path = Path(path)
        if not is_store_path(self.path):
            raise VolumeError(f"{self.path}: a traversal store must end in {STORE_SUFFIX}")
        if self.path.exists() and not (self.path / "zarr.json").is_file():
            raise VolumeError(f"{self.path}: exists and is not a Zarr store; refusing to replace it")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.geometry = display_geometry(grid)
        self.grid = grid
        shape = (int(count), *self.geometry.reorientation.target_shape)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent))
        try:
            group = zarr.open_group(str(self.tmp), mode="w", zarr_format=3)
            self.frames = group.create_array(FRAMES, shape=shape, dtype="float32",
                                             chunks=chunks or default_chunks(shape[1:]), compressors=chunk_codec(),
                                             fill_value=0.0, dimension_names=("alpha", *DISPLAY_CODES),
                                             # Comparing every chunk with the fill value before writing it
                                             # took half of a frame's write time; an empty chunk
                                             # compresses to almost nothing anyway.
                                             config={"write_empty_chunks": True})
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        self.group = group
        self.written = 0

    def write(self, index: int, frame: np.ndarray) -> None:
        """Store alpha number ``index`` (a volume in the source's array order)."""
        if tuple(frame.shape) != self.grid.shape:
            raise MismatchError(f"frame of shape {frame.shape} is not on the grid {self.grid.shape}")
        self.frames[int(index)] = self.geometry.to_display(frame)  # contiguous when ``frame`` is a view of one
        self.written += 1

    def commit(self, facts: dict[str, Any], count: int) -> Path:
        """Keep the first ``count`` frames, write the facts and rename the store into place."""
        if count < self.frames.shape[0]:
            self.frames.resize((count, *self.frames.shape[1:]))
        self.group.attrs["napari_latent"] = {**facts, "shape": [count, *self.grid.shape],
                                             "storage": storage_facts(self.geometry, self.frames.chunks)}
        _replace_folder(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Remove the temporary folder (nothing is left at the target)."""
        shutil.rmtree(self.tmp, ignore_errors=True)


def storage_facts(geometry: DisplayGeometry, chunks: tuple[int, ...]) -> dict[str, Any]:
    """The ``storage`` entry: stored axes, orientation, the stored order's affine, chunks."""
    return {"version": STORE_VERSION, "array": FRAMES, "axes": ["alpha", *DISPLAY_CODES],
            "orientation": "".join(DISPLAY_CODES),
            "stored_affine": geometry.reorientation.target_affine(geometry.grid.affine).tolist(),
            "chunks": [int(c) for c in chunks]}


def _replace_folder(tmp: Path, target: Path) -> None:
    """Move a finished folder onto ``target`` (replacing an old one only once the new one is complete)."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        os.replace(target, old / target.name)
    try:
        os.replace(tmp, target)
    except BaseException:
        if old is not None:
            os.replace(old / target.name, target)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


# -- reading ------------------------------------------------------------------------------------

class StoredTraversal(_TraversalFacts):
    """A traversal in a store on disk: frames and slabs are read on demand.

    Open one with :meth:`open` (or :func:`~napari_latent.latent.traversal.open_traversal`).
    It serves the eigen analysis (:meth:`iter_blocks`, in the store's display orientation),
    napari (:meth:`display_array`), single frames (:meth:`frame`), the in-memory
    :class:`~napari_latent.latent.traversal.Traversal` (:meth:`load`) and a 4D NIfTI
    (:meth:`export`).
    """

    def __init__(self, path: Path, frames: Any, meta: dict[str, Any]) -> None:
        self.path = path
        self.frames = frames
        self.alphas = np.asarray(meta["alphas"], dtype=np.float64)
        self.grid = Grid.from_json(meta["grid"])
        self.direction = TraversalDirection.from_json(meta["direction"]) if meta.get("direction") else None
        self.units = str(meta.get("units", "latent"))
        self.alpha_scale = float(meta.get("alpha_scale", 1.0))
        saved = int(meta.get("baseline_index", -1))
        self.baseline_index = saved if 0 <= saved < len(self.alphas) else baseline_index(self.latent_alphas)
        self.model_name = str(meta.get("model", ""))
        self.model_fingerprint = str(meta.get("model_fingerprint", ""))
        self.space = str(meta.get("space", ""))
        self.geometry = SliceGeometry.from_json(meta["geometry"]) if meta.get("geometry") else None
        self.fill = str(meta.get("fill", "window"))
        self.source = str(meta.get("source", ""))
        self.info = {**dict(meta.get("info") or {}), "path": str(path)}
        self.display = display_geometry(self.grid)
        expected = (len(self.alphas), *self.display.reorientation.target_shape)
        if tuple(frames.shape) != expected:
            raise MismatchError(f"{path}: frames of shape {tuple(frames.shape)} do not match the recorded alphas and "
                                f"grid {expected}")

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> StoredTraversal:
        """Open a store written by :meth:`LazyTraversal.iter_store` (nothing is read but the facts).

        Raises
        ------
        UserInputError
            A missing folder, a folder that is not a Zarr store or not a traversal's, or a
            store made by a newer version.
        """
        import zarr

        path = Path(path)
        if not path.exists():
            raise VolumeError(f"{path}: no such file or folder")
        if not (path / "zarr.json").is_file():
            raise UserInputError(f"{path}: not a traversal store (no zarr.json; a store is the folder that "
                                 "'napari-latent traverse --out OUT.zarr' writes)")
        try:
            group = zarr.open_group(str(path), mode="r")
            meta = group.attrs.get("napari_latent")
        except (OSError, ValueError, TypeError, KeyError, json.JSONDecodeError) as exc:
            raise UserInputError(f"{path}: not a readable Zarr store ({exc})") from exc
        if not isinstance(meta, dict) or meta.get("format") != TRAVERSAL_FORMAT:
            raise UserInputError(f"{path}: a Zarr store, but not a napari-latent traversal")
        storage = meta.get("storage") or {}
        if int(storage.get("version", 0)) > STORE_VERSION:
            raise UserInputError(f"{path}: made by a newer napari-latent; please upgrade")
        try:
            frames = group[str(storage.get("array", FRAMES))]
        except KeyError:
            raise UserInputError(f"{path}: the traversal store has no frames array") from None
        return cls(path, frames, meta)

    # -- orientation (the eigen analysis works in the stored order) ------------------------------
    @property
    def working_shape(self) -> tuple[int, int, int]:
        """Shape of the stored (display-ordered) voxel grid."""
        return self.display.reorientation.target_shape

    def to_working(self, array: np.ndarray) -> np.ndarray:
        """Source-ordered array (leading axes allowed) to the stored order (a view)."""
        return self.display.to_display(array)

    def from_working(self, array: np.ndarray) -> np.ndarray:
        """Stored-order array back to the source's array order (a view)."""
        return self.display.from_display(array)

    @property
    def working_reorientation(self) -> Any:
        """The :class:`~napari_latent.volumes.orientation.Reorientation` from the source order to the stored one."""
        return self.display.reorientation

    @property
    def block_alignment(self) -> int:
        """Planes per chunk: slabs that start at multiples of it read each chunk once."""
        return int(self.frames.chunks[1])

    def default_chunk(self, budget_bytes: int = 128 << 20) -> int:
        """Planes per slab: whole chunks, about ``budget_bytes`` of every alpha at most."""
        plane = int(np.prod(self.working_shape[1:])) * 4 * max(len(self), 1)
        align = self.block_alignment
        return max(align, (budget_bytes // max(plane, 1)) // align * align)

    # -- reading --------------------------------------------------------------------------------
    def frame(self, index: int) -> np.ndarray:
        """The volume at alpha number ``index`` on the source grid (read from disk)."""
        return contiguous(self.from_working(self.frames[self._index(index)]))

    def baseline_foreground(self) -> np.ndarray:
        """:func:`~napari_latent.volumes.foreground_mask` of the baseline frame, on the source grid.

        The same mask as ``foreground_mask(Volume(self.baseline, affine))``, which works in
        the display orientation: the store's own order, so the frame is used as it is read
        (no reoriented copies of a CT-sized volume).
        """
        from ...volumes.masks import foreground_mask

        mask = foreground_mask(np.asarray(self.frames[self.baseline_index]))
        return contiguous(self.from_working(mask))

    def masked_values(self, index: int, mask: np.ndarray) -> np.ndarray:
        """The values of frame ``index`` at a source-grid mask's voxels (stored order), read slab by slab.

        The same values as ``frame(index)[mask]`` in another order (what percentiles need),
        without the whole frame in memory.
        """
        stored_mask = self.to_working(np.asarray(mask, dtype=bool))
        out = np.empty(int(np.count_nonzero(mask)), dtype=np.float32)
        at, step, index = 0, self.block_alignment, self._index(index)
        for first in range(0, self.working_shape[0], step):
            inside = stored_mask[first:first + step]
            count = int(np.count_nonzero(inside))
            if count:
                out[at:at + count] = self.frames[index, first:first + step][inside]
                at += count
        return out

    def read_region(self, index: int, region: tuple[slice, slice, slice]) -> np.ndarray:
        """The voxels of a box of the source grid at alpha number ``index`` (source order; only its chunks are read).

        ``region`` holds three step-1 slices with explicit starts and stops, like
        :meth:`~napari_latent.volumes.orientation.Reorientation.source_region` gives.
        """
        stored = self.display.reorientation.target_region(region)
        return contiguous(self.from_working(self.frames[(self._index(index), *stored)]))

    def __iter__(self) -> Iterator[np.ndarray]:
        for index in range(len(self)):
            yield self.frame(index)

    @property
    def baseline(self) -> np.ndarray:
        """The baseline frame (read from disk)."""
        return self.frame(self.baseline_index)

    def iter_blocks(self, chunk: int | None = None, start: int = 0,
                    stop: int | None = None) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield ``(first, last, block)``: every alpha of stored planes ``[first, last)``.

        Blocks are ``(A, last - first, rows, cols)`` in the stored (display) order; slabs
        after the first start at multiples of ``chunk`` (:meth:`default_chunk` by default).
        Memory: two blocks (the next one is read while this one is used).
        """
        total = self.working_shape[0]
        stop = total if stop is None else min(int(stop), total)
        step = self.default_chunk() if chunk is None else max(1, int(chunk))
        bounds, first = [], max(0, int(start))
        while first < stop:
            last = min(stop, (first // step + 1) * step)
            bounds.append((first, last))
            first = last
        # The next slab is read (and decompressed) on another thread while the caller works
        # on this one: reading is half of a pass over a CT-sized store.
        with ThreadPoolExecutor(1, thread_name_prefix="napari-latent-read") as pool:
            ahead = pool.submit(self._read_slab, *bounds[0]) if bounds else None
            for number, (first, last) in enumerate(bounds):
                block = ahead.result()  # type: ignore[union-attr]
                ahead = pool.submit(self._read_slab, *bounds[number + 1]) if number + 1 < len(bounds) else None
                yield first, last, block
            if ahead is not None:
                ahead.cancel()

    def _read_slab(self, first: int, last: int) -> np.ndarray:
        return self.frames[:, first:last]

    def display_array(self) -> Any:
        """The frames as a lazy dask array ``(A, S, P, L)`` in napari's display orientation.

        Its chunks are the store's, so napari reads only the chunks of the plane it shows.
        """
        import dask.array as da

        return da.from_zarr(self.frames)

    def lazy_differences(self, indices: Any) -> list[LazyDifference]:
        """``frame(i) - frame(baseline)`` for alpha numbers ``indices``, each computed only when asked for.

        ``numpy.asarray`` of an item (or of the list) computes it, in the source's array order;
        :meth:`LazyDifference.display_array` shows it in napari without computing it. The eigen
        analysis of a store keeps its difference maps this way (a CT's map is 315 MB).
        """
        return [LazyDifference(self, self._index(int(i))) for i in np.asarray(indices, dtype=np.int64).reshape(-1)]

    def load(self) -> Any:
        """The whole traversal in memory (a :class:`~napari_latent.latent.traversal.Traversal`)."""
        from .eager import Traversal

        images = np.empty(self.shape, dtype=np.float32)
        for index in range(len(self)):
            images[index] = self.frame(index)
        return Traversal(images, self.alphas, self.grid, self.direction, self.units, self.alpha_scale,
                         self.baseline_index, self.model_name, self.model_fingerprint, self.space, self.geometry,
                         self.fill, self.source, dict(self.info))

    def export(self, path: str | os.PathLike[str]) -> Path:
        """Write a 4D NIfTI (``OUT.nii.gz`` or ``.nii``) plus its JSON sidecar, one frame in memory at a time."""
        from .facts import _save

        return _save(self, path)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write to ``path``: a copy of the store (``*.zarr``) or a 4D NIfTI (:meth:`export`)."""
        if not is_store_path(path):
            return self.export(path)
        if Path(path).resolve() == self.path.resolve():
            return Path(path)
        return write_store(self, path)

    def __repr__(self) -> str:
        return (f"StoredTraversal({str(self.path)!r}, {len(self)} alphas from {self.alphas[0]:g} to "
                f"{self.alphas[-1]:g} {self.units}, grid {self.grid.shape})")


def write_store(traversal: _TraversalFacts, path: str | os.PathLike[str]) -> Path:
    """Write any traversal's frames into a new store at ``path``, one frame in memory at a time."""
    if len(traversal) == 0:
        raise UserInputError("the traversal has no frames to save")
    writer = StoreWriter(path, traversal.grid, len(traversal))
    try:
        for index in range(len(traversal)):
            writer.write(index, traversal.frame(index))
        facts = traversal.to_json()
        facts["info"] = {k: v for k, v in facts.get("info", {}).items() if k != "path"}
        return writer.commit(facts, len(traversal))
    except BaseException:
        writer.abort()
        raise


class LazyDifference:
    """One difference map of a store, ``frame(index) - frame(baseline)``, computed when asked for.

    An array-like ``(i, j, k)`` float32 in the source's array order: ``numpy.asarray``
    computes it from the store (one frame and one slab of the baseline in memory besides
    the result); :meth:`display_array` is the same map as a lazy dask array in napari's
    display order.
    """

    def __init__(self, traversal: StoredTraversal, index: int) -> None:
        self.traversal, self.index = traversal, int(index)
        self.shape = traversal.grid.shape
        self.dtype = np.dtype(np.float32)
        self.ndim = 3

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        traversal = self.traversal
        frames, baseline = traversal.frames, traversal.baseline_index
        out = np.asarray(frames[self.index]) if self.index != baseline else \
            np.zeros(traversal.working_shape, dtype=np.float32)
        if self.index != baseline:
            step = traversal.block_alignment
            for first in range(0, out.shape[0], step):
                out[first:first + step] -= frames[baseline, first:first + step]
        result = contiguous(traversal.from_working(out))
        return result if dtype is None else result.astype(dtype, copy=False)

    def display_array(self) -> Any:
        """The map in napari's display order as a lazy dask array (read plane by plane)."""
        import dask.array as da

        frames = da.from_zarr(self.traversal.frames)
        return frames[self.index] - frames[self.traversal.baseline_index]
