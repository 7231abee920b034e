"""SeFa: closed-form factorisation of the weight that first acts on the latent code.

Shen & Zhou (2021), "Closed-Form Factorization of Latent Semantics in GANs", CVPR. If the
first layer maps a code ``c`` to ``A c + b``, moving along ``n`` changes its output by
``A n``; the unit directions that change it most are the top eigenvectors of ``A^T A``.
As in the official ``factorize_weight`` (github.com/genforce/sefa, ``utils.py``), each row
of ``A`` (the weights of one output unit) is first normalised to unit length, so that every
unit counts equally (this also removes per-channel scales such as a following batch norm
or StyleGAN's equalised-learning-rate gains); eigenvalues are sorted in descending order.

The weight ``A`` per model and space:

* VAE / IntroVAE ``z``: the decoder's ``from_latent`` linear layer.
* DCGAN ``z``: the first transposed convolution (a 1x1 code to a 4x4 map), its weight
  ``(d, C, 4, 4)`` read as ``d`` columns of ``C * 16`` output units (SeFa's PGGAN case).
* StyleGAN ``z``: the first fully connected layer of the mapping network.
* StyleGAN ``w``: the style affine layers of all modulated convolutions and ``toGray``
  layers, stacked (the official StyleGAN2 case; ``layers=`` restricts to some style inputs).
* StyleGAN ``w+``: there every style input has its own ``w``, so ``A`` is block diagonal
  with one block per style input (the affines fed by that input: a 3x3 convolution, and a
  ``toGray`` for inputs shared with it). Its eigenvectors each live in one block, i.e. each
  direction edits one style input; ``info["style_input"]`` says which.
* VQ-VAE ``z``: the decoder's 1x1 convolution ``from_code`` ``(C, D)`` acts on the ``D``
  channels of every position alike, so on flat codes ``A^T A`` is ``(W^T W) (x) I_{hw}``:
  every eigenvalue has multiplicity ``h * w`` and any spatial pattern is equally good. We
  return the *global* member of each eigenspace (the same ``D``-vector at every position,
  scaled to unit length), so at most ``D`` directions exist.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ...errors import UserInputError
from ...models.base import GenerativeModel
from ...progress import Operation, ProgressEvent, StopFlag
from ..directions import Directions
from ..inversion import default_space
from . import check_count, register_method
from .pca import projected_std, sign_fixed


def style_affines(model: Any) -> list[list[torch.Tensor]]:
    """Effective weights ``(channels, w_dim)`` of the style affine layers fed by each style input of a StyleGAN."""
    per_input: list[list[torch.Tensor]] = [[] for _ in range(model.num_ws)]
    start = 0
    for block in model.generator.synthesis.blocks:
        for i, layer in enumerate(block.convs):
            per_input[start + i].append(layer.affine.weight * layer.affine.weight_gain)
        per_input[start + block.num_conv].append(block.to_gray.affine.weight * block.to_gray.affine.weight_gain)
        start += block.num_conv
    return per_input


def first_weight(model: GenerativeModel, space: str) -> torch.Tensor:
    """The weight ``A`` (units, d) acting first on codes of ``space`` (StyleGAN ``w``: :func:`style_affines`)."""
    if hasattr(model, "from_latent"):
        return model.from_latent.weight
    if hasattr(model, "from_code"):
        return model.from_code.weight[:, :, 0, 0]
    if model.name == "dcgan":
        return model.generator.net[0].weight.flatten(1).T
    if model.name == "stylegan" and space == "z":
        layer = model.generator.mapping.layers[0]
        return layer.weight * layer.weight_gain
    raise UserInputError(f"sefa does not know the first layer of a {model.name!r} model")


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
        chosen: list[int] = []
        for part in filter(None, layers.replace(" ", "").split(",")):
            low, _, high = part.partition("-")
            chosen += range(int(low), int(high or low) + 1)
        layers = chosen
    chosen = sorted({int(i) for i in layers})
    if not chosen or chosen[0] < 0 or chosen[-1] >= num_ws:
        raise UserInputError(f"style inputs must be in 0-{num_ws - 1}, got {layers}")
    return chosen


@register_method("sefa", "SeFa: closed-form factorisation of the first layer's weight")
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
    styled = model.name == "stylegan" and space != "z"
    if layers is not None and not styled:
        raise UserInputError("layers= selects style inputs of a StyleGAN in space 'w' or 'w+'")
    info: dict[str, Any] = {}
    with torch.no_grad():
        if styled:
            chosen = parse_layers(layers, model.num_ws)
            info["style_inputs"] = chosen
            per_input = style_affines(model)
            if space == "w":
                values, vectors = factorize(torch.cat([w for i in chosen for w in per_input[i]]))
            else:  # block diagonal: factorise each style input's block, rank all eigenpairs together
                w_dim, found = int(model.config.w_dim), []
                for i in chosen:
                    block_values, block_vectors = factorize(torch.cat(per_input[i]))
                    padded = torch.zeros(w_dim, model.num_ws * w_dim, dtype=torch.float64)
                    padded[:, i * w_dim:(i + 1) * w_dim] = block_vectors
                    found += [(float(v), i, padded[k]) for k, v in enumerate(block_values)]
                found.sort(key=lambda item: -item[0])
                if count > len(found):
                    raise UserInputError(f"the chosen style inputs give only {len(found)} directions")
                values = torch.tensor([v for v, _, _ in found])
                vectors = torch.stack([vector for _, _, vector in found])
                info["style_input"] = [i for _, i, _ in found[:count]]
        else:
            values, vectors = factorize(first_weight(model, space))
            if hasattr(model, "from_code"):  # VQ-VAE: the same D-vector at every position
                if count > vectors.shape[0]:
                    raise UserInputError(f"sefa finds at most code_dim = {vectors.shape[0]} directions in a VQ-VAE "
                                         "(one per channel; see the sefa module)")
                positions = model.latent_dim(space) // vectors.shape[0]
                vectors = vectors[:, :, None].expand(-1, -1, positions).flatten(1) / math.sqrt(positions)
                info["positions"] = positions
    vectors, values = vectors[:count].float(), values[:count]
    gaussian = space == "z" and not hasattr(model, "from_code")
    code_std = [1.0] * count if gaussian else projected_std(model, space, vectors)
    yield ProgressEvent(1, 1, "factorised", {"eigenvalue": float(values[0])}, stage="discover")
    return Directions(vectors, space, model.name, model.fingerprint, "sefa",
                      settings={"count": count, "layers": info.get("style_inputs") if layers is not None else None},
                      scores={"eigenvalue": values.tolist()}, code_std=code_std, info=info)
