"""Batched, gradient-free decoding by a private model copy, and pasting slices back onto the volume grid."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from ...device import get_device
from ...errors import UserInputError
from ...models.base import GenerativeModel
from ...models.inference_rewrites import rewrite_for_inference
from ...volumes.io import Volume
from ...volumes.slicing import SliceGeometry, _paste, resize_images

# -- decoding and mapping back ------------------------------------------------------------------

def default_batch_size(device: torch.device) -> int:
    """Images per decoder call: 16 on the CPU (caches; measured fastest), 64 on accelerators."""
    return 16 if device.type == "cpu" else 64


class _Decoder:
    """Batched, gradient-free decoding by a private eval-mode copy of a model.

    The copy lives on ``device`` (the model's own by default). It is rewritten for inference
    (:func:`~napari_latent.models.inference_rewrites.rewrite_for_inference`: nearest
    upsampling plus 3x3 convolution as one transposed convolution, SiLU in place) and, on the
    CPU, uses the channels-last memory format; each change is kept only when the copy still
    agrees with the model on ``probe`` codes (to 1e-4).
    """

    def __init__(self, model: GenerativeModel, space: str, batch_size: int | None, bf16: bool, channels_last: bool,
                 probe: torch.Tensor, device: str | torch.device | None = None) -> None:
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
            self._reference = self.model.decode(probe, self.space).float()
        self.rewritten = self._try(probe, self._rewrite, None)
        self.channels_last = channels_last and self.device.type == "cpu" and self._try(
            probe, lambda: self.model.to(memory_format=torch.channels_last),
            lambda: self.model.to(memory_format=torch.contiguous_format))
        del self._reference

    def _rewrite(self) -> None:
        self._plain = copy.deepcopy(self.model)
        if rewrite_for_inference(self.model) == 0:
            raise RuntimeError("nothing to rewrite")

    def _try(self, probe: torch.Tensor, change: Any, undo: Any) -> bool:
        """Apply ``change`` to the copy; keep it if the copy still agrees with the model on ``probe``."""
        with torch.inference_mode():
            try:
                change()
                candidate = self.model.decode(probe, self.space).float()
                agrees = candidate.shape == self._reference.shape and \
                    float((candidate - self._reference).abs().max()) <= 1e-4
            except RuntimeError:
                agrees = False
        if not agrees:
            if undo is not None:
                undo()
            elif getattr(self, "_plain", None) is not None:
                self.model = self._plain
        self._plain = None
        return agrees

    def __call__(self, codes: torch.Tensor) -> torch.Tensor:
        """Decode ``(m, d)`` codes to ``(m, 1, S, S)`` float32 CPU images."""
        out = []
        with torch.inference_mode(), torch.autocast(self.autocast or "cpu", dtype=torch.bfloat16,
                                                    enabled=self.autocast is not None):
            for start in range(0, len(codes), self.batch_size):
                batch = codes[start:start + self.batch_size].to(self.device)
                out.append(self.model.decode(batch, self.space).float().cpu().contiguous())
        return torch.cat(out) if len(out) != 1 else out[0]


class _Painter:
    """Pastes decoded images into plane-oriented slabs (exactly like ``SliceGeometry.to_volume``).

    The fill is kept as one contiguous plane-oriented copy of the source (pasting into
    contiguous planes is several times faster than into a reoriented view).
    """

    def __init__(self, geometry: SliceGeometry, fill: Volume | None) -> None:
        self.geometry = geometry
        self.reorientation = geometry.reorientation
        self.low, self.high = geometry.window_values
        self.fill = None if fill is None else np.ascontiguousarray(self.reorientation.apply(fill.data))
        self.indices = np.asarray(geometry.indices, dtype=np.int64)
        self.plane_shape = geometry.plane_shape

    def blank(self, start: int, stop: int, count: int | None = None) -> np.ndarray:
        """``(count, stop - start, rows, cols)`` (or 3D without count) slabs of the fill."""
        shape = (stop - start, *self.plane_shape[1:])
        lead = () if count is None else (count,)
        out = np.empty(lead + shape, dtype=np.float32)
        out[...] = self.low if self.fill is None else self.fill[start:stop]
        return out

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows of the codes whose slices lie in ``[start, stop)`` of the plane orientation."""
        return np.arange(np.searchsorted(self.indices, start), np.searchsorted(self.indices, stop))

    def paint(self, slab: np.ndarray, images: torch.Tensor, rows: np.ndarray, start: int) -> None:
        """Write the images of code ``rows`` into ``slab`` (whose first plane is ``start``)."""
        if len(rows) == 0:
            return
        resized = resize_images(images.float(), self.geometry.box_shape)[:, 0].numpy()
        resized = (resized + 1.0) * 0.5 * (self.high - self.low) + self.low
        _paste(slab, self.indices[rows] - start, resized, self.geometry.box)


def _blocked_copy(target: np.ndarray, source: np.ndarray, block: int = 32) -> None:
    """``target[...] = source`` in tiles of the first two axes.

    A reorientation view swaps and flips axes; copying it tile by tile keeps reads and writes
    in cache (1.5-1.8x faster than one assignment for 128-256 cubed volumes).
    """
    rows, cols = target.shape[:2]
    for i in range(0, rows, block):
        for j in range(0, cols, block):
            target[i:i + block, j:j + block] = source[i:i + block, j:j + block]


