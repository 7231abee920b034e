"""Traversal of a volume along a latent direction: every slice's code shifted by ``alpha * d``.

For each alpha, every kept slice code ``c_i`` of an inverted volume becomes
``c_i + alpha * scale * d`` (``d`` a unit vector), the model decodes it, and the decoded slices
are mapped back onto the source volume's voxel grid (the exact inverse of the slicing, see
:meth:`~napari_latent.volumes.slicing.SliceGeometry.to_volume`). The result is a 4D stack
``(A, i, j, k)`` in the source's array order: one 3D volume per alpha, with the source affine.

Alpha units
-----------
``"latent"``
    Alphas are distances along the unit direction in the latent space (the MS paper's
    ``0 .. 50 in 15 steps`` is ``alphas="0:50:15"`` in a StyleGAN ``w`` space).
``"std"``
    Alphas count standard deviations of *this volume's codes* projected on the direction
    (``codes @ d`` over the kept slices): ``latent alpha = alpha * std(codes @ d)``. It
    says how far the shift goes compared with how much the slices of this one volume
    already differ along ``d``.
``"direction_std"``
    Alphas count :attr:`Directions.code_std` of the chosen direction: the spread along
    ``d`` of the data or prior samples the discovery method used (single directions only).

The factor in effect is kept as :attr:`Traversal.alpha_scale` (latent units per alpha unit);
:attr:`Traversal.latent_alphas` is ``alphas * alpha_scale``. Alphas are sorted ascending, so
frames (and the columns of the eigen analysis) are ordered by alpha. The *baseline* is the
frame of alpha 0, or of the alpha nearest to 0.

Outside the modelled voxels
---------------------------
The model only produces the kept slices inside the slicing box. Every other voxel of a frame
holds the source volume's own intensity when the source volume is known (a volume was
given, or ``source=`` with codes), so that frames look like the whole anatomy and overlay
it seamlessly; otherwise the lower end of the intensity window (the "background" value of
the model's images). Those voxels are identical in every frame, so they never show up in
difference maps; :meth:`Traversal.modelled_mask` tells them apart.

Speed and memory
----------------
Codes are decoded in batches of ``batch_size`` images taken across slices *and* alphas
(alpha-major), under ``torch.inference_mode``, by a private copy of the model in eval mode
(the caller's model is never touched) and, on the CPU, in the channels-last memory format.
Measured with the bundled demo VAE (64 px) on this project's 2-core CPU: batching alone
gains nothing over decoding one slice at a time (about 4.7 ms per image either way), the
channels-last copy takes 1.2-2 ms per image (outputs agree to about 1e-6; the layout is
checked against the plain one on the first codes and reverted if it does not agree to
1e-4), and batches of 16 beat larger ones (caches), so 16 is the CPU default.
``benchmarks/bench_traversal.py`` (128-cube volume, 15 alphas): 2.8x faster than the
one-slice-per-alpha loop at identical output (2e-6 of the intensity window), the decoder at
~210 GFLOP/s. ``bf16=True`` adds bfloat16 autocast: 4.2x, but images differ from fp32 by up
to ~0.9% of the intensity window, so fp32 is the default.

Streaming: a :class:`LazyTraversal` computes nothing up front. ``frame(i)`` decodes one alpha
(one volume), ``iter_blocks`` yields slabs of slices with every alpha (for the chunked eigen
analysis) and ``save`` writes the 4D NIfTI frame by frame, so peak memory stays at one
volume (or one slab times A) plus the model, never A times the volume.
"""

from __future__ import annotations

import copy
import gzip
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import nibabel as nib
import numpy as np
import torch

from .._atomic import atomic_path, write_json_atomic
from ..device import get_device
from ..errors import MismatchError, UserInputError, VolumeError
from ..models.base import GenerativeModel
from ..progress import Operation, ProgressArg, ProgressEvent, RateMeter, StopFlag, run_operation, stop_requested
from ..volumes.grid import Grid
from ..volumes.io import Volume, is_nifti_path, open_series
from ..volumes.slicing import SliceGeometry, _paste, resize_images
from .codes import LatentCodes
from .directions import Directions
from .inversion import iter_invert

TRAVERSAL_FORMAT = "napari-latent-traversal"
TRAVERSAL_VERSION = 1
UNITS = ("latent", "std", "direction_std")
Units = Literal["latent", "std", "direction_std"]

