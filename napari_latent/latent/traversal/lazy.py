"""The lazy traversal: decodes one alpha volume or one slab of every alpha at a time."""

from __future__ import annotations

import functools
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ...errors import MismatchError, UserInputError
from ...models.base import GenerativeModel
from ...progress import Operation, ProgressArg, ProgressEvent, RateMeter, StopFlag, run_operation, stop_requested
from ...volumes.io import Volume
from ..codes import LatentCodes
from ..directions import Directions
from .alphas import baseline_index, parse_alphas
from .decoding import Decoder, _Painter
from .direction import UNITS, DirectionArg, IndexArg, Units, alpha_scale, resolve_direction
from .eager import Traversal
from .facts import NiftiFramesWriter, _TraversalFacts
from .store import StoredTraversal, StoreWriter, is_store_path

# -- the lazy producer --------------------------------------------------------------------------

class LazyTraversal(_TraversalFacts):
    """A traversal computed on demand: one alpha volume, or one slab of slices, at a time.

    Nothing is decoded at construction. :meth:`frame` decodes the kept slices of one alpha
    and maps them onto the source grid; :meth:`iter_blocks` decodes slabs of slices for
    every alpha (the eigen analysis streams these); :meth:`save` writes frame by frame;
    :meth:`compute` produces the eager :class:`Traversal` (batching across alphas).

    Parameters
    ----------
    model : GenerativeModel
        The model the codes belong to.
    codes : LatentCodes
        The inverted volume (invert a volume first with :func:`~napari_latent.latent.invert`).
    direction : Directions, TraversalDirection, torch.Tensor or numpy.ndarray
        See :func:`resolve_direction`.
    alphas : str or sequence of float
        ``"START:STOP:N"``, a comma list, or numbers (sorted ascending).
    index : int, str or mapping, optional
        Direction index or name, or weights of several directions.
    units : {"latent", "std", "direction_std"}
        Units of the alphas (module docstring).
    source : Volume, optional
        The source volume (same grid as the codes): fills the voxels the model does not
        produce with the real intensities.
    batch_size : int, optional
        Images per decoder call (default 16 on the CPU, 64 on accelerators).
    bf16 : bool
        bfloat16 autocast on the CPU (faster, ~1% less accurate).
    channels_last : bool
        Decode with a channels-last copy of the model (faster on the CPU, same output).
    device : str or torch.device, optional
        Where to decode (``"auto"``, ``"cpu"``, ``"cuda"``, ...): a private copy of the model
        is moved there; the model's own device by default.
    """

    def __init__(self, model: GenerativeModel, codes: LatentCodes, direction: DirectionArg,
                 alphas: str | Sequence[float] | np.ndarray, *, index: IndexArg = None,
                 units: Units = "latent", source: Volume | None = None, batch_size: int | None = None,
                 bf16: bool = False, channels_last: bool = True, device: str | torch.device | None = None) -> None:
        if not isinstance(codes, LatentCodes):
            raise UserInputError(f"a traversal needs LatentCodes (or a Volume to invert), got {type(codes).__name__}")
        codes.check_model(model)
        resolved = resolve_direction(direction, index)
        if isinstance(direction, Directions):
            direction.check_model(model)
            direction.check_codes(codes)
        elif resolved.space and resolved.space != codes.space:
            raise MismatchError(f"the direction is in space {resolved.space!r}, the codes in {codes.space!r}")
        if len(resolved.vector) != codes.codes.shape[1]:
            raise MismatchError(f"a direction of dimension {len(resolved.vector)} does not fit codes of dimension "
                                f"{codes.codes.shape[1]}")
        if units not in UNITS:
            raise UserInputError(f"unknown alpha units {units!r}; use one of {', '.join(UNITS)}")
        if source is not None:
            codes.geometry.grid.check_same(source.grid, "the source volume")
        if len(codes) == 0:
            raise UserInputError("the codes hold no slices")
        if batch_size is not None and int(batch_size) < 1:
            raise UserInputError(f"batch size must be positive, got {batch_size}")
        self.model = model
        self.codes = codes
        self.direction = resolved
        self.alphas = np.sort(parse_alphas(alphas))
        self.units = str(units)
        self.alpha_scale = alpha_scale(units, resolved, codes)
        self.baseline_index = baseline_index(self.latent_alphas)
        self.grid = codes.geometry.grid
        self.geometry = codes.geometry
        self.model_name = model.name
        self.model_fingerprint = model.fingerprint or codes.model_fingerprint
        self.space = codes.space
        self.fill = "window" if source is None else "source"
        self.source = codes.source or (source.name if source is not None else "")
        self.batch_size = batch_size
        self.bf16 = bool(bf16)
        self.channels_last = bool(channels_last)
        self.device = device
        self.info: dict[str, Any] = {
            "codes_method": codes.method,
            "codes_mean_mse": float(codes.errors.mean()) if len(codes.errors) else float("nan"),
            "slices": len(codes), "batch_size": self.batch_size, "bf16": self.bf16}
        self._painter = _Painter(codes.geometry, source)
        self._decoder: Decoder | None = None

    # -- decoding -------------------------------------------------------------------------------
    @property
    def decoder(self) -> Decoder:
        """The prepared decoder (made on first use)."""
        if self._decoder is None:
            self._decoder = Decoder(self.model, self.space, self.batch_size, self.bf16, self.channels_last,
                                     self.codes.codes, self.device)
        return self._decoder

    def shifted_codes(self, alpha_indices: np.ndarray, rows: np.ndarray) -> torch.Tensor:
        """Codes of slice ``rows[j]`` shifted to alpha ``alpha_indices[j]`` (pairs), ``(m, d)``."""
        vector = torch.from_numpy(self.direction.vector)  # type: ignore[union-attr]
        shifts = torch.from_numpy(self.latent_alphas[np.asarray(alpha_indices)]).float()
        return self.codes.codes[torch.from_numpy(np.asarray(rows, dtype=np.int64))] + shifts[:, None] * vector

    def decode_alpha(self, index: int, rows: np.ndarray | None = None) -> torch.Tensor:
        """Model images ``(n, 1, S, S)`` of alpha number ``index`` (all kept slices by default)."""
        index = self._index(index)
        rows = np.arange(len(self.codes)) if rows is None else np.asarray(rows)
        return self.decoder(self.shifted_codes(np.full(len(rows), index), rows))

    def frame(self, index: int) -> np.ndarray:
        """Compute the volume at alpha number ``index`` on the source grid ``(i, j, k)``."""
        index = self._index(index)
        painter = self._painter
        planes = painter.blank(0, painter.plane_shape[0])
        rows = np.arange(len(self.codes))
        painter.paint(planes, self.decode_alpha(index, rows), rows, 0)
        return np.ascontiguousarray(painter.reorientation.invert(planes))

    def __iter__(self) -> Iterator[np.ndarray]:
        for index in range(len(self)):
            yield self.frame(index)

    @property
    def baseline(self) -> np.ndarray:
        """The baseline frame (computed)."""
        return self.frame(self.baseline_index)

    # -- chunked access ---------------------------------------------------------------------------
    @property
    def working_shape(self) -> tuple[int, int, int]:
        """Shape of the blocks' voxel grid: the model's plane orientation of the source grid."""
        return self._painter.plane_shape

    def to_working(self, array: np.ndarray) -> np.ndarray:
        """Source-ordered array (leading axes allowed) to the plane orientation (a view)."""
        return self._painter.reorientation.apply(array)

    def from_working(self, array: np.ndarray) -> np.ndarray:
        """Plane-oriented array back to the source's array order (a view)."""
        return self._painter.reorientation.invert(array)

    @property
    def working_reorientation(self) -> Any:
        """The :class:`~napari_latent.volumes.orientation.Reorientation` from the source order to the blocks'."""
        return self._painter.reorientation

    def default_chunk(self, budget_bytes: int = 64 << 20) -> int:
        """Planes per block so that a block of every alpha takes about ``budget_bytes``."""
        plane = int(np.prod(self.working_shape[1:])) * 4 * max(len(self), 1)
        return max(1, budget_bytes // max(plane, 1))

    def iter_blocks(self, chunk: int | None = None, start: int = 0,
                    stop: int | None = None) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield ``(first, last, block)`` with ``block`` ``(A, last - first, rows, cols)``.

        Blocks are slabs of planes of the model's slicing orientation (see
        :meth:`to_working`), each holding every alpha; the decoder is called once per slab
        on all its slices and alphas (only for planes ``[start, stop)``, all by default).
        Memory: one block (``A`` x slab) at a time.
        """
        painter = self._painter
        total = painter.plane_shape[0]
        stop = total if stop is None else min(int(stop), total)
        step = self.default_chunk() if chunk is None else max(1, int(chunk))
        count = len(self)
        for first in range(max(0, int(start)), stop, step):
            last = min(stop, first + step)
            block = painter.blank(first, last, count)
            rows = painter.rows(first, last)
            if len(rows):
                pairs_alpha = np.repeat(np.arange(count), len(rows))
                pairs_rows = np.tile(rows, count)
                images = self.decoder(self.shifted_codes(pairs_alpha, pairs_rows))
                for a in range(count):
                    painter.paint(block[a], images[a * len(rows):(a + 1) * len(rows)], rows, first)
            yield first, last, block

    # -- producing every frame ---------------------------------------------------------------------
    def _iter_produce(self, sink: _FrameSink, stop: StopFlag | None) -> Operation[int]:
        """Decode every alpha (batches across slices and alphas) into the sink's frames.

        Yields progress; returns the number of alphas completed (all unless stopped). Each
        frame is handed to ``sink.done`` as soon as its last batch is painted, in alpha order.
        """
        count, n = len(self), len(self.codes)
        painter = self._painter
        total = count * n
        meter = RateMeter()
        yield ProgressEvent(0, total, f"decoding {count} alphas x {n} slices", stage="traverse")
        decoder = self.decoder
        frames: dict[int, np.ndarray] = {}

        def finish(images: torch.Tensor, parts: list[tuple[np.ndarray, int, int, np.ndarray]]) -> int:
            """In a stream: the batch's images to crops, written into their frames."""
            crops = painter.prepare(images)
            for frame, first, last, rows in parts:
                painter.write(frame, crops[first:last], rows)
            return len(crops)

        # Batches (across slices and alphas, in order) stay submitted ``decoder.ahead`` deep, so
        # the streams never wait for this thread, and each stream writes its own images into
        # the frames: this thread only fills each frame before its first batch, hands finished
        # frames to the sink and reports.
        window: deque[Future[int]] = deque()
        submitted = position = completed = 0
        while (window or submitted < total) and not stop_requested(stop):
            while submitted < total and len(window) < decoder.ahead:
                flat = np.arange(submitted, min(submitted + decoder.batch_size, total))
                alphas, rows = flat // n, flat % n
                parts = []
                for alpha in np.unique(alphas):
                    where = np.flatnonzero(alphas == alpha)
                    if rows[where[0]] == 0:
                        frames[int(alpha)] = sink.buffer(int(alpha))  # filled with the source (or background)
                    parts.append((frames[int(alpha)], int(where[0]), int(where[-1]) + 1, rows[where]))
                codes = self.shifted_codes(alphas, rows)
                window.append(decoder.submit(codes, functools.partial(finish, parts=parts)))
                submitted += len(flat)
            take = window.popleft().result()
            position += take
            meter.add(take)
            while completed < position // n:  # every batch of this alpha is painted (batches finish in order)
                sink.done(completed, frames.pop(completed))
                completed += 1
            yield ProgressEvent(position, total, f"alpha {min(position // n + 1, count)} of {count}",
                                {"images_per_s": meter.rate}, stage="traverse")
        for future in window:  # stopped: drop what has not started, let the rest finish writing
            if not future.cancel():
                future.result()
        return completed

    def _result_info(self, completed: int) -> dict[str, Any]:
        info = dict(self.info)
        if completed < len(self):
            info["stopped"] = True
        return info

    def iter_compute(self, stop: StopFlag | None = None) -> Operation[Traversal]:
        """Decode every alpha (batches across slices and alphas); yields progress, returns a Traversal.

        When ``stop`` is requested the frames finished so far are returned (with their alphas).
        """
        out = np.empty((len(self), *self.grid.shape), dtype=np.float32)
        completed = yield from self._iter_produce(_MemorySink(out, self._painter), stop)
        if completed < len(self):
            out = out[:completed].copy()
        return Traversal(out, self.alphas[:completed], self.grid, self.direction, self.units, self.alpha_scale,
                         baseline_index(self.latent_alphas[:completed]), self.model_name, self.model_fingerprint,
                         self.space, self.geometry, self.fill, self.source, self._result_info(completed))

    def iter_save(self, path: str | os.PathLike[str], stop: StopFlag | None = None) -> Operation[Path | None]:
        """Decode every alpha straight into a file: a store (``*.zarr``) or a 4D NIfTI; yields progress.

        The same batches and voxels as :meth:`iter_compute`, but each finished alpha volume is
        written by a writer thread (compressed into the store's chunks, or appended to the
        NIfTI's gzip stream) while the next ones are decoded, so memory holds a few volumes,
        never ``A`` of them. The result appears at ``path`` only when complete (atomically).
        When ``stop`` is requested a store keeps the alphas finished so far; a NIfTI, whose
        header announces every frame, is not written (an error says so). Returns the path,
        or None when stopped before the first alpha was finished (nothing is written).
        """
        name = self.direction.name if self.direction is not None else "traversal"
        writer: StoreWriter | NiftiFramesWriter = StoreWriter(path, self.grid, len(self)) if is_store_path(path) \
            else NiftiFramesWriter(path, self.grid, len(self), f"napari-latent traversal {name}")
        try:
            with _WriterSink(writer, self._painter) as sink:
                completed = yield from self._iter_produce(sink, stop)
                sink.flush()
            if completed == 0:
                writer.abort()
                return None
            facts = self.to_json()
            facts.update(alphas=[float(a) for a in self.alphas[:completed]],
                         latent_alphas=[float(a) for a in self.latent_alphas[:completed]],
                         baseline_index=int(baseline_index(self.latent_alphas[:completed])),
                         shape=[completed, *self.grid.shape], info=self._result_info(completed))
            return writer.commit(facts, completed)
        except BaseException:
            writer.abort()
            raise

    def iter_store(self, path: str | os.PathLike[str],
                   stop: StopFlag | None = None) -> Operation[StoredTraversal | None]:
        """:meth:`iter_save` into a traversal store (``*.zarr``); returns it opened for lazy reading.

        None when stopped before the first alpha was finished (nothing is written).
        """
        if not is_store_path(path):
            raise UserInputError(f"{path}: a traversal store must end in .zarr")
        written = yield from self.iter_save(path, stop)
        return None if written is None else StoredTraversal.open(written)

    def compute(self, progress: ProgressArg = None, stop: StopFlag | None = None) -> Traversal:
        """Every frame at once, as a :class:`Traversal` (``A`` x the volume in memory)."""
        return run_operation(self.iter_compute(stop), progress)

    def save(self, path: str | os.PathLike[str], progress: ProgressArg = None,
             stop: StopFlag | None = None) -> Path | None:
        """Write a store (``OUT.zarr``) or ``OUT.nii.gz`` plus ``OUT.json`` (:meth:`iter_save`)."""
        return run_operation(self.iter_save(path, stop), progress)


