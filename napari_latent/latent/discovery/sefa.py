"""SeFa: closed-form factorisation of the weight that first acts on the latent code.

Shen & Zhou (2021), "Closed-Form Factorization of Latent Semantics in GANs", CVPR. If the
first layer maps a code ``c`` to ``A c + b``, moving along ``n`` changes its output by
``A n``; the unit directions that change it most are the top eigenvectors of ``A^T A``.
As in the official ``factorize_weight`` (github.com/genforce/sefa, ``utils.py``), each row
of ``A`` (the weights of one output unit) is first normalised to unit length, so that every
unit counts equally (this also removes per-channel scales such as a following batch norm
or StyleGAN's equalised-learning-rate gains); eigenvalues are sorted in descending order.

The weight ``A`` comes from the model (:meth:`~napari_latent.models.base.GenerativeModel.latent_weights`),
by the layout of the code:

* ``single`` (VAE / IntroVAE ``z``: the decoder's ``from_latent`` layer; DCGAN ``z``: the
  first transposed convolution read as ``d`` columns of ``C * 16`` output units, SeFa's PGGAN
  case; StyleGAN ``z``: the mapping's first layer): ``A`` itself.
* ``shared`` (StyleGAN ``w``): every style input reads the same code, so ``A`` is the style
  affines of all chosen inputs stacked (the official StyleGAN2 case; ``layers=`` restricts
  to some style inputs).
* ``blocks`` (StyleGAN ``w+``): every style input has its own code, so ``A`` is block
  diagonal with one block per input. Its eigenvectors each live in one block, i.e. each
  direction edits one style input; ``info["style_input"]`` says which.
* ``tiled`` (VQ-VAE ``z``: the decoder's 1x1 convolution ``(C, D)`` acts on the ``D``
  channels of every position alike): on flat codes ``A^T A`` is ``(W^T W) (x) I_{hw}``, so
  every eigenvalue has multiplicity ``h * w`` and any spatial pattern is equally good. We
  return the *global* member of each eigenspace (the same ``D``-vector at every position,
  scaled to unit length), so at most ``D`` directions exist.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ...errors import UserInputError
from ...models.base import GenerativeModel, LatentWeights
from ...progress import Operation, ProgressEvent, StopFlag
from ...settings import Setting, parse_ints
from ..directions import Directions
from ..inversion import default_space
from . import check_count, register_method
from .pca import projected_std, sign_fixed

#: Eigendecompositions up to this size run on one thread (see :func:`factorize`).
SINGLE_THREAD_DIM = 2048


def factorize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (descending) and eigenvectors (rows) of ``A^T A`` with the rows of ``A`` normalised."""
    a = weight.detach().double().cpu()
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    gram = a.T @ a
    threads = torch.get_num_threads()
    # A small eigendecomposition gains nothing from threads, and on a busy machine the thread
    # pool's contention made a 128 x 128 eigh take 3 s with 2 threads against 36 ms with one.
    if gram.shape[0] <= SINGLE_THREAD_DIM and threads > 1:
        torch.set_num_threads(1)
    try:
        values, vectors = torch.linalg.eigh(gram)
    finally:
        torch.set_num_threads(threads)
    return values.flip(0), sign_fixed(vectors.flip(1).T)


def parse_layers(layers: str | list[int] | None, num_ws: int) -> list[int]:
    """Style inputs from ``[0, 2]``, ``"0-3,6"`` or None (all)."""
    if layers is None:
        return list(range(num_ws))
    if isinstance(layers, str):
        try:
            layers = parse_ints(layers)
        except ValueError:
            raise UserInputError(f"style inputs are whole numbers such as 0-3,6, got {layers!r}") from None
    chosen = sorted({int(i) for i in layers})
    if not chosen or chosen[0] < 0 or chosen[-1] >= num_ws:
        raise UserInputError(f"style inputs must be in 0-{num_ws - 1}, got {layers}")
    return chosen


