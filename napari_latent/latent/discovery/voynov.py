"""Unsupervised discovery of directions that a classifier can tell apart (Voynov & Babenko 2020).

Voynov & Babenko (2020), "Unsupervised Discovery of Interpretable Directions in the GAN
Latent Space", ICML; official code github.com/anvoynov/GANLatentDiscovery (``trainer.py``,
``latent_deformator.py``, ``latent_shift_predictor.py``). Schön, Selvan & Petersen (2022)
used it on thoracic CT slices (``proj`` deformator, LeNet reconstructor, 3k steps, batch 128).

A *deformator* ``A`` (a ``d x K`` matrix) and a *reconstructor* ``R`` (a small CNN) are
trained jointly while the generator ``G`` stays frozen. Each step draws codes ``c``, an
index ``k ~ U{0..K-1}`` and a shift ``eps`` per sample; ``R`` sees the pair
``(G(c), G(c + u * eps * A e_k))`` as two channels and predicts ``k`` (``K`` logits) and
``eps`` (one number). The loss is ``CE(logits, k) + shift_weight * |eps_hat - eps|``; both
networks minimise it (Adam), so the deformator is pushed towards directions whose effects on
the images are easy to tell apart: in practice, interpretable ones. As in the official
``make_shifts``, ``eps = shift_range * (2 U - 1)`` and shifts smaller than ``min_shift`` in
size are set to ``+-min_shift`` (keeping their sign).

Deformators (the returned directions are the columns of the effective matrix, normalised):

* ``linear``: a free matrix; the latent shift is ``eps * A e_k``, so columns may grow or
  shrink (``info["column_norm"]``).
* ``proj``: the same matrix with its columns scaled to unit length in the forward pass
  (the official ``PROJECTIVE`` type), so every shift has length ``|eps| * u``.
* ``orthonormal``: an orthonormal ``d x K`` frame. The official ``ORTHO`` type takes the
  first ``K`` columns of ``expm(S - S^T)`` for a free ``d x d`` matrix ``S``; we take the
  Q factor of the QR decomposition of a free ``d x K`` matrix (signs fixed so that ``R``
  has a positive diagonal), which parametrises the same set of frames at ``O(d K^2)``
  instead of ``O(d^3)`` per step: the matrix exponential and its gradient took 0.39 s per
  step at ``d = 512`` and 3.4 s at ``d = 1024`` (StyleGAN ``w+``, VQ-VAE maps) on one CPU
  thread, against 2 ms for QR.

Initialisation follows the official default (``--deformator_random_init``): identity
columns plus ``0.1 * N(0, 1)`` noise for ``linear``/``proj``, a random frame for
``orthonormal``. Unlike the official ``nn.Linear`` the deformator has no bias (a bias adds
the same shift whatever ``k`` and, for ``proj``, makes the direction depend on ``eps``).

Reconstructors: ``lenet`` is the official ``LeNetShiftPredictor`` (width 2, two input
channels for the grey image pair); ``resnet`` is a small ResNet (a stride-2 stem, then
basic residual blocks halving the resolution down to 4 x 4, widths 32 doubling to at most
256) instead of the official torchvision ResNet-18, which would be a new dependency and is
oversized for 64-128 px grey slices. Like the official heads, ``resnet`` has linear heads
and ``lenet`` a hidden layer with batch norm.

Shift units. ``eps`` is in units of the spread of the prior codes: 1 in Gaussian ``z``
spaces (as in the paper), else the root-mean-square standard deviation per dimension of
prior samples (:func:`~napari_latent.latent.inversion.latent_statistics`; StyleGAN ``w``
and ``w+``, the VQ-VAE's continuous code maps). It is one number per space, not one per
dimension, so that the directions keep their geometry (orthonormal frames stay orthonormal
in the space itself); ``info["shift_unit"]`` records it. A VQ-VAE quantises the shifted
maps, so its images change in jumps and the deformator learns through the straight-through
gradient of :meth:`~napari_latent.models.vqvae.VQVAE.decode`.

Evaluation. After training, the reconstructor (in eval mode, as the official
``validate_classifier``) classifies ``eval_samples`` fresh pairs with the directions taken
in turn (balanced), giving the reconstructor classification accuracy (RCA) per direction
(score ``rca``; overall in ``info["rca"]``, chance is ``1 / K``), the mean absolute error
of the predicted shift (score ``shift_error``, in shift units) and the mean absolute pixel
change the shifts cause (score ``image_change``). Directions are returned ranked by RCA
(ties: by image change), the most reliably recognisable first; ``info["deformator_column"]``
gives each one's column of the deformator. With ``eval_samples=0`` they stay in deformator
order and have no scores.

The networks are in :mod:`.voynov_networks`, the training loop and the evaluation in
:mod:`.voynov_training`, the state file in :mod:`.voynov_state`.

Other choices: the original images ``G(c)`` are decoded without a gradient (they do not
depend on the deformator; same result, less work); training runs in float32 (bfloat16
autocast on the CPU would only add rounding to a small, decoder-bound computation). The
number of directions is at most the latent dimension (:func:`check_count`), so the CT
paper's over-complete setting (``K = 100`` in a 32-d space) is not available.

Resuming. With ``state=PATH.safetensors`` the deformator, the reconstructor (with its batch
norm statistics), both Adam states, the step, the random generator and the running
accuracy are written atomically every ``save_every`` steps, at a stop and at the end (a
safetensors file with a JSON header; loading never unpickles). When the file exists and was
made with the same settings (all but ``steps``, ``eval_samples`` and ``save_every``) and
model, training continues from it, to the same result as an uninterrupted run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...errors import UserInputError
from ...models.base import GenerativeModel, model_fingerprint
from ...progress import Operation, StopFlag
from ...settings import Setting
from ..directions import Directions
from ..inversion import default_space, latent_statistics
from . import check_count, register_method
from .pca import projected_std
from .voynov_networks import (
    DEFORMATORS,
    RECONSTRUCTORS,
    Deformator,
    LeNetReconstructor,
    ResNetReconstructor,
    make_reconstructor,
)
from .voynov_state import RESUMABLE_CHANGES, STATE_FORMAT, STATE_KIND, STATE_VERSION
from .voynov_training import ACCURACY_SMOOTHING, VoynovRun, frozen, make_shifts

__all__ = ["ACCURACY_SMOOTHING", "DEFORMATORS", "RECONSTRUCTORS", "RESUMABLE_CHANGES", "STATE_FORMAT", "STATE_KIND",
           "STATE_VERSION", "Deformator", "LeNetReconstructor", "ResNetReconstructor", "is_gaussian", "iter_voynov",
           "make_reconstructor", "make_shifts"]

#: The settings of :func:`iter_voynov`, as the command line and the Discover widget offer them.
SETTINGS = (
    Setting("count", "int", 10, "number of directions K (at most the latent dimension)", minimum=1,
            label="directions"),
    Setting("steps", "int", 2000, "training steps in all (a resumed run continues up to this many)", minimum=0),
    Setting("deformator", "choice", "orthonormal", "the form of the direction matrix", choices=DEFORMATORS),
    Setting("reconstructor", "choice", "lenet", "the network that tells the directions apart",
            choices=RECONSTRUCTORS),
    Setting("batch_size", "int", 32, "image pairs per step (the CT paper used 128)", minimum=2),
    Setting("lr", "float", 1e-4, "Adam learning rate of the deformator"),
    Setting("reconstructor_lr", "float", 1e-4, "Adam learning rate of the reconstructor"),
    Setting("shift_range", "float", 6.0, "shifts are drawn from U(-shift_range, shift_range), in shift units"),
    Setting("min_shift", "float", 0.5, "smaller shifts are set to +-min_shift"),
    Setting("shift_weight", "float", 0.25, "weight of the L1 shift loss next to the cross-entropy"),
    Setting("seed", "int", 0, "seeds the initial networks and the training samples"),
    Setting("state", "path", None, "a .safetensors file for the training state: saved every save_every steps and "
            "continued when it exists with the same settings", mode="w"),
    Setting("save_every", "int", 100, "steps between state saves (with state)", minimum=1),
    Setting("eval_samples", "int", 1024, "fresh image pairs for the RCA after training (0: no evaluation)",
            minimum=0),
)


def is_gaussian(model: GenerativeModel, space: str) -> bool:
    """True for a standard normal prior space (``z`` of every model but the VQ-VAE)."""
    return model.prior(space).standard_normal


def _checked(count: int, steps: int, deformator: str, reconstructor: str, batch_size: int, lr: float,
             reconstructor_lr: float, shift_range: float, min_shift: float, shift_weight: float, seed: int,
             save_every: int, eval_samples: int) -> dict[str, Any]:
    """The settings checked and normalised (what the directions record and a saved state must match)."""
    if deformator not in DEFORMATORS:
        raise UserInputError(f"unknown deformator {deformator!r}; use one of {', '.join(DEFORMATORS)}")
    if reconstructor not in RECONSTRUCTORS:
        raise UserInputError(f"unknown reconstructor {reconstructor!r}; use one of {', '.join(RECONSTRUCTORS)}")
    steps, batch_size, save_every, eval_samples = int(steps), int(batch_size), int(save_every), int(eval_samples)
    if steps < 0 or batch_size < 2 or save_every < 1 or eval_samples < 0:
        raise UserInputError("voynov needs steps >= 0, batch_size >= 2, save_every >= 1 and eval_samples >= 0")
    if not (lr > 0 and reconstructor_lr > 0 and shift_range > 0 and 0 <= min_shift <= shift_range
            and shift_weight >= 0):
        raise UserInputError("voynov needs positive learning rates and shift_range, 0 <= min_shift <= shift_range "
                             "and shift_weight >= 0")
    return {"count": count, "steps": steps, "deformator": deformator, "reconstructor": reconstructor,
            "batch_size": batch_size, "lr": float(lr), "reconstructor_lr": float(reconstructor_lr),
            "shift_range": float(shift_range), "min_shift": float(min_shift), "shift_weight": float(shift_weight),
            "seed": int(seed), "save_every": save_every, "eval_samples": eval_samples}


@register_method("voynov", "Voynov & Babenko: deformator and reconstructor trained so that directions are recognisable",
                 settings=SETTINGS)
def iter_voynov(model: GenerativeModel, *, space: str | None = None, count: int = 10, steps: int = 2000,
                deformator: str = "orthonormal", reconstructor: str = "lenet", batch_size: int = 32,
                lr: float = 1e-4, reconstructor_lr: float = 1e-4, shift_range: float = 6.0, min_shift: float = 0.5,
                shift_weight: float = 0.25, seed: int = 0, state: str | os.PathLike[str] | None = None,
                save_every: int = 100, eval_samples: int = 1024,
                stop: StopFlag | None = None) -> Operation[Directions]:
    """Train a deformator and a reconstructor jointly (a generator; run it with ``discover(model, "voynov")``).

    Parameters
    ----------
    model : GenerativeModel
        Frozen during training (``requires_grad`` off, eval mode); both are restored after.
    space : str, optional
        Latent space (``w`` for StyleGAN, the main space otherwise).
    count : int
        Number of directions ``K`` (at most the latent dimension).
    steps : int
        Training steps in all (a resumed run continues up to this many).
    deformator : {"orthonormal", "linear", "proj"}
        The form of the direction matrix (see the module docstring).
    reconstructor : {"lenet", "resnet"}
        The network that tells the directions apart.
    batch_size : int
        Image pairs per step (the official default 32; the CT paper used 128).
    lr, reconstructor_lr : float
        Adam learning rates of the deformator and the reconstructor (the official 1e-4 both).
    shift_range : float
        Shifts are drawn from ``U(-shift_range, shift_range)``, in shift units (see below).
    min_shift : float
        Smaller shifts are set to ``+-min_shift``.
    shift_weight : float
        Weight of the L1 shift loss next to the cross-entropy.
    seed : int
        Seeds the initial networks and the training samples (evaluation samples are drawn
        from a stream of their own).
    state : path-like, optional
        A ``.safetensors`` file for the training state: written every ``save_every`` steps,
        at a stop and at the end; an existing one with the same settings is continued.
    save_every : int
        Steps between state saves (with ``state``).
    eval_samples : int
        Fresh image pairs for the RCA after training (0: no evaluation, no scores).
    stop : StopFlag, optional
        Ends training early; the directions found so far are evaluated and returned.

    Returns
    -------
    Directions
        Ranked by RCA; scores ``rca``, ``shift_error`` and ``image_change``; ``code_std`` is 1
        in Gaussian ``z`` spaces, else the spread of prior samples along each direction;
        ``info`` holds the overall RCA, the chance level, the shift unit, the steps done and
        the deformator column of each direction.

    References
    ----------
    Voynov & Babenko (2020), Unsupervised Discovery of Interpretable Directions in the GAN
    Latent Space, ICML; https://github.com/anvoynov/GANLatentDiscovery.
    """
    space = model.check_space(space or default_space(model))
    check_count(model, space, count)
    settings = _checked(count, steps, deformator, reconstructor, batch_size, lr, reconstructor_lr, shift_range,
                        min_shift, shift_weight, seed, save_every, eval_samples)
    state_path = None if state is None else Path(state)
    if state_path is not None and state_path.suffix != ".safetensors":
        raise UserInputError(f"{state_path}: the voynov state file must end in .safetensors")

    unit = 1.0 if is_gaussian(model, space) else latent_statistics(model, space)[1]
    identity: dict[str, Any] = {}  # what a saved state must match
    if state_path is not None:
        identity = {**settings, "model": model.name, "space": space, "dim": model.latent_dim(space),
                    "model_fingerprint": model.fingerprint or model_fingerprint(model)}
    run = VoynovRun(model, space, settings, unit, state_path, identity)
    run.resume()
    with frozen(model):
        yield from run.iter_train(settings["steps"], settings["save_every"], stop)
        vectors, scores, info = yield from run.iter_directions(settings["eval_samples"])
    code_std = [1.0] * count if is_gaussian(model, space) else projected_std(model, space, vectors)
    return Directions(vectors, space, model.name, model.fingerprint, "voynov", settings=settings, scores=scores,
                      code_std=code_std, info=info)
