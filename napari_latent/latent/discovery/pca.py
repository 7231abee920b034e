"""GANSpace: principal components of sampled latent codes (or of the codes of real data).

Härkönen, Hertzmann, Lehtinen & Paris (2020), "GANSpace: Discovering Interpretable GAN
Controls", NeurIPS. The principal axes of the distribution of codes are the directions
along which codes vary most; in StyleGAN's ``w`` they are known to carry much of the
semantic variation. Codes are prior samples mapped into the space (``z`` mapped to ``w``
for StyleGAN) or, with ``data=``, the codes of a cohort's slices (posterior means for
autoencoders, optimisation-based inversion for GANs).

Computation. Samples are drawn in batches and reduced to their mean and scatter matrix in
float64 (the pairwise update of Chan, Golub & LeVeque 1979), so memory is ``O(d^2)``
whatever the sample count; the components are the eigenvectors of the covariance. This is
exact PCA (what ``sklearn.decomposition.PCA(svd_solver="full")`` computes, up to the sign
of each component), whereas ``IncrementalPCA`` with fewer components than dimensions
truncates at every batch.

``w+`` from prior samples. A sampled ``w+`` code is one ``w`` repeated for every style
input, so the covariance in ``w+`` is ``(1 1^T) (x) C_w``: its components are the ``w``
components tiled over all ``num_ws`` inputs and divided by ``sqrt(num_ws)``, with
variances ``num_ws`` times those in ``w``; at most ``w_dim`` of them are non-zero. PCA is
therefore run in ``w`` and the result tiled (identical to PCA of the tiled samples, and
``num_ws`` times cheaper). With ``data=`` the inverted ``w+`` codes differ per input and
PCA runs in ``w+`` itself.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import torch

from ...errors import UserInputError
from ...models.base import GenerativeModel
from ...progress import Operation, ProgressEvent, StopFlag, stop_requested
from ...settings import Setting
from ...volumes.cohort import Cohort
from ..cohort_codes import CohortCodes, iter_cohort_codes
from ..directions import Directions
from ..inversion import default_space
from . import DataNeed, check_count, register_method


def sample_codes(model: GenerativeModel, space: str, samples: int, seed: int = 0,
                 batch_size: int = 2048) -> Iterator[torch.Tensor]:
    """Prior samples in ``space`` as float32 CPU batches, drawn in order from one seeded generator.

    Codes are drawn in the model's main space and mapped (``z -> w`` with the model's
    truncation for StyleGAN, the same draws as ``StyleGAN.sample_latent``).
    """
    generator = torch.Generator().manual_seed(int(seed))
    source = model.default_space
    with torch.no_grad():
        for start in range(0, samples, batch_size):
            n = min(batch_size, samples - start)
            codes = model.to_space(model.sample_latent(n, generator, source), source, space)
            yield codes.detach().float().cpu()


def projected_std(model: GenerativeModel, space: str, vectors: torch.Tensor, samples: int = 2048,
                  seed: int = 0) -> list[float]:
    """Standard deviation of prior samples in ``space`` projected on each row of ``vectors``."""
    codes = torch.cat(list(sample_codes(model, space, samples, seed))).double()
    return (codes @ vectors.double().T).std(dim=0).tolist()


def sign_fixed(vectors: torch.Tensor) -> torch.Tensor:
    """Rows flipped so that each one's entry of largest magnitude is positive (sklearn's ``svd_flip``)."""
    biggest = vectors.gather(1, vectors.abs().argmax(dim=1, keepdim=True))
    return vectors * torch.where(biggest < 0, -1.0, 1.0).to(vectors.dtype)


class _Moments:
    """Running mean and scatter matrix of row vectors in float64 (pairwise merge of batches)."""

    def __init__(self, dim: int) -> None:
        self.n = 0
        self.mean = torch.zeros(dim, dtype=torch.float64)
        self.scatter = torch.zeros(dim, dim, dtype=torch.float64)

    def add(self, batch: torch.Tensor) -> None:
        x = batch.double()
        m, mean = x.shape[0], x.mean(0)
        centred = x - mean
        delta = mean - self.mean
        total = self.n + m
        self.scatter += centred.T @ centred + torch.outer(delta, delta) * (self.n * m / total)
        self.mean += delta * (m / total)
        self.n = total


@register_method(
    "pca", "GANSpace: principal components of prior samples or of real codes",
    settings=(
        Setting("count", "int", 10, "number of components, in order of explained variance", minimum=1,
                label="directions"),
        Setting("samples", "int", 20000, "prior samples (without data); memory does not grow with it",
                minimum=2),
        Setting("seed", "int", 0, "seed of the prior samples"),
        Setting("batch_size", "int", 2048, "samples drawn and reduced at a time", minimum=1),
    ),
    data=DataNeed("codes", help="a cohort whose slices' codes are used instead of prior samples"))
def iter_pca(model: GenerativeModel, *, space: str | None = None, count: int = 10, samples: int = 20000,
             data: str | os.PathLike[str] | Cohort | CohortCodes | None = None, seed: int = 0,
             batch_size: int = 2048,
             stop: StopFlag | None = None) -> Operation[Directions]:
    """Principal components of latent codes (a generator; run it with ``discover(model, "pca")``).

    Parameters
    ----------
    model : GenerativeModel
    space : str, optional
        Latent space (``w`` for StyleGAN, the main space otherwise).
    count : int
        Number of components, in order of explained variance.
    samples : int
        Prior samples (ignored with ``data``); memory does not grow with it.
    data : path-like, Cohort or CohortCodes, optional
        A cohort (folder with ``cohort.csv``), or its codes already computed: use the codes of
        its slices instead of prior samples.
    seed : int
        Seed of the prior samples.
    batch_size : int
        Samples drawn and reduced at a time.
    stop : StopFlag, optional
        Ends sampling early; the components of the samples so far are returned.

    Returns
    -------
    Directions
        Scores ``explained_variance`` and ``explained_variance_ratio``; ``code_std`` is the
        square root of the explained variance.

    References
    ----------
    Härkönen et al. (2020), GANSpace: Discovering Interpretable GAN Controls, NeurIPS.
    """
    space = model.check_space(space or default_space(model))
    check_count(model, space, count)
    if samples < 2 or batch_size < 1:
        raise UserInputError(f"PCA needs at least 2 samples and a positive batch size, got {samples} and {batch_size}")
    tiled = data is None and space == "w+" and "w" in model.spaces
    work_space = "w" if tiled else space
    repeats = model.latent_dim(space) // model.latent_dim(work_space)
    if tiled and count > model.latent_dim("w"):
        raise UserInputError(f"sampled w+ codes span only the {model.latent_dim('w')} dimensions of w; ask for at "
                             f"most that many components (or give data=)")
    moments = _Moments(model.latent_dim(work_space))
    info: dict[str, Any]
    if data is None:
        batches = math.ceil(samples / batch_size)
        for index, batch in enumerate(sample_codes(model, work_space, samples, seed, batch_size)):
            moments.add(batch)
            yield ProgressEvent(index + 1, batches, "sampling codes", {"samples": moments.n}, stage="discover")
            if stop_requested(stop):
                break
        info = {"source": "prior samples", "samples": moments.n, "sampled_space": work_space}
    elif isinstance(data, CohortCodes):
        if data.space != space:
            raise UserInputError(f"the given codes are in space {data.space!r}, not {space!r}")
        cohort_codes = data
    else:
        inner = iter_cohort_codes(model, data, space, stop=stop)
        while True:
            try:
                event = next(inner)
            except StopIteration as done:
                cohort_codes = done.value
                break
            yield ProgressEvent(event.step, event.total, f"codes of the data: {event.message}", event.metrics,
                                stage="discover")
    if data is not None:
        moments.add(cohort_codes.codes)
        info = {"source": "data", "samples": moments.n, "subjects": len(cohort_codes.cohort),
                "cohort": str(cohort_codes.cohort.root), "cohort_fingerprint": cohort_codes.cohort.fingerprint(),
                "inversion": cohort_codes.per_subject[0].method}
    if moments.n <= count:
        raise UserInputError(f"{moments.n} codes cannot give {count} principal components")
    covariance = moments.scatter / (moments.n - 1)
    values, vectors = torch.linalg.eigh(covariance)
    values, vectors = values.flip(0).clamp_min(0.0), vectors.flip(1)
    components = sign_fixed(vectors[:, :count].T)
    ratio = values[:count] / values.sum().clamp_min(1e-300)
    variance = values[:count] * repeats  # in w+ the tiled unit vector sees num_ws times the variance of w
    if tiled:
        components = components.repeat(1, repeats) / math.sqrt(repeats)
        info["tiled_from_w"] = repeats
    settings = {"count": count, "samples": samples if data is None else None, "seed": seed,
                "batch_size": batch_size, "data": None if data is None else info["cohort"]}
    yield ProgressEvent(1, 1, "principal components", {"explained": float(ratio.sum())}, stage="discover")
    return Directions(components, space, model.name, model.fingerprint, "pca", settings=settings,
                      scores={"explained_variance": variance.tolist(), "explained_variance_ratio": ratio.tolist()},
                      code_std=variance.sqrt().tolist(), info=info)