def _factorize_blocks(weights: LatentWeights, chosen: list[int], count: int,
                      info: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Block-diagonal ``A``: factorise each chosen input's block, rank all eigenpairs together."""
    block_dim = int(weights.inputs[0].shape[1])
    found = []
    for i in chosen:
        block_values, block_vectors = factorize(weights.inputs[i])
        padded = torch.zeros(block_dim, len(weights.inputs) * block_dim, dtype=torch.float64)
        padded[:, i * block_dim:(i + 1) * block_dim] = block_vectors
        found += [(float(v), i, padded[k]) for k, v in enumerate(block_values)]
    found.sort(key=lambda item: -item[0])
    if count > len(found):
        raise UserInputError(f"the chosen style inputs give only {len(found)} directions")
    info["style_input"] = [i for _, i, _ in found[:count]]
    return torch.tensor([v for v, _, _ in found]), torch.stack([vector for _, _, vector in found])


@register_method(
    "sefa", "SeFa: closed-form factorisation of the first layer's weight",
    settings=(
        Setting("count", "int", 10, "number of directions, by descending eigenvalue", minimum=1, label="directions"),
        Setting("layers", "ints", None, "StyleGAN w/w+ only: the style inputs whose affines are factorised, "
                "e.g. 0-3 (the coarse layers; default all)"),
    ))
def iter_sefa(model: GenerativeModel, *, space: str | None = None, count: int = 10,
              layers: str | list[int] | None = None, stop: StopFlag | None = None) -> Operation[Directions]:
    """Closed-form directions: top eigenvectors of ``A^T A`` (a generator; see ``discover(model, "sefa")``).

    Parameters
    ----------
    model : GenerativeModel
    space : str, optional
        Latent space (``w`` for StyleGAN, the main space otherwise).
    count : int
        Number of directions, by descending eigenvalue.
    layers : str or list of int, optional
        StyleGAN ``w``/``w+`` only: the style inputs whose affines are factorised (``"0-3"``:
        the coarse layers). Default: all.
    stop : StopFlag, optional
        Unused (the method takes well under a second).

    Returns
    -------
    Directions
        Score ``eigenvalue``; ``code_std`` is 1 in Gaussian ``z`` spaces, else the spread of
        prior samples along each direction.

    References
    ----------
    Shen & Zhou (2021), Closed-Form Factorization of Latent Semantics in GANs, CVPR;
    official implementation: https://github.com/genforce/sefa (``factorize_weight``).
    """
    space = model.check_space(space or default_space(model))
    check_count(model, space, count)
    weights = model.latent_weights(space)
    if layers is not None and not weights.selectable:
        raise UserInputError("layers= selects style inputs of a StyleGAN in space 'w' or 'w+'")
    info: dict[str, Any] = {}
    with torch.no_grad():
        if weights.selectable:
            chosen = parse_layers(layers, len(weights.inputs))
            info["style_inputs"] = chosen
            if weights.layout == "shared":
                values, vectors = factorize(torch.cat([weights.inputs[i] for i in chosen]))
            else:
                values, vectors = _factorize_blocks(weights, chosen, count, info)
        else:
            values, vectors = factorize(weights.inputs[0])
            if weights.layout == "tiled":  # the same D-vector at every position
                if count > vectors.shape[0]:
                    raise UserInputError(f"sefa finds at most code_dim = {vectors.shape[0]} directions in this "
                                         "model's tiled latent map (one per channel; see the sefa module)")
                positions = weights.positions
                vectors = vectors[:, :, None].expand(-1, -1, positions).flatten(1) / math.sqrt(positions)
                info["positions"] = positions
    vectors, values = vectors[:count].float(), values[:count]
    code_std = [1.0] * count if model.prior(space).standard_normal else projected_std(model, space, vectors)
    yield ProgressEvent(1, 1, "factorised", {"eigenvalue": float(values[0])}, stage="discover")
    return Directions(vectors, space, model.name, model.fingerprint, "sefa",
                      settings={"count": count, "layers": info.get("style_inputs") if layers is not None else None},
                      scores={"eigenvalue": values.tolist()}, code_std=code_std, info=info)
