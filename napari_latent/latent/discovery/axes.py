"""Latent axes of a VAE: the unit vectors ``e_i``, active units first, ranked by their KL divergence.

A VAE's posterior switches many latent dimensions off ("posterior collapse"): their
posterior stays at the prior whatever the image, so moving along them changes nothing.
Burda, Grosse & Salakhutdinov (2016, "Importance Weighted Autoencoders", ICLR, section 5.2)
call dimension ``i`` *active* when ``A_i = Cov_x(E_q[z_i | x]) > 0.01``. The axes are
ranked active first and, within that, by the mean KL divergence of the posterior from the
prior in that dimension, ``E_x KL(q(z_i | x) || N(0, 1))`` (the rate the dimension carries;
see also Higgins et al. 2017 for beta-VAE traversals along single latent units).

The images ``x`` are the slices of a cohort (``data=``) or, without data, the model's own
images of prior samples (decode ``z ~ N(0, I)``, then encode them).
"""

from __future__ import annotations

import math
import os

import torch

from ...errors import UserInputError
from ...models.base import GenerativeModel
from ...models.vae import kl_to_standard_normal
from ...progress import Operation, ProgressEvent, StopFlag, stop_requested
from ...settings import Setting
from ...volumes.cohort import Cohort, load_cohort
from ...volumes.io import open_volume
from ...volumes.slicing import SliceSpec, slice_volume
from ..directions import Directions
from . import DataNeed, check_count, register_method


def _image_batches(model: GenerativeModel, data: str | os.PathLike[str] | Cohort | None, samples: int, seed: int,
                   batch_size: int):
    """Batches of images: the cohort's slices, or decoded prior samples; yields (images, step, total)."""
    if data is None:
        generator = torch.Generator().manual_seed(int(seed))
        total = math.ceil(samples / batch_size)
        for step, start in enumerate(range(0, samples, batch_size)):
            yield model.decode(model.sample_latent(min(batch_size, samples - start), generator)), step + 1, total
        return
    cohort = data if isinstance(data, Cohort) else load_cohort(data)
    spec = model.slice_spec or SliceSpec(size=model.image_size)
    for step, subject in enumerate(cohort.subjects):
        images, _ = slice_volume(open_volume(subject.path), spec)
        for start in range(0, len(images), batch_size):
            yield images[start:start + batch_size].to(model.device), step + 1, len(cohort)


@register_method(
    "axes", "latent axes of a VAE, active units first, ranked by KL",
    settings=(
        Setting("count", "int", 10, "number of axes returned (the best ranked)", minimum=1, label="directions"),
        Setting("samples", "int", 2000, "prior samples decoded and re-encoded (without data)", minimum=1),
        Setting("threshold", "float", 0.01, "activity above which a unit is active (Burda et al.: 0.01)"),
        Setting("seed", "int", 0, "seed of the prior samples"),
        Setting("batch_size", "int", 256, "images encoded at a time", minimum=1),
    ),
    data=DataNeed("cohort", help="a cohort whose slices are encoded instead of the model's own images"))
def iter_axes(model: GenerativeModel, *, space: str | None = None, count: int = 10, samples: int = 2000,
              data: str | os.PathLike[str] | Cohort | None = None, threshold: float = 0.01, seed: int = 0,
              batch_size: int = 256, stop: StopFlag | None = None) -> Operation[Directions]:
    """Single-dimension traversal axes of a VAE (a generator; see ``discover(model, "axes")``).

    Parameters
    ----------
    model : GenerativeModel
        A model with a Gaussian posterior (VAE, IntroVAE).
    space : str, optional
        ``z``.
    count : int
        Number of axes returned (the best ranked).
    samples : int
        Prior samples decoded and re-encoded when no ``data`` is given.
    data : path-like or Cohort, optional
        A cohort (folder with ``cohort.csv``) whose slices are encoded instead.
    threshold : float
        Activity above which a unit is active (Burda et al.: 0.01).
    seed : int
        Seed of the prior samples.
    batch_size : int
    stop : StopFlag, optional
        Ends early; the statistics of the images so far are used.

    Returns
    -------
    Directions
        Scores ``kl`` (mean KL in nats), ``activity`` (variance of the posterior mean) and
        ``active`` (1 or 0); ``code_std`` is the standard deviation of the posterior means;
        ``info["dimension"]`` the index of each axis.

    References
    ----------
    Burda, Grosse & Salakhutdinov (2016), Importance Weighted Autoencoders, ICLR.
    """
    if not model.has_posterior:
        raise UserInputError(f"axes needs a model with a Gaussian posterior; model {model.name!r} has none")
    space = model.check_space(space)
    check_count(model, space, count)
    dim = model.latent_dim(space)
    n, kl, total, squares = 0, torch.zeros(dim, dtype=torch.float64), torch.zeros(dim, dtype=torch.float64), \
        torch.zeros(dim, dtype=torch.float64)
    with torch.no_grad():
        for images, step, steps in _image_batches(model, data, samples, seed, batch_size):
            mean, logvar = model.posterior(images)
            mean, logvar = mean.double().cpu(), logvar.double().cpu()
            n += len(mean)
            kl += kl_to_standard_normal(mean, logvar).sum(0)
            total += mean.sum(0)
            squares += mean.square().sum(0)
            yield ProgressEvent(step, steps, "encoding images", {"images": n}, stage="discover")
            if stop_requested(stop):
                break
    if n < 2:
        raise UserInputError("axes needs at least 2 images")
    kl /= n
    activity = ((squares - total.square() / n) / (n - 1)).clamp_min(0.0)
    active = activity > threshold
    order = sorted(range(dim), key=lambda i: (not bool(active[i]), -float(kl[i])))[:count]
    vectors = torch.eye(dim)[order]
    source = None if data is None else str(data.root if isinstance(data, Cohort) else data)
    settings = {"count": count, "samples": samples if data is None else None, "threshold": threshold, "seed": seed,
                "batch_size": batch_size, "data": source}
    info = {"dimension": order, "images": n, "source": "prior samples" if data is None else "data",
            "active_units": int(active.sum())}
    return Directions(vectors, space, model.name, model.fingerprint, "axes", settings=settings,
                      names=[f"z{i}" for i in order],
                      scores={"kl": kl[order].tolist(), "activity": activity[order].tolist(),
                              "active": active[order].double().tolist()},
                      code_std=activity[order].sqrt().tolist(), info=info)