#: What ``direction`` may be: a Directions object (with ``index=``), a resolved
#: :class:`TraversalDirection`, or a raw vector.
DirectionArg = Any

#: What ``index`` may be: a direction's index or name, or weights of several directions.
IndexArg = int | str | Mapping[int | str, float] | None

_ALPHA_HELP = "use START:STOP:N (N evenly spaced values, both ends included, e.g. 0:50:15) or a comma list (0,10,20)"


# -- alphas -------------------------------------------------------------------------------------

def _number(text: str, whole: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise UserInputError(f"alphas {whole!r}: {text.strip()!r} is not a number; {_ALPHA_HELP}") from None
    if not math.isfinite(value):
        raise UserInputError(f"alphas {whole!r}: {text.strip()!r} is not a finite number")
    return value


def parse_alphas(text: str | Sequence[float] | np.ndarray) -> np.ndarray:
    """Parse alphas written as ``START:STOP:N`` or as a comma list.

    Parameters
    ----------
    text : str or sequence of float
        ``"0:50:15"`` is ``numpy.linspace(0, 50, 15)`` (both ends included; the MS paper's
        setting); ``"0,10,25"`` is the listed values. Numbers may be negative or in
        exponent notation. A sequence of numbers is checked and passed through.

    Returns
    -------
    numpy.ndarray
        float64 alphas in the order given.

    Raises
    ------
    UserInputError
        For empty input, a part that is not a number, ``N`` that is not an integer of at
        least 2, a wrong number of ``:`` parts, non-finite or repeated values.
    """
    if not isinstance(text, str):
        values = np.asarray(text, dtype=np.float64).ravel()
        return check_alphas(values)
    raw = text.strip()
    if not raw:
        raise UserInputError(f"no alphas given; {_ALPHA_HELP}")
    if ":" in raw:
        parts = raw.split(":")
        if len(parts) != 3:
            raise UserInputError(f"alphas {raw!r}: expected three parts START:STOP:N, got {len(parts)}; {_ALPHA_HELP}")
        start, stop = _number(parts[0], raw), _number(parts[1], raw)
        count_text = parts[2].strip()
        try:
            count = int(count_text)
        except ValueError:
            raise UserInputError(f"alphas {raw!r}: N = {count_text!r} must be a whole number of steps") from None
        if count < 2:
            raise UserInputError(f"alphas {raw!r}: N must be at least 2 (use a single number for one alpha)")
        if count > 10_000:
            raise UserInputError(f"alphas {raw!r}: {count} steps is too many (at most 10000)")
        if start == stop:
            raise UserInputError(f"alphas {raw!r}: START and STOP are equal")
        return np.linspace(start, stop, count)
    parts = raw.split(",")
    if any(not p.strip() for p in parts):
        raise UserInputError(f"alphas {raw!r}: an empty item in the list; {_ALPHA_HELP}")
    return check_alphas(np.array([_number(p, raw) for p in parts], dtype=np.float64))


def check_alphas(values: np.ndarray) -> np.ndarray:
    """Check alphas: at least one, finite, no repeats. Returns float64 in the given order."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise UserInputError(f"no alphas given; {_ALPHA_HELP}")
    if not np.all(np.isfinite(values)):
        raise UserInputError("alphas must be finite numbers")
    if len(np.unique(values)) != len(values):
        raise UserInputError(f"alphas must be distinct, got {values.tolist()}")
    return values


def baseline_index(latent_alphas: np.ndarray) -> int:
    """Index of alpha 0, or of the alpha nearest to 0 (the first of a tie)."""
    latent_alphas = np.asarray(latent_alphas, dtype=np.float64)
    if latent_alphas.size == 0:
        return 0
    return int(np.argmin(np.abs(latent_alphas)))


# -- directions ---------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class TraversalDirection:
    """The direction a traversal moves along (resolved to one unit vector).

    Attributes
    ----------
    vector : numpy.ndarray
        ``(d,)`` float32 unit vector.
    name : str
        The direction's name (a weighted combination is named after its parts).
    index : int or None
        Index in its :class:`Directions` object (None for combinations and raw vectors).
    method : str
        The discovery method of the directions (``"vector"`` for a raw vector).
    weights : dict of str to float, or None
        Names and weights of a combination of several directions.
    space : str
        Latent space of the vector (empty for a raw vector).
    code_std : float or None
        The direction's :attr:`Directions.code_std` (single directions only).
    """

    vector: np.ndarray
    name: str = "direction"
    index: int | None = None
    method: str = ""
    weights: dict[str, float] | None = None
    space: str = ""
    code_std: float | None = None

    def __post_init__(self) -> None:
        vector = np.asarray(self.vector, dtype=np.float64).ravel()
        norm = float(np.linalg.norm(vector))
        if vector.size == 0 or not np.all(np.isfinite(vector)) or norm < 1e-12:
            raise UserInputError("a traversal direction must be a finite vector of non-zero length")
        object.__setattr__(self, "vector", (vector / norm).astype(np.float32))

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (the vector as a list)."""
        return {"name": self.name, "index": self.index, "method": self.method, "weights": self.weights,
                "space": self.space, "code_std": self.code_std, "vector": [float(v) for v in self.vector]}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> TraversalDirection:
        """Rebuild from :meth:`to_json` output."""
        return cls(np.asarray(obj["vector"], dtype=np.float32), obj.get("name", "direction"), obj.get("index"),
                   obj.get("method", ""), obj.get("weights"), obj.get("space", ""), obj.get("code_std"))


def resolve_direction(direction: DirectionArg,
                      index: IndexArg = None) -> TraversalDirection:
    """Turn the accepted direction arguments into one :class:`TraversalDirection`.

    Parameters
    ----------
    direction : Directions, TraversalDirection, torch.Tensor or numpy.ndarray
        A set of directions, or one raw vector (normalised to unit length).
    index : int, str or mapping, optional
        With a :class:`Directions`: the direction's index or name, or a mapping of indices
        or names to weights for a weighted sum (normalised to unit length, see
        :meth:`Directions.combination`). May be omitted when there is only one direction.

    Raises
    ------
    UserInputError
        Index out of range, unknown name, several directions and no index, weights that
        cancel out, an index given with a raw vector, a zero or non-finite vector.
    """
    if isinstance(direction, TraversalDirection):
        if index is not None:
            raise UserInputError("index/weights apply to a Directions object, not to a resolved direction")
        return direction
    if isinstance(direction, Directions):
        if isinstance(index, Mapping):
            vector = direction.combination(dict(index))
            weights = {direction.names[direction.index_of(k)]: float(w) for k, w in index.items()}
            name = " + ".join(f"{w:g}*{n}" for n, w in weights.items())
            return TraversalDirection(vector.numpy(), name, None, direction.method, weights, direction.space, None)
        if index is None:
            if len(direction) != 1:
                raise UserInputError(f"there are {len(direction)} directions; choose one with an index (0 to "
                                     f"{len(direction) - 1}) or a name, or give weights for a combination")
            index = 0
        i = direction.index_of(index)
        return TraversalDirection(direction.vectors[i].numpy(), direction.names[i], i, direction.method, None,
                                  direction.space, float(direction.code_std[i]))
    if index is not None:
        raise UserInputError("index/weights apply to a Directions object, not to a raw vector")
    if isinstance(direction, torch.Tensor):
        direction = direction.detach().cpu().double().numpy()
    try:
        vector = np.asarray(direction, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserInputError(f"a direction must be a Directions object or a vector, got {type(direction).__name__}") \
            from None
    if vector.ndim != 1:
        raise UserInputError(f"a raw direction must be one vector (d,), got shape {vector.shape}")
    return TraversalDirection(vector, "vector", None, "vector", None, "", None)


def alpha_scale(units: str, direction: TraversalDirection, codes: LatentCodes) -> float:
    """Latent units per alpha unit for ``units`` (see the module docstring)."""
    if units == "latent":
        return 1.0
    if units == "std":
        projected = codes.codes.double().numpy() @ direction.vector.astype(np.float64)
        scale = float(np.std(projected, ddof=1)) if len(projected) > 1 else 0.0
        if not scale > 1e-12:
            raise UserInputError("the codes do not vary along the direction (their std is 0); use units 'latent'")
        return scale
    if units == "direction_std":
        if direction.code_std is None:
            raise UserInputError("units 'direction_std' need a single direction of a Directions object (its "
                                 "code_std); use 'std' or 'latent'")
        if not direction.code_std > 0:
            raise UserInputError(f"direction {direction.name!r} has no positive code_std")
        return float(direction.code_std)
    raise UserInputError(f"unknown alpha units {units!r}; use one of {', '.join(UNITS)}")


# -- decoding and mapping back ------------------------------------------------------------------

def default_batch_size(device: torch.device) -> int:
    """Images per decoder call: 16 on the CPU (caches; measured fastest), 64 on accelerators."""
    return 16 if device.type == "cpu" else 64


class _Decoder:
    """Batched, gradient-free decoding by a private eval-mode copy of a model.

    The copy lives on ``device`` (the model's own by default); on the CPU it uses the
    channels-last memory format when that agrees with the plain layout on ``probe`` codes.
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
        if channels_last and self.device.type == "cpu":
            self._try_channels_last(probe[:2].to(self.device))

    def _try_channels_last(self, probe: torch.Tensor) -> None:
        """Switch the copy to channels-last if it runs and agrees with the plain layout on ``probe``."""
        with torch.inference_mode():
            reference = self.model.decode(probe, self.space).float()
            try:
                self.model.to(memory_format=torch.channels_last)
                candidate = self.model.decode(probe, self.space).float()
                agrees = candidate.shape == reference.shape and float((candidate - reference).abs().max()) <= 1e-4
            except RuntimeError:
                agrees = False
        if not agrees:
            self.model.to(memory_format=torch.contiguous_format)

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


# -- shared facts -------------------------------------------------------------------------------

class _TraversalFacts:
    """What :class:`Traversal` and :class:`LazyTraversal` share (the eigen analysis uses this)."""

    alphas: np.ndarray
    grid: Grid
    direction: TraversalDirection | None
    units: str
    alpha_scale: float
    baseline_index: int
    model_name: str
    model_fingerprint: str
    space: str
    geometry: SliceGeometry | None
    fill: str
    source: str
    info: dict[str, Any]

    def __len__(self) -> int:
        return len(self.alphas)

    @property
    def latent_alphas(self) -> np.ndarray:
        """Alphas in latent units (``alphas * alpha_scale``)."""
        return np.asarray(self.alphas, dtype=np.float64) * float(self.alpha_scale)

    @property
    def shape(self) -> tuple[int, ...]:
        """``(A, i, j, k)``: alphas, then the source grid's shape."""
        return (len(self), *self.grid.shape)

    def modelled_mask(self) -> np.ndarray:
        """Boolean mask on the source grid of the voxels the model produced (all when unknown)."""
        if self.geometry is None:
            return np.ones(self.grid.shape, dtype=bool)
        return self.geometry.slice_mask()

    def frame(self, index: int) -> np.ndarray:  # pragma: no cover - implemented by subclasses
        raise NotImplementedError

    def difference(self, index: int) -> np.ndarray:
        """``frame(index) - frame(baseline)`` on the source grid."""
        return self.frame(index) - self.frame(self.baseline_index)

    def _index(self, index: int) -> int:
        count = len(self)
        if not -count <= int(index) < count:
            raise UserInputError(f"alpha index {index} is out of range; the traversal has {count} alphas "
                                 f"(0 to {count - 1})")
        return int(index) % count

    def to_json(self) -> dict[str, Any]:
        """The sidecar: everything but the voxels, JSON-serialisable."""
        return {"format": TRAVERSAL_FORMAT, "format_version": TRAVERSAL_VERSION,
                "alphas": [float(a) for a in self.alphas], "units": self.units, "alpha_scale": float(self.alpha_scale),
                "latent_alphas": [float(a) for a in self.latent_alphas], "baseline_index": int(self.baseline_index),
                "direction": None if self.direction is None else self.direction.to_json(),
                "model": self.model_name, "model_fingerprint": self.model_fingerprint, "space": self.space,
                "shape": list(self.shape), "grid": self.grid.to_json(),
                "geometry": None if self.geometry is None else self.geometry.to_json(),
                "fill": self.fill, "source": self.source, "info": self.info}


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """``OUT.json`` beside ``OUT.nii.gz`` (or ``OUT.nii``)."""
    path = Path(path)
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    return path.with_name(name + ".json")


def _write_frames(path: Path, frames: Iterator[np.ndarray], count: int, grid: Grid, description: str) -> Path:
    """Write a 4D float32 NIfTI ``(i, j, k, count)`` frame by frame, atomically.

    The header is set up like :func:`~napari_latent.volumes.save_volume` with a grid as
    reference (sform and qform code 1, mm and seconds); each frame is streamed to the
    (gzip) file as soon as it is produced, so memory holds one frame at a time.
    """
    if not is_nifti_path(path):
        raise VolumeError(f"{path}: a traversal must be saved as .nii.gz or .nii")
    header = nib.Nifti1Header()
    header.set_data_dtype(np.float32)
    header.set_data_shape((*grid.shape, count))
    header.set_sform(np.asarray(grid.affine), code=1)
    header.set_qform(np.asarray(grid.affine), code=1)
    header.set_xyzt_units("mm", "sec")
    header["descrip"] = description.encode("latin-1", "replace")[:79]
    header.set_data_offset(352)
    header.set_slope_inter(1.0, 0.0)
    with atomic_path(path) as tmp, open(tmp, "wb") as raw:
        stream: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) \
            if str(path).lower().endswith(".gz") else raw
        try:
            stream.write(header.binaryblock)
            stream.write(b"\x00" * (352 - len(header.binaryblock)))
            written = 0
            for frame in frames:
                data = np.asarray(frame, dtype=np.float32)
                if data.shape != grid.shape:
                    raise MismatchError(f"frame of shape {data.shape} is not on the grid {grid.shape}")
                if not np.all(np.isfinite(data)):
                    raise VolumeError("refusing to write NaN or infinite voxels")
                stream.write(np.asfortranarray(data).astype("<f4", copy=False).tobytes(order="F"))
                written += 1
            if written != count:
                raise MismatchError(f"{written} frames written, {count} announced")
        finally:
            if stream is not raw:
                stream.close()
    return path


def _save(facts: _TraversalFacts, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if not is_nifti_path(path):
        raise VolumeError(f"{path}: a traversal must be saved as .nii.gz or .nii")
    if len(facts) == 0:
        raise UserInputError("the traversal has no frames to save")
    name = facts.direction.name if facts.direction is not None else "traversal"
    _write_frames(path, (facts.frame(i) for i in range(len(facts))), len(facts), facts.grid,
                  f"napari-latent traversal {name}")
    write_json_atomic(sidecar_path(path), facts.to_json())
    return path


# -- the eager result ---------------------------------------------------------------------------

@dataclass(eq=False)
class Traversal(_TraversalFacts):
    """A volume traversed along a latent direction: one volume per alpha on the source grid.

    Attributes
    ----------
    images : numpy.ndarray
        ``(A, i, j, k)`` float32, frame ``a`` the volume at ``alphas[a]``, in the source
        volume's array order and intensity units.
    alphas : numpy.ndarray
        ``(A,)`` ascending alphas in :attr:`units`.
    grid : Grid
        The source volume's grid (shape and affine).
    direction : TraversalDirection or None
        Vector, name, index, method and weights of the direction.
    units : {"latent", "std", "direction_std"}
        Units of :attr:`alphas` (see the module docstring).
    alpha_scale : float
        Latent units per alpha unit.
    baseline_index : int
        Frame of alpha 0 (or the nearest); computed when left at -1.
    model_name, model_fingerprint, space : str
        The model and latent space the codes were decoded with.
    geometry : SliceGeometry or None
        The slicing of the source volume (tells modelled voxels from filled ones).
    fill : str
        What the voxels outside the modelled slices hold: ``"source"`` intensities or the
        ``"window"``'s lower value.
    source : str
        The source volume's path or name.
    info : dict
        Other facts (inversion method and error, decoding settings, whether it was stopped).
    """

    images: np.ndarray
    alphas: np.ndarray
    grid: Grid
    direction: TraversalDirection | None = None
    units: str = "latent"
    alpha_scale: float = 1.0
    baseline_index: int = -1
    model_name: str = ""
    model_fingerprint: str = ""
    space: str = ""
    geometry: SliceGeometry | None = None
    fill: str = "window"
    source: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.images = np.asarray(self.images, dtype=np.float32)
        self.alphas = np.asarray(self.alphas, dtype=np.float64).ravel()
        if self.images.ndim != 4:
            raise MismatchError(f"traversal images must be (A, i, j, k), got shape {self.images.shape}")
        if tuple(self.images.shape[1:]) != self.grid.shape:
            raise MismatchError(f"traversal frames of shape {self.images.shape[1:]} are not on the grid "
                                f"{self.grid.shape}")
        if len(self.alphas) != self.images.shape[0]:
            raise MismatchError(f"{len(self.alphas)} alphas for {self.images.shape[0]} frames")
        if self.units not in UNITS:
            raise UserInputError(f"unknown alpha units {self.units!r}; use one of {', '.join(UNITS)}")
        if self.baseline_index < 0:
            self.baseline_index = baseline_index(self.latent_alphas)

    def frame(self, index: int) -> np.ndarray:
        """The volume at alpha number ``index`` (a view)."""
        return self.images[self._index(index)]

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.images)

    @property
    def baseline(self) -> np.ndarray:
        """The baseline frame (alpha 0 or the nearest)."""
        return self.frame(self.baseline_index)

    # -- chunked access (see napari_latent.analysis.eigen) --------------------------------------
    @property
    def working_shape(self) -> tuple[int, int, int]:
        """Shape of the blocks' voxel grid: the source grid itself."""
        return self.grid.shape

    def to_working(self, array: np.ndarray) -> np.ndarray:
        """Source-ordered array to the order of :meth:`iter_blocks` (identity here)."""
        return array

    def from_working(self, array: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_working`."""
        return array

    def iter_blocks(self, chunk: int | None = None, start: int = 0,
                    stop: int | None = None) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield ``(first, last, block)``: every alpha of source planes ``[first, last)`` (views).

        Parameters
        ----------
        chunk : int, optional
            Planes (along the first array axis) per block; all at once when omitted.
        start, stop : int, optional
            Only the planes ``[start, stop)`` (all by default).
        """
        size = self.grid.shape[0]
        stop = size if stop is None else min(int(stop), size)
        step = size if chunk is None else max(1, int(chunk))
        for first in range(max(0, int(start)), stop, step):
            last = min(stop, first + step)
            yield first, last, self.images[:, first:last]

    # -- files ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``OUT.nii.gz`` (4D, ``(i, j, k, A)``, source affine) and ``OUT.json``, atomically.

        The sidecar holds the alphas, units, direction (vector, name, index, method,
        weights), model name and fingerprint, baseline index, grid, slicing geometry and a
        format version. Returns the NIfTI path.
        """
        return _save(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Traversal:
        """Read a traversal written by :meth:`save` (or :meth:`LazyTraversal.save`).

        Raises
        ------
        UserInputError
            When the file is missing, not NIfTI, a 3D volume, has no sidecar, the sidecar is
            not a traversal's, or the frames or grid do not match the sidecar.
        """
        path = Path(path)
        if not path.is_file():
            raise VolumeError(f"{path}: no such file")
        if not is_nifti_path(path):
            raise VolumeError(f"{path}: not a traversal (expected a .nii.gz or .nii file with a .json sidecar)")
        try:
            shape = tuple(nib.load(str(path)).shape)
        except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError) as exc:
            raise VolumeError(f"{path}: not a valid NIfTI file ({exc})") from exc
        if len(shape) < 4:
            raise UserInputError(f"{path}: not a traversal: a {len(shape)}D volume of shape {shape} (a traversal "
                                 "is a 4D NIfTI file with one frame per alpha, plus a .json sidecar)")
        sidecar = sidecar_path(path)
        if not sidecar.is_file():
            raise UserInputError(f"{path}: not a traversal: its sidecar {sidecar.name} is missing (a traversal is "
                                 "saved as OUT.nii.gz plus OUT.json)")
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserInputError(f"{sidecar}: the traversal sidecar is not valid JSON ({exc})") from exc
        if not isinstance(meta, dict) or meta.get("format") != TRAVERSAL_FORMAT:
            raise UserInputError(f"{sidecar}: not a traversal sidecar (format "
                                 f"{meta.get('format') if isinstance(meta, dict) else None!r})")
        if int(meta.get("format_version", 0)) > TRAVERSAL_VERSION:
            raise UserInputError(f"{sidecar}: made by a newer napari-latent; please upgrade")
        frames, first = open_series(path)
        alphas = np.asarray(meta["alphas"], dtype=np.float64)
        if len(alphas) != frames.shape[0]:
            raise MismatchError(f"{path}: {frames.shape[0]} frames but the sidecar lists {len(alphas)} alphas")
        grid = Grid.from_json(meta["grid"]) if meta.get("grid") else first.grid
        grid.check_same(first.grid, f"{path.name}")
        geometry = SliceGeometry.from_json(meta["geometry"]) if meta.get("geometry") else None
        direction = TraversalDirection.from_json(meta["direction"]) if meta.get("direction") else None
        info = dict(meta.get("info") or {})
        info["path"] = str(path)
        return cls(frames, alphas, first.grid, direction, meta.get("units", "latent"),
                   float(meta.get("alpha_scale", 1.0)), int(meta.get("baseline_index", -1)), meta.get("model", ""),
                   meta.get("model_fingerprint", ""), meta.get("space", ""), geometry, meta.get("fill", "window"),
                   meta.get("source", ""), info)


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
        self._decoder: _Decoder | None = None

    # -- decoding -------------------------------------------------------------------------------
    @property
    def decoder(self) -> _Decoder:
        """The prepared decoder (made on first use)."""
        if self._decoder is None:
            self._decoder = _Decoder(self.model, self.space, self.batch_size, self.bf16, self.channels_last,
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

    # -- the eager result -------------------------------------------------------------------------
    def iter_compute(self, stop: StopFlag | None = None) -> Operation[Traversal]:
        """Decode every alpha (batches across slices and alphas); yields progress, returns a Traversal.

        When ``stop`` is requested the frames finished so far are returned (with their alphas).
        """
        count, n = len(self), len(self.codes)
        painter = self._painter
        out = np.empty((count, *self.grid.shape), dtype=np.float32)
        total = count * n
        meter = RateMeter()
        pending: list[torch.Tensor] = []
        planes: np.ndarray | None = None  # one reused plane-oriented frame
        pending_size, completed, position = 0, 0, 0
        yield ProgressEvent(0, total, f"decoding {count} alphas x {n} slices", stage="traverse")
        while position < total and not stop_requested(stop):
            take = min(self.decoder.batch_size, total - position)
            flat = np.arange(position, position + take)
            images = self.decoder(self.shifted_codes(flat // n, flat % n))
            position += take
            meter.add(take)
            offset = 0
            while offset < take:  # the batch may finish one alpha and start the next
                part = images[offset:offset + min(take - offset, n - pending_size)]
                pending.append(part)
                pending_size += len(part)
                offset += len(part)
                if pending_size == n:
                    planes = painter.blank(0, painter.plane_shape[0]) if planes is None else planes
                    planes[...] = painter.low if painter.fill is None else painter.fill
                    painter.paint(planes, torch.cat(pending), np.arange(n), 0)
                    _blocked_copy(out[completed], painter.reorientation.invert(planes))
                    completed += 1
                    pending, pending_size = [], 0
            yield ProgressEvent(position, total, f"alpha {min(completed + 1, count)} of {count}",
                                {"images_per_s": meter.rate}, stage="traverse")
        info = dict(self.info)
        if completed < count:
            info["stopped"] = True
            out = out[:completed].copy()
        return Traversal(out, self.alphas[:completed], self.grid, self.direction, self.units, self.alpha_scale,
                         baseline_index(self.latent_alphas[:completed]), self.model_name, self.model_fingerprint,
                         self.space, self.geometry, self.fill, self.source, info)

    def compute(self, progress: ProgressArg = None, stop: StopFlag | None = None) -> Traversal:
        """Every frame at once, as a :class:`Traversal` (``A`` x the volume in memory)."""
        return run_operation(self.iter_compute(stop), progress)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``OUT.nii.gz`` and ``OUT.json`` like :meth:`Traversal.save`, one frame in memory at a time."""
        return _save(self, path)


# -- the public functions -----------------------------------------------------------------------

def iter_traverse(model: GenerativeModel, codes_or_volume: LatentCodes | Volume, direction: DirectionArg,
                  alphas: str | Sequence[float] | np.ndarray, *,
                  index: IndexArg = None, units: Units = "latent",
                  source: Volume | None = None, method: str = "auto", batch_size: int | None = None,
                  bf16: bool = False, channels_last: bool = True, device: str | torch.device | None = None,
                  stop: StopFlag | None = None) -> Operation[Traversal]:
    """Traverse a volume (a generator of progress events; see :func:`traverse`)."""
    if isinstance(codes_or_volume, Volume):
        volume = codes_or_volume
        if source is not None and source is not volume:
            volume.grid.check_same(source.grid, "the source volume")
        codes = yield from iter_invert(model, volume, method=method, stop=stop)
        source = volume
    elif isinstance(codes_or_volume, LatentCodes):
        codes = codes_or_volume
    else:
        raise UserInputError(f"traverse needs LatentCodes or a Volume, got {type(codes_or_volume).__name__}")
    lazy = LazyTraversal(model, codes, direction, alphas, index=index, units=units, source=source,
                         batch_size=batch_size, bf16=bf16, channels_last=channels_last, device=device)
    if isinstance(codes_or_volume, Volume):
        lazy.info["inverted"] = True
    return (yield from lazy.iter_compute(stop))


def traverse(model: GenerativeModel, codes_or_volume: LatentCodes | Volume, direction: DirectionArg,
             alphas: str | Sequence[float] | np.ndarray, *,
             index: IndexArg = None, units: Units = "latent",
             source: Volume | None = None, method: str = "auto", batch_size: int | None = None,
             bf16: bool = False, channels_last: bool = True, device: str | torch.device | None = None,
             progress: ProgressArg = None, stop: StopFlag | None = None) -> Traversal:
    """Traverse a volume along a latent direction: one volume per alpha on the source grid.

    Parameters
    ----------
    model : GenerativeModel
        The model the codes belong to.
    codes_or_volume : LatentCodes or Volume
        An inverted volume, or a volume to invert first (inversion ``method``, default
        ``"auto"``); a given volume also supplies the intensities outside modelled voxels.
    direction : Directions, TraversalDirection, torch.Tensor or numpy.ndarray
        A :class:`~napari_latent.latent.directions.Directions` object (choose with
        ``index``) or one raw vector (normalised to unit length).
    alphas : str or sequence of float
        ``"START:STOP:N"`` (e.g. the MS paper's ``"0:50:15"``), ``"0,10,20"`` or numbers;
        sorted ascending.
    index : int, str or mapping, optional
        The direction's index or name, or ``{index_or_name: weight}`` for a weighted sum of
        several directions (normalised to unit length).
    units : {"latent", "std", "direction_std"}
        Units of the alphas: latent distance, standard deviations of this volume's codes
        along the direction, or the direction's ``code_std`` (module docstring).
    source : Volume, optional
        With codes: the source volume, to fill the voxels the model does not produce with
        real intensities (otherwise the intensity window's lower value).
    method : str
        Inversion method when a volume is given.
    batch_size : int, optional
        Images per decoder call (batches span slices and alphas); default 16 on the CPU (the
        fastest there), 64 on accelerators.
    bf16 : bool
        bfloat16 autocast (CPU or CUDA): about 1.6-2x faster on CPUs with AVX512-BF16, images
        off by up to ~1% of their range. Default fp32.
    channels_last : bool
        Decode with a channels-last copy of the model (faster on the CPU, same output).
    device : str or torch.device, optional
        Where to decode (a private copy of the model goes there); the model's device by default.
    progress : callable, bool or None
        ``True`` for a terminal progress bar, a callable for every event.
    stop : StopFlag, optional
        Stops early; the frames finished so far are returned.

    Returns
    -------
    Traversal
        ``images`` ``(A, i, j, k)`` float32 on the source grid, alphas, direction, baseline
        index, model fingerprint and grid. Use :class:`LazyTraversal` to stream instead.

    Raises
    ------
    UserInputError
        Bad alphas, a direction index out of range, a direction or codes of another model
        or space, unknown units.
    """
    operation = iter_traverse(model, codes_or_volume, direction, alphas, index=index, units=units, source=source,
                              method=method, batch_size=batch_size, bf16=bf16, channels_last=channels_last,
                              device=device, stop=stop)
    return run_operation(operation, progress)


def iter_frames(model: GenerativeModel, codes: LatentCodes, direction: DirectionArg,
                alphas: str | Sequence[float] | np.ndarray, **kwargs: Any) -> Iterator[np.ndarray]:
    """Yield the traversal's volumes one alpha at a time (ascending alphas).

    Keyword arguments are those of :class:`LazyTraversal`. Only one volume is in memory at a
    time (plus the model); stop iterating to stop decoding.
    """
    yield from LazyTraversal(model, codes, direction, alphas, **kwargs)