class _FrameSink(Protocol):
    """Where :meth:`LazyTraversal._iter_produce` puts its frames."""

    def buffer(self, alpha: int) -> np.ndarray:
        """A source-ordered frame (perhaps a view) to paint alpha number ``alpha`` into, already filled."""

    def done(self, alpha: int, frame: np.ndarray) -> None:
        """Frame ``alpha`` is complete."""


class _MemorySink:
    """Frames are the rows of one preallocated ``(A, i, j, k)`` array."""

    def __init__(self, out: np.ndarray, painter: _Painter) -> None:
        self.out, self.painter = out, painter

    def buffer(self, alpha: int) -> np.ndarray:
        self.painter.fill_frames(self.out[alpha])
        return self.out[alpha]

    def done(self, alpha: int, frame: np.ndarray) -> None:
        pass


class _WriterSink:
    """Frames are written by one background thread, one write in flight at a time (in alpha order).

    Memory: a new frame reuses the buffer of a written one, waiting for the write in flight
    when none is free, so at most two volumes are held (the one being decoded and the one
    being written, or two being decoded where a batch spans two alphas), whatever the number
    of alphas. For a store the buffers are contiguous in the store's (display) order, filled
    from a display-ordered copy of the source, and painted through a source-ordered view:
    the writer then compresses contiguous memory (a third less work than a transposed view)
    and the fill is a plain copy.
    """

    def __init__(self, writer: StoreWriter | NiftiFramesWriter, painter: _Painter) -> None:
        self.writer = writer
        self.painter = painter
        self.display = writer.geometry if isinstance(writer, StoreWriter) else None
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="napari-latent-store")
        self.pending: Future[None] | None = None
        self.free: list[np.ndarray] = []  # written frames, reused (a new volume costs its page faults)

    def __enter__(self) -> _WriterSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def buffer(self, alpha: int) -> np.ndarray:
        if not self.free and self.pending is not None:
            self.flush()  # the written frame's buffer comes back
        if self.display is None:
            frame = self.free.pop() if self.free else np.empty(self.writer.grid.shape, dtype=np.float32)
            self.painter.fill_frames(frame)
            return frame
        stored = self.free.pop() if self.free else np.empty(self.display.reorientation.target_shape, np.float32)
        self.painter.fill_display(stored, self.display)
        return self.display.from_display(stored)

    def done(self, alpha: int, frame: np.ndarray) -> None:
        self.flush()
        self.pending = self.pool.submit(self._write, alpha, frame)

    def _write(self, alpha: int, frame: np.ndarray) -> None:
        self.writer.write(alpha, frame)
        self.free.append(frame if self.display is None else self.display.to_display(frame))

    def flush(self) -> None:
        """Wait for the write in flight (its error is raised here)."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()
