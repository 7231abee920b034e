"""Batched, gradient-free decoding by a private model copy, and pasting slices back onto the volume grid."""

from __future__ import annotations

import copy
import functools
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from ...device import get_device
from ...errors import UserInputError
from ...models.base import GenerativeModel
from ...models.inference_rewrites import rewrite_for_inference
from ...volumes.arrays import contiguous
from ...volumes.io import Volume
from ...volumes.orientation import DisplayGeometry
from ...volumes.slicing import SliceGeometry, paste, resize_images

# -- decoding and mapping back ------------------------------------------------------------------

def default_batch_size(device: torch.device) -> int:
    """Images per decoder call: 16 on the CPU (caches; measured fastest), 64 on accelerators."""
    return 16 if device.type == "cpu" else 64


class Decoder:
    """Batched, gradient-free decoding by a private eval-mode copy of a model.

    The copy lives on ``device`` (the model's own by default). It is rewritten for inference
    (:func:`~napari_latent.models.inference_rewrites.rewrite_for_inference`: nearest
    upsampling plus 3x3 convolution as one transposed convolution, SiLU in place) and, on the
    CPU, uses the channels-last memory format; each change is kept only when the copy still
    agrees with the model on ``probe`` codes (to 1e-4).

    Parameters
    ----------
    model : GenerativeModel
        The model to copy (never modified).
    space : str
        The latent space of the codes to decode.
    batch_size : int or None
        Codes per decoder call (:func:`default_batch_size` when None).
    bf16 : bool
        bfloat16 autocast on the CPU and CUDA (faster, not pixel-identical).
    channels_last : bool
        Try the channels-last memory format on the CPU.
    probe : torch.Tensor
        Codes (the first two are used) on which every rewrite must agree with the model.
    device : str or torch.device, optional
        Where the copy lives (the model's device by default).
    streams : bool
        Decode batches in parallel single-threaded streams on the CPU (one per core).
    """

    def __init__(self, model: GenerativeModel, space: str, batch_size: int | None, bf16: bool, channels_last: bool,
                 probe: torch.Tensor, device: str | torch.device | None = None, streams: bool = True) -> None:
        self.space = space
        self.device = model.device if device is None else get_device(device)
        self.batch_size = default_batch_size(self.device) if batch_size is None else int(batch_size)
        if self.batch_size < 1:
            raise UserInputError(f"batch size must be positive, got {batch_size}")
        self.autocast = self.device.type if bf16 and self.device.type in ("cpu", "cuda") else None
        self.model = copy.deepcopy(model).to(self.device).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        probe = probe[:2].to(self.device)
        with torch.inference_mode():
            reference = self.model.decode(probe, self.space).float()
        rewritten = copy.deepcopy(self.model)
        self.rewritten = rewrite_for_inference(rewritten) > 0 and self._agrees(rewritten, probe, reference)
        if self.rewritten:
            self.model = rewritten
        self.channels_last = False
        if channels_last and self.device.type == "cpu":
            self.model.to(memory_format=torch.channels_last)
            self.channels_last = self._agrees(self.model, probe, reference)
            if not self.channels_last:
                self.model.to(memory_format=torch.contiguous_format)
        # torch's intra-op threads are set per thread: each stream thread sets its own to 1
        self._streams = max(1, torch.get_num_threads()) if self.device.type == "cpu" and streams else 1
        self._pool: ThreadPoolExecutor | None = None

    def _agrees(self, model: GenerativeModel, probe: torch.Tensor, reference: torch.Tensor) -> bool:
        """Whether ``model`` decodes ``probe`` like the original model did (``reference``, to 1e-4)."""
        with torch.inference_mode():
            try:
                candidate = model.decode(probe, self.space).float()
            except RuntimeError:
                return False
        return candidate.shape == reference.shape and float((candidate - reference).abs().max()) <= 1e-4

    @property
    def streams(self) -> int:
        """Batches decoded at the same time: one per intra-op thread on the CPU, else 1."""
        return self._streams

    @property
    def ahead(self) -> int:
        """Batches to keep submitted so that no stream waits for the caller (two per stream)."""
        return 2 * self._streams

    def _decode_batch(self, batch: torch.Tensor, post: Callable[[torch.Tensor], Any] | None = None) -> Any:
        with torch.inference_mode(), torch.autocast(self.autocast or "cpu", dtype=torch.bfloat16,
                                                    enabled=self.autocast is not None):
            images = self.model.decode(batch.to(self.device), self.space).float().cpu().contiguous()
            return images if post is None else post(images)

    def submit(self, batch: torch.Tensor, post: Callable[[torch.Tensor], Any] | None = None) -> Future[Any]:
        """Start decoding one batch of at most ``batch_size`` codes; see :meth:`start`."""
        if self._streams > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._streams, thread_name_prefix="napari-latent-decode",
                                                initializer=torch.set_num_threads, initargs=(1,))
                weakref.finalize(self, self._pool.shutdown, wait=False)
            return self._pool.submit(self._decode_batch, batch, post)
        future: Future[Any] = Future()
        future.set_result(self._decode_batch(batch, post))
        return future

    def start(self, codes: torch.Tensor, post: Callable[[torch.Tensor], Any] | None = None) -> list[Future[Any]]:
        """Start decoding ``(m, d)`` codes, batch by batch; :meth:`gather` the images.

        On the CPU the batches run in parallel streams, one single-threaded stream per core:
        for these small convolutions that is 1.2-1.3x faster than one stream whose every
        operation is split across the cores (their synchronisation costs more than it gains).
        Work submitted here runs while the caller does something else. Elsewhere the batches
        are decoded at once. ``post``, when given, is applied to each batch's ``(b, 1, S, S)``
        images in its stream, and a future's result is what it returns.
        """
        return [self.submit(codes[start:start + self.batch_size], post)
                for start in range(0, len(codes), self.batch_size)]

    @staticmethod
    def gather(futures: list[Future[torch.Tensor]]) -> torch.Tensor:
        """The images of :meth:`start`, in order, ``(m, 1, S, S)``."""
        out = [future.result() for future in futures]
        return torch.cat(out) if len(out) != 1 else out[0]

    def __call__(self, codes: torch.Tensor) -> torch.Tensor:
        """Decode ``(m, d)`` codes to ``(m, 1, S, S)`` float32 CPU images (see :meth:`start`)."""
        return self.gather(self.start(codes))


