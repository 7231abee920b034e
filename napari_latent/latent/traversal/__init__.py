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
(the caller's model is never touched), rewritten exactly for inference (each nearest
upsampling + 3x3 convolution of the up path as one transposed convolution, see
:mod:`napari_latent.models.inference_rewrites`) and, on the CPU, in the channels-last memory
format.
Measured with the bundled demo VAE (64 px) on this project's 2-core CPU: batching alone
gains nothing over decoding one slice at a time (about 4.7 ms per image either way), the
channels-last copy takes 1.2-2 ms per image (outputs agree to about 1e-6; the layout is
checked against the plain one on the first codes and reverted if it does not agree to
1e-4), and batches of 16 beat larger ones (caches), so 16 is the CPU default.
On the CPU the batches run in parallel single-threaded streams, one per core (1.2-1.3x
faster than splitting every operation over the cores). :meth:`LazyTraversal.compute` keeps
two batches per stream submitted, and each stream resizes its own images and writes them
straight into the source-ordered frames (one reoriented box per run of slices, not a
reoriented copy of the whole volume on the calling thread): about 20% faster than pasting
alpha by alpha on the calling thread, with the same voxels. ``benchmarks/bench_traversal.py``
(128-cube volume, 15 alphas, quiet machine): 2.9-3.6x (median 3.05x over eight runs) faster
than the one-slice-per-alpha loop at identical output (2e-6 of the intensity window), the
decoder at ~210 GFLOP/s counted in the original network's FLOPs. ``bf16=True`` adds
bfloat16 autocast: about 4.5x, but images differ from fp32 by up to ~0.9% of the intensity
window, so fp32 is the default.

Streaming: a :class:`LazyTraversal` computes nothing up front. ``frame(i)`` decodes one alpha
(one volume), ``iter_blocks`` yields slabs of slices with every alpha (for the chunked eigen
analysis) and ``save`` writes the 4D NIfTI frame by frame, so peak memory stays at one
volume (or one slab times A) plus the model, never A times the volume.

Modules: :mod:`.alphas` (parsing and the baseline), :mod:`.direction` (resolving directions,
alpha units), :mod:`.decoding` (the batched decoder and the pasting onto the grid),
:mod:`.facts` (what both traversals share; the NIfTI writer), :mod:`.eager`
(:class:`Traversal`), :mod:`.lazy` (:class:`LazyTraversal`), :mod:`.api` (:func:`traverse`).
Everything is importable from ``napari_latent.latent.traversal`` as before the split.
"""

from __future__ import annotations

from .alphas import _ALPHA_HELP, _number, baseline_index, check_alphas, parse_alphas
from .api import iter_frames, iter_traverse, open_traversal, traverse
from .decoding import Decoder, _Painter, default_batch_size
from .direction import UNITS, DirectionArg, IndexArg, TraversalDirection, Units, alpha_scale, resolve_direction
from .eager import Traversal
from .facts import TRAVERSAL_FORMAT, TRAVERSAL_VERSION, NiftiFramesWriter, _save, _TraversalFacts, sidecar_path
from .lazy import LazyTraversal
from .store import STORE_SUFFIX, StoredTraversal, StoreWriter, default_chunks, is_store_path

__all__ = [
           "STORE_SUFFIX",
           "TRAVERSAL_FORMAT",
           "TRAVERSAL_VERSION",
           "UNITS",
           "_ALPHA_HELP",
           "Decoder",
           "DirectionArg",
           "IndexArg",
           "LazyTraversal",
           "NiftiFramesWriter",
           "StoreWriter",
           "StoredTraversal",
           "Traversal",
           "TraversalDirection",
           "Units",
           "_Painter",
           "_TraversalFacts",
           "_number",
           "_save",
           "alpha_scale",
           "baseline_index",
           "check_alphas",
           "default_batch_size",
           "default_chunks",
           "is_store_path",
           "iter_frames",
           "iter_traverse",
           "open_traversal",
           "parse_alphas",
           "resolve_direction",
           "sidecar_path",
           "traverse",
]
