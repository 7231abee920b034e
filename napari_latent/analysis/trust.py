"""When not to trust a traversal: warnings about the model, the direction and the inverted subject.

Güllmar et al. (``seeds/001``) analyse how well real images are projected into the latent
space before they interpret a manipulation: a traversal of a subject the model cannot
reconstruct shows the model's idea of some other anatomy, and a direction that separates the
groups no better than chance moves the images along noise. This module turns those checks
into warnings, one function used by the command line, the napari widgets, the demo and the
report, so that all of them say the same thing with the same numbers.

Checks and thresholds
---------------------
Reconstruction quality (``kind="reconstruction"``)
    The model's reconstruction of held-out slices: the metrics of ``napari-latent evaluate``
    when given, otherwise the training run's final validation metrics stored in the
    checkpoint (``val_psnr``, ``val_mse``). A warning when PSNR < :data:`MIN_PSNR_DB` (20 dB)
    or SSIM < :data:`MIN_SSIM` (0.6). Why these: images are in [-1, 1], so 20 dB is a
    root-mean-square error of 0.2, a tenth of the intensity range, at which the ventricles
    and the cortex of the phantoms blur into their surroundings; an SSIM below 0.6 means the
    local structure differs more than it agrees. For scale: the bundled demo VAE reaches
    24.9 dB on its validation slices (SSIM 0.83 on a fresh phantom cohort), an untrained VAE
    7.6 dB (SSIM 0.02). A model without any recorded metric gets a
    ``reconstruction_unknown`` note instead (run ``napari-latent evaluate``).
Chance (``kind="chance"``)
    A supervised direction whose held-out accuracy is within the 95th percentile of its
    shuffled-label accuracies (:mod:`~napari_latent.latent.discovery.supervised_baselines`),
    i.e. not above chance at the 5% level.
Pixel baseline (``kind="pixel_baseline"``)
    A supervised direction whose held-out accuracy does not exceed that of a logistic
    regression on the slice pixels, on the same split and band: the model adds nothing. A
    direction fitted to a graded column is also compared with the pixel ridge regression onto
    that column (its accuracy, and its readout R²).
Readout (``kind="readout"``)
    A supervised direction fitted to a graded column (``classifier="ridge"``, ``target=``)
    whose held-out readout of that column (R² of a line fitted on the training subjects,
    :mod:`~napari_latent.latent.discovery.supervised_readout`) is below
    :data:`MIN_READOUT_R2` (0.5): it explains less than half of how the column varies among
    the held-out subjects, so a traversal along it need not show more or less of it.
Inversion (``kind="inversion"``)
    The traversed subject's mean per-slice reconstruction MSE (``LatentCodes.errors``, model
    units: images in [-1, 1]) more than :data:`MAX_INVERSION_RATIO` (2) times the model's
    validation MSE (``val_mse`` in the checkpoint: the mean over validation slices of the
    same per-slice MSE, from the encoder's reconstruction), or than the ``mse`` of given
    evaluation metrics. The same measure on both sides: a mean over slices of the per-slice
    mean squared error of the whole 2D image. Phantom subjects of the demo model's kind score
    0.8-0.9 times its validation MSE; the same phantom with inverted contrast 64 times, a
    real head MRI (nibabel's ``anatomical.nii``) 19 times.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..latent.codes import LatentCodes
from ..latent.directions import Directions
from ..latent.discovery.supervised_readout import best_readouts
from ..models.base import GenerativeModel

#: Reconstruction PSNR (dB, images in [-1, 1]) below which a model's traversals are not to be trusted.
MIN_PSNR_DB = 20.0
#: Reconstruction SSIM below which a model's traversals are not to be trusted.
MIN_SSIM = 0.6
#: How many times the model's validation MSE a subject's mean inversion MSE may reach.
MAX_INVERSION_RATIO = 2.0
#: Held-out R² below which a direction fitted to a graded column does not read it out.
MIN_READOUT_R2 = 0.5

KINDS = ("reconstruction", "reconstruction_unknown", "chance", "pixel_baseline", "readout", "inversion")


@dataclass(frozen=True)
class TrustWarning:
    """One reason not to trust a traversal (yet).

    Attributes
    ----------
    kind : str
        One of :data:`KINDS`.
    message : str
        One line for people: what was measured, the threshold, and what to do.
    value, threshold : float or None
        The measured number and the limit it crossed.
    """

    kind: str
    message: str
    value: float | None = None
    threshold: float | None = None

    def __str__(self) -> str:
        return self.message

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return asdict(self)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def validation_metrics(model: GenerativeModel,
                       metrics: Mapping[str, Any] | None = None) -> tuple[dict[str, float], str]:
    """The reconstruction metrics to judge ``model`` by (``psnr``, ``ssim``, ``mse``) and where they come from.

    ``metrics`` (the report of :func:`~napari_latent.analysis.evaluation.evaluate_model`) wins;
    otherwise the training run's final validation metrics in the checkpoint.
    """
    if metrics:
        found = {k: v for k in ("psnr", "ssim", "mse") if (v := _number(metrics.get(k))) is not None}
        if found:
            return found, "the evaluation"
    final = ((getattr(model, "training_info", None) or {}).get("final_metrics")) or {}
    found = {k: v for k in ("psnr", "ssim", "mse") if (v := _number(final.get(f"val_{k}"))) is not None}
    return found, "the training run's validation slices" if found else ""


def reconstruction_warnings(model: GenerativeModel, metrics: Mapping[str, Any] | None = None) -> list[TrustWarning]:
    """Warnings when the model reconstructs held-out slices poorly (PSNR < 20 dB or SSIM < 0.6).

    Parameters
    ----------
    model : GenerativeModel
    metrics : mapping, optional
        ``evaluate_model``'s report (``psnr``, ``ssim``, ``mse``); the checkpoint's training
        facts otherwise.
    """
    found, source = validation_metrics(model, metrics)
    if "psnr" not in found and "ssim" not in found:
        if not model.has_encoder and not metrics:
            return []  # a generator alone: its inversion is judged per subject
        return [TrustWarning("reconstruction_unknown", f"the {model.name} model's reconstruction quality is unknown "
                             "(no validation metrics recorded): check it with 'napari-latent evaluate MODEL DATA' "
                             "before trusting a traversal")]
    out = []
    psnr, ssim = found.get("psnr"), found.get("ssim")
    if psnr is not None and psnr < MIN_PSNR_DB:
        out.append(TrustWarning("reconstruction", f"the {model.name} model reconstructs held-out slices poorly: "
                                f"PSNR {psnr:.1f} dB on {source}, below {MIN_PSNR_DB:g} dB; a traversal shows the "
                                "model's idea of an image, not this anatomy", psnr, MIN_PSNR_DB))
    if ssim is not None and ssim < MIN_SSIM:
        out.append(TrustWarning("reconstruction", f"the {model.name} model reconstructs held-out slices poorly: "
                                f"SSIM {ssim:.2f} on {source}, below {MIN_SSIM:g}", ssim, MIN_SSIM))
    return out


def direction_warnings(directions: Directions, index: int = 0) -> list[TrustWarning]:
    """Warnings when a supervised direction is at chance, does not beat the pixel baseline, or misses its target.

    Directions without baselines (other methods, or ``baselines=False``) give none of the
    first two; the readout check applies to the first direction of a supervised run with a
    ``target``.
    """
    scores = directions.scores
    if "accuracy" not in scores or index >= len(scores["accuracy"]):
        return []
    name = directions.names[index]
    accuracy = float(scores["accuracy"][index])
    out = []
    if "chance_accuracy_95" in scores:
        chance, chance_95 = float(scores["chance_accuracy"][index]), float(scores["chance_accuracy_95"][index])
        p_value = float(scores["p_value"][index])
        if accuracy <= chance_95:
            out.append(TrustWarning("chance", f"direction {name!r} is not above chance: held-out accuracy "
                                    f"{accuracy:.3f}, within the shuffled-label 95th percentile {chance_95:.3f} "
                                    f"(chance mean {chance:.3f}, p = {p_value:.2f}); it may move the images along "
                                    "noise", accuracy, chance_95))
    pixel = ((directions.info.get("baselines") or {}).get("pixel")) or {}
    pixel_accuracy = _number(pixel.get("accuracy"))
    if pixel_accuracy is not None and accuracy <= pixel_accuracy:
        out.append(TrustWarning("pixel_baseline", f"direction {name!r} does not beat the pixel baseline: held-out "
                                f"accuracy {accuracy:.3f} against {pixel_accuracy:.3f} for a logistic regression on "
                                "the slice images of the same subjects", accuracy, pixel_accuracy))
    return out + _pixel_regression_warnings(directions, index, accuracy) + _readout_warnings(directions, index)


def _pixel_regression_warnings(directions: Directions, index: int, accuracy: float) -> list[TrustWarning]:
    """A direction fitted to a graded column against the pixel ridge regression onto the same column."""
    target = directions.info.get("target")
    regression = ((directions.info.get("baselines") or {}).get("pixel_regression")) or {}
    if index != 0 or not target or _number(regression.get("accuracy")) is None:
        return []
    out = []
    pixel_accuracy = float(regression["accuracy"])
    name = directions.names[index]
    if accuracy <= pixel_accuracy:
        out.append(TrustWarning("pixel_baseline", f"direction {name!r} does not beat the pixel regression onto "
                                f"{target!r}: held-out accuracy {accuracy:.3f} against {pixel_accuracy:.3f}",
                                accuracy, pixel_accuracy))
    r2 = _number((((directions.info.get("factor_readout") or {}).get(target)) or {}).get("r2", [None])[0])
    pixel_r2 = _number(regression.get("readout_r2"))
    if r2 is not None and pixel_r2 is not None and r2 <= pixel_r2:
        out.append(TrustWarning("pixel_baseline", f"direction {name!r} reads out {target!r} no better than the "
                                f"pixel regression onto it: held-out R² {r2:.2f} against {pixel_r2:.2f}", r2,
                                pixel_r2))
    return out


def _readout_warnings(directions: Directions, index: int) -> list[TrustWarning]:
    """The readout check of a direction fitted to a graded column (see the module docstring)."""
    target = directions.info.get("target")
    if index != 0 or not target:
        return []
    found = ((directions.info.get("factor_readout") or {}).get(target)) or {}
    r2 = _number((found.get("r2") or [None])[0])
    name = directions.names[index]
    if r2 is None:
        return [TrustWarning("readout", f"direction {name!r} could not be checked against its target {target!r}: "
                             "too few held-out subjects with a value", None, MIN_READOUT_R2)]
    if r2 >= MIN_READOUT_R2:
        return []
    return [TrustWarning("readout", f"direction {name!r} does not read out its target {target!r} on held-out "
                         f"subjects: R² {r2:.2f}, below {MIN_READOUT_R2:g}; a traversal along it need not show more "
                         f"or less {target}", r2, MIN_READOUT_R2)]


def inversion_warnings(model: GenerativeModel, codes: LatentCodes,
                       metrics: Mapping[str, Any] | None = None) -> list[TrustWarning]:
    """A warning when a subject's inversion error is far above the model's validation error.

    Compares the mean of ``codes.errors`` (per-slice MSE, images in [-1, 1]) with the
    validation MSE (``metrics["mse"]``, else the checkpoint's ``val_mse``); none when the
    model has no recorded validation MSE.
    """
    found, source = validation_metrics(model, metrics)
    reference = found.get("mse")
    errors = np.asarray(codes.errors, dtype=np.float64)
    if reference is None or reference <= 0 or errors.size == 0:
        return []
    error = float(errors.mean())
    ratio = error / reference
    if ratio <= MAX_INVERSION_RATIO:
        return []
    subject = codes.source or "the subject"
    return [TrustWarning("inversion", f"{subject} is far from what the model reconstructs well: mean inversion MSE "
                         f"{error:.4g}, {ratio:.1f} times the validation MSE {reference:.4g} ({source}; limit "
                         f"{MAX_INVERSION_RATIO:g} times); a traversal of it is not to be trusted", ratio,
                         MAX_INVERSION_RATIO)]


def trust_warnings(model: GenerativeModel | None = None, *, directions: Directions | None = None, index: int = 0,
                   codes: LatentCodes | Iterable[LatentCodes] | None = None,
                   metrics: Mapping[str, Any] | None = None) -> list[TrustWarning]:
    """Every warning that applies to what is given (the one function the CLI, the GUI and the report use).

    Parameters
    ----------
    model : GenerativeModel, optional
        Reconstruction quality (and the reference of the inversion check).
    directions : Directions, optional
        Chance and pixel-baseline checks of direction ``index``.
    index : int
        The direction traversed.
    codes : LatentCodes or iterable of LatentCodes, optional
        The subject(s) traversed (needs ``model``).
    metrics : mapping, optional
        ``evaluate_model``'s report, preferred to the checkpoint's training facts.

    Returns
    -------
    list of TrustWarning
        Empty when nothing is wrong.
    """
    out: list[TrustWarning] = []
    if model is not None:
        out += reconstruction_warnings(model, metrics)
    if directions is not None:
        out += direction_warnings(directions, index)
    if model is not None and codes is not None:
        for item in [codes] if isinstance(codes, LatentCodes) else codes:
            out += inversion_warnings(model, item, metrics)
    return out


def format_warnings(warnings: Iterable[TrustWarning]) -> list[str]:
    """One ``warning: ...`` line per warning (what the command line prints)."""
    return [f"warning: {w.message}" for w in warnings]


def baseline_summary(directions: Directions, index: int = 0) -> str | None:
    """One line with a supervised direction's accuracy next to its baselines (None without baselines)."""
    scores = directions.scores
    if "chance_accuracy" not in scores or index >= len(scores["chance_accuracy"]):
        return None
    text = (f"held-out accuracy {scores['accuracy'][index]:.3f} (subjects {scores['subject_accuracy'][index]:.3f}); "
            f"chance {scores['chance_accuracy'][index]:.3f} (95th percentile "
            f"{scores['chance_accuracy_95'][index]:.3f}, p = {scores['p_value'][index]:.3f})")
    pixel = ((directions.info.get("baselines") or {}).get("pixel")) or {}
    if _number(pixel.get("accuracy")) is not None:
        text += (f"; pixel logistic regression {pixel['accuracy']:.3f} (subjects {pixel['subject_accuracy']:.3f}, "
                 f"{pixel.get('pixels')} pixels, C {pixel.get('C'):g})")
    elif pixel.get("skipped"):
        text += f"; pixel baseline skipped: {pixel['skipped']}"
    regression = ((directions.info.get("baselines") or {}).get("pixel_regression")) or {}
    if index == 0 and _number(regression.get("accuracy")) is not None:
        r2 = _number(regression.get("readout_r2"))
        text += (f"; pixel ridge regression onto {directions.info.get('target')} {regression['accuracy']:.3f} "
                 f"(subjects {regression['subject_accuracy']:.3f}, readout R² "
                 f"{'n/a' if r2 is None else format(r2, '.2f')})")
    readouts = readout_summary(directions, index)
    if readouts is not None:
        text += f"; {readouts}"
    return text


def readout_summary(directions: Directions, index: int = 0, count: int = 3) -> str | None:
    """The factors a supervised direction reads out best on held-out subjects, as one phrase (None without any).

    See :mod:`napari_latent.latent.discovery.supervised_readout`.
    """
    best = best_readouts(directions.info.get("factor_readout") or {}, index, count)
    if not best:
        return None
    return "factor readout along it (held-out subjects, R²): " + ", ".join(f"{name} {r2:.2f}" for name, r2 in best)