class _Painter:
    """Pastes decoded images onto the volume grid (exactly like ``SliceGeometry.to_volume``).

    :meth:`write` pastes into source-ordered frames (the eager traversal); :meth:`paint`
    into plane-oriented slabs (frames and blocks of the lazy one), whose fill is one
    contiguous plane-oriented copy of the source, made on first use (pasting into contiguous
    planes is several times faster than into a reoriented view).
    """

    def __init__(self, geometry: SliceGeometry, fill: Volume | None) -> None:
        self.geometry = geometry
        self.reorientation = geometry.reorientation
        self.low, self.high = geometry.window_values
        self.source_fill = None if fill is None else np.asarray(fill.data, dtype=np.float32)
        self.indices = np.asarray(geometry.indices, dtype=np.int64)
        self.plane_shape = geometry.plane_shape
        self._display_fill: tuple[DisplayGeometry, np.ndarray] | None = None

    @functools.cached_property
    def plane_fill(self) -> np.ndarray | None:
        """The fill in the plane orientation, contiguous (None: the window's low end)."""
        return None if self.source_fill is None else contiguous(self.reorientation.apply(self.source_fill))

    def blank(self, start: int, stop: int, count: int | None = None) -> np.ndarray:
        """``(count, stop - start, rows, cols)`` (or 3D without count) slabs of the fill."""
        shape = (stop - start, *self.plane_shape[1:])
        lead = () if count is None else (count,)
        out = np.empty(lead + shape, dtype=np.float32)
        out[...] = self.low if self.plane_fill is None else self.plane_fill[start:stop]
        return out

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows of the codes whose slices lie in ``[start, stop)`` of the plane orientation."""
        return np.arange(np.searchsorted(self.indices, start), np.searchsorted(self.indices, stop))

    def prepare(self, images: torch.Tensor) -> np.ndarray:
        """Model images ``(m, 1, S, S)`` to ``(m, rows, cols)`` crops of the box in intensity units."""
        resized = resize_images(images.float(), self.geometry.box_shape)[:, 0].numpy()
        if not resized.flags.writeable or np.shares_memory(resized, images.numpy()):
            resized = resized.copy()
        # (resized + 1) * 0.5 * (high - low) + low, in place: the same operations in the same
        # order (so the same float32 values), without three temporaries the size of the crops.
        resized += 1.0
        resized *= 0.5
        resized *= self.high - self.low
        resized += self.low
        return resized

    def paint(self, slab: np.ndarray, images: torch.Tensor | np.ndarray, rows: np.ndarray, start: int) -> None:
        """Write the images (model images, or crops of :meth:`prepare`) of code ``rows`` into ``slab``.

        ``slab``'s first plane is ``start`` of the plane orientation.
        """
        if len(rows) == 0:
            return
        crops = self.prepare(images) if isinstance(images, torch.Tensor) else images
        paste(slab, self.indices[rows] - start, crops, self.geometry.box)

    def fill_frames(self, frames: np.ndarray) -> None:
        """Set source-ordered ``(..., i, j, k)`` frames to the fill (the source, or the window's low end)."""
        frames[...] = self.low if self.source_fill is None else self.source_fill

    def fill_display(self, frame: np.ndarray, display: DisplayGeometry) -> None:
        """Set a frame stored in ``display``'s order to the fill (a plain copy of a display-ordered source)."""
        if self.source_fill is None:
            frame[...] = self.low
            return
        if self._display_fill is None or self._display_fill[0] is not display:
            self._display_fill = (display, contiguous(display.to_display(self.source_fill)))
        frame[...] = self._display_fill[1]

    def write(self, frame: np.ndarray, crops: np.ndarray, rows: np.ndarray) -> None:
        """Write :meth:`prepare` crops of code ``rows`` straight into a source-ordered ``frame``.

        The same voxels as :meth:`paint` on plane-oriented planes followed by the inverse
        reorientation, without a reoriented copy of the whole volume: each run of
        consecutive slices is one box of the source array, and only the crops (a few
        hundred kB, in cache) are reoriented. Safe from several threads on disjoint rows.
        """
        if len(rows) == 0:
            return
        r0, r1, c0, c1 = self.geometry.box
        _, height, width = self.plane_shape
        sr0, sr1, sc0, sc1 = max(r0, 0), min(r1, height), max(c0, 0), min(c1, width)
        if sr1 <= sr0 or sc1 <= sc0:
            return
        crops = crops[:, sr0 - r0:sr1 - r0, sc0 - c0:sc1 - c0]
        planes = self.indices[np.asarray(rows)]
        breaks = np.flatnonzero(np.diff(planes) != 1) + 1
        for first, last in zip(np.r_[0, breaks], np.r_[breaks, len(planes)]):
            region = self.reorientation.source_region(
                (slice(int(planes[first]), int(planes[last - 1]) + 1), slice(sr0, sr1), slice(sc0, sc1)))
            frame[region] = self.reorientation.invert(crops[first:last])
