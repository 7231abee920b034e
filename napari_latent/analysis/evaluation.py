"""Evaluating a trained model on a data set: reconstruction quality and sample realism."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import torch

from ..errors import DataError
from ..metrics import image_metrics
from ..models.base import GenerativeModel
from ..progress import Operation, ProgressArg, ProgressEvent, run_operation
from ..training.data import CacheArg, iter_load_slices, split_subjects
from ..volumes.cohort import Cohort, load_cohort
from ..volumes.slicing import SliceSpec
from .frechet import (
    FeatureExtractor,
    RandomConvFeatures,
    batch_features,
    extractor_name,
    frechet_of_features,
    stack_features,
)


def _held_out_subjects(model: GenerativeModel, cohort: Cohort, spec: SliceSpec) -> tuple[list[int], str]:
    """The training run's validation subjects when ``cohort`` is its data, else every subject."""
    facts = model.training_info or {}
    settings = facts.get("settings") or {}
    seed, fraction = settings.get("seed"), settings.get("val_fraction")
    if seed is not None and fraction is not None:
        digest = hashlib.sha256(f"{cohort.fingerprint()}|{spec.to_json()}|{fraction}|{seed}".encode())
        if digest.hexdigest()[:16] == facts.get("data_fingerprint"):
            _, validation = split_subjects(len(cohort), float(fraction), int(seed), cohort.participant_groups())
            if validation:
                return validation, "validation subjects of the training run"
    return list(range(len(cohort))), "all subjects (not the model's training data)"


@torch.no_grad()
def iter_evaluate_model(model: GenerativeModel, data: str | os.PathLike[str] | Cohort,
                        sample_count: int | None = None, extractor: FeatureExtractor | None = None,
                        batch_size: int = 64, seed: int = 0, cache: CacheArg = None) -> Operation[dict[str, Any]]:
    """Metrics of ``model`` on held-out slices (a generator with progress; see :func:`evaluate_model`).

    The slices come from the slice cache batch by batch (like training's) and generated
    images are reduced to features batch by batch: memory holds the features, not the images.
    """
    spec = model.slice_spec or SliceSpec(size=model.image_size)
    cohort = data if isinstance(data, Cohort) else load_cohort(data)
    indices, which = _held_out_subjects(model, cohort, spec)
    slices = yield from iter_load_slices(cohort, indices, spec, stage="data", cache=cache)
    n_real = len(slices)
    if n_real < 2:
        raise DataError("fewer than two slices to evaluate on")
    device = model.device
    model.eval()
    extractor = RandomConvFeatures() if extractor is None else extractor
    report: dict[str, Any] = {"model": model.name, "fingerprint": model.fingerprint, "evaluated_on": which,
                              "subjects": slices.names, "images": n_real}
    sums: dict[str, float] = {}
    real_features = []
    for start in range(0, n_real, batch_size):
        real = slices.read_range(start, start + batch_size)
        if model.has_encoder:
            recon = model.decode(model.encode(real.to(device))).float().cpu()
            for key, value in image_metrics(recon, real).items():  # means over the batch
                sums[key] = sums.get(key, 0.0) + value * len(real)
        real_features.append(batch_features(real, extractor, "the real images"))
        yield ProgressEvent(start + len(real), n_real, "reconstructing" if model.has_encoder else "real features",
                            stage="reconstruct" if model.has_encoder else "features")
    report.update({key: total / n_real for key, total in sums.items()})
    n_samples = sample_count or n_real
    generator = torch.Generator().manual_seed(seed)
    fake_features = []
    for start in range(0, n_samples, batch_size):
        count = min(batch_size, n_samples - start)
        fake = model.decode(model.sample_latent(count, generator)).float().cpu()
        fake_features.append(batch_features(fake, extractor, "the generated images"))
        yield ProgressEvent(start + count, n_samples, "sampling", stage="sample")
    report["frechet_distance"] = frechet_of_features(stack_features(real_features, "the real images"),
                                                     stack_features(fake_features, "the generated images"))
    report["frechet_features"] = extractor_name(extractor)
    return report


def evaluate_model(model: GenerativeModel, data: str | os.PathLike[str] | Cohort, sample_count: int | None = None,
                   extractor: FeatureExtractor | None = None, progress: ProgressArg = None,
                   cache: CacheArg = None) -> dict[str, Any]:
    """Evaluate a model: reconstruction metrics and the Fréchet distance of its samples.

    Parameters
    ----------
    model : GenerativeModel
        A loaded model (its ``slice_spec`` decides the slicing).
    data : path-like or Cohort
        The data set. When it is the model's training data (same files, slicing and split
        seed), the training run's validation subjects are used; otherwise every subject.
    sample_count : int, optional
        Generated images for the Fréchet distance (default: as many as real slices).
    extractor : FeatureExtractor, optional
        Features for the Fréchet distance; the documented fixed default otherwise. Only
        InceptionV3 weights from a local file are reported as "FID".
    progress : callable, bool or None
    cache : SliceCache, path-like or None
        The slice cache the slices are read from (sliced into it first when missing; the
        default location when None).

    Returns
    -------
    dict
        ``mse``, ``psnr``, ``ssim``, ``ms_ssim`` (models with an encoder),
        ``frechet_distance`` and ``frechet_features`` (the extractor's name), plus which
        subjects were used.
    """
    return run_operation(iter_evaluate_model(model, data, sample_count, extractor, cache=cache), progress)
