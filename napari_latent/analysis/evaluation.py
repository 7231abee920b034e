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
from ..training.data import iter_load_slices, split_subjects
from ..volumes.cohort import Cohort, load_cohort
from ..volumes.slicing import SliceSpec
from .frechet import FeatureExtractor, frechet_distance


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
                        batch_size: int = 64, seed: int = 0) -> Operation[dict[str, Any]]:
    """Metrics of ``model`` on held-out slices (a generator with progress; see :func:`evaluate_model`)."""
    spec = model.slice_spec or SliceSpec(size=model.image_size)
    cohort = data if isinstance(data, Cohort) else load_cohort(data)
    indices, which = _held_out_subjects(model, cohort, spec)
    slices = yield from iter_load_slices(cohort, indices, spec, stage="data")
    if len(slices) < 2:
        raise DataError("fewer than two slices to evaluate on")
    device = model.device
    model.eval()
    report: dict[str, Any] = {"model": model.name, "fingerprint": model.fingerprint, "evaluated_on": which,
                              "subjects": slices.names, "images": len(slices)}
    real = slices.images
    if model.has_encoder:
        recon = []
        for start in range(0, len(real), batch_size):
            batch = real[start:start + batch_size].to(device)
            recon.append(model.decode(model.encode(batch)).float().cpu())
            yield ProgressEvent(min(start + batch_size, len(real)), len(real), "reconstructing", stage="reconstruct")
        report.update(image_metrics(torch.cat(recon), real))
    n_samples = sample_count or len(real)
    generator = torch.Generator().manual_seed(seed)
    fakes = []
    for start in range(0, n_samples, batch_size):
        count = min(batch_size, n_samples - start)
        fakes.append(model.decode(model.sample_latent(count, generator)).float().cpu())
        yield ProgressEvent(start + count, n_samples, "sampling", stage="sample")
    distance, name = frechet_distance(real, torch.cat(fakes), extractor)
    report["frechet_distance"] = distance
    report["frechet_features"] = name
    return report


def evaluate_model(model: GenerativeModel, data: str | os.PathLike[str] | Cohort, sample_count: int | None = None,
                   extractor: FeatureExtractor | None = None, progress: ProgressArg = None) -> dict[str, Any]:
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

    Returns
    -------
    dict
        ``mse``, ``psnr``, ``ssim``, ``ms_ssim`` (models with an encoder),
        ``frechet_distance`` and ``frechet_features`` (the extractor's name), plus which
        subjects were used.
    """
    return run_operation(iter_evaluate_model(model, data, sample_count, extractor), progress)
