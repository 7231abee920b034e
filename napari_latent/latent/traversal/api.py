"""The public functions: traverse (invert first when given a volume), iter_traverse, iter_frames."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import UserInputError
from ...models.base import GenerativeModel
from ...progress import Operation, ProgressArg, StopFlag, run_operation
from ...volumes.io import Volume
from ..codes import LatentCodes
from ..inversion import iter_invert
from .direction import DirectionArg, IndexArg, Units
from .eager import Traversal
from .lazy import LazyTraversal
from .store import STORE_SUFFIX, StoredTraversal, is_store_path

# -- the public functions -----------------------------------------------------------------------

def iter_traverse(model: GenerativeModel, codes_or_volume: LatentCodes | Volume, direction: DirectionArg,
                  alphas: str | Sequence[float] | np.ndarray, *,
                  index: IndexArg = None, units: Units = "latent",
                  source: Volume | None = None, method: str = "auto", batch_size: int | None = None,
                  bf16: bool = False, channels_last: bool = True, device: str | torch.device | None = None,
                  out: str | os.PathLike[str] | None = None,
                  stop: StopFlag | None = None) -> Operation[Traversal | StoredTraversal | None]:
    """Traverse a volume (a generator of progress events; see :func:`traverse`)."""
    if out is not None and not is_store_path(out):
        raise UserInputError(f"{out}: traverse(out=...) streams into a traversal store, which must end in "
                             f"{STORE_SUFFIX}; save a 4D NIfTI with .export() or Traversal.save()")
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
    if out is not None:
        return (yield from lazy.iter_store(out, stop))
    return (yield from lazy.iter_compute(stop))


def traverse(model: GenerativeModel, codes_or_volume: LatentCodes | Volume, direction: DirectionArg,
             alphas: str | Sequence[float] | np.ndarray, *,
             index: IndexArg = None, units: Units = "latent",
             source: Volume | None = None, method: str = "auto", batch_size: int | None = None,
             bf16: bool = False, channels_last: bool = True, device: str | torch.device | None = None,
             out: str | os.PathLike[str] | None = None, progress: ProgressArg = None,
             stop: StopFlag | None = None) -> Traversal | StoredTraversal | None:
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
    out : path-like, optional
        A traversal store to stream into (``OUT.zarr``, see
        :mod:`napari_latent.latent.traversal.store`): every finished alpha volume is written
        while the next ones are decoded, and a :class:`StoredTraversal` that reads it lazily
        is returned. Memory then stays at a few volumes whatever the number of alphas; use it
        for large volumes (a CT) or many alphas.
    progress : callable, bool or None
        ``True`` for a terminal progress bar, a callable for every event.
    stop : StopFlag, optional
        Stops early; the frames finished so far are returned.

    Returns
    -------
    Traversal or StoredTraversal
        Without ``out``: a :class:`Traversal`, ``images`` ``(A, i, j, k)`` float32 on the
        source grid in memory, with alphas, direction, baseline index, model fingerprint and
        grid. With ``out``: the :class:`StoredTraversal` written there (the same facts; frames
        read on demand), or None when ``stop`` came before the first alpha was finished.

    Raises
    ------
    UserInputError
        Bad alphas, a direction index out of range, a direction or codes of another model
        or space, unknown units.
    """
    operation = iter_traverse(model, codes_or_volume, direction, alphas, index=index, units=units, source=source,
                              method=method, batch_size=batch_size, bf16=bf16, channels_last=channels_last,
                              device=device, out=out, stop=stop)
    return run_operation(operation, progress)


def open_traversal(path: str | os.PathLike[str]) -> Traversal | StoredTraversal:
    """Open a saved traversal: a store (``*.zarr``, read lazily) or a 4D NIfTI with its sidecar (read whole).

    Raises
    ------
    UserInputError
        When the path is missing or is not a traversal (see :meth:`StoredTraversal.open`
        and :meth:`Traversal.load`).
    """
    if is_store_path(path) or Path(path).is_dir():
        return StoredTraversal.open(path)
    return Traversal.load(path)


def iter_frames(model: GenerativeModel, codes: LatentCodes, direction: DirectionArg,
                alphas: str | Sequence[float] | np.ndarray, **kwargs: Any) -> Iterator[np.ndarray]:
    """Yield the traversal's volumes one alpha at a time (ascending alphas).

    Keyword arguments are those of :class:`LazyTraversal`. Only one volume is in memory at a
    time (plus the model); stop iterating to stop decoding.
    """
    yield from LazyTraversal(model, codes, direction, alphas, **kwargs)
