"""The end-to-end demo: the MS paper's pipeline on a synthetic phantom cohort with the bundled model.

Güllmar, Hsu & Reichenbach (``seeds/001``) invert real images of MS patients and healthy
controls into a generative model's latent space, find the healthy-to-disease direction with a
linear SVM on the codes (InterFaceGAN), shift a healthy subject's codes along it for 15 alphas,
and eigendecompose the covariance of the foreground voxels of the 15 synthesized images. The
demo runs the same steps on what ships with the package:

1. a phantom cohort (healthy and MS-like subjects with known factors, ``cohort.csv``);
2. the bundled demo VAE (``load_model("demo")``: 64 px axial slices, latent ``z`` of 32);
3. inversion of every subject (the VAE's encoder) and of one healthy subject, whose codes
   are saved;
4. the supervised healthy-to-disease direction (linear SVM normal, held-out accuracy in the
   report) and one unsupervised method (SeFa by default, or PCA of the cohort's codes); the
   cosine of each unsupervised direction with the supervised one is reported;
5. the traversal of the healthy subject along the supervised direction (15 alphas), and
   along the unsupervised direction most aligned with it, each streamed into a traversal
   store (``traversal.zarr``) that the next steps read slab by slab;
6. eigencomponents (the paper's centred covariance) and plain difference maps;
7. a report folder per traversal (``report.html`` embedding the figures, ``report.json``).

Alpha units
-----------
The paper's ``0..50`` is in a StyleGAN ``w`` space. The demo model is a VAE whose codes follow
a unit normal prior: 50 latent units is about nine times the length of a typical code and
decodes to saturated, meaningless images. The demo therefore counts alphas in
``direction_std`` units, standard deviations of the cohort's codes along the direction
(:attr:`Directions.code_std`): ``0:3:15`` takes the healthy subject 3 SD towards the disease
group (the two groups' means lie about 0.7 SD apart along the supervised direction). Pass
``alphas=`` and ``units=`` to change it.

:func:`iter_demo` is the generator of progress events (the GUI can run it in a worker);
:func:`run_demo` drives it, e.g. with a terminal progress bar.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import write_json_atomic
from ..errors import UserInputError
from ..latent.codes import LatentCodes
from ..latent.cohort_codes import CohortCodes, iter_cohort_codes
from ..latent.directions import Directions
from ..latent.discovery import discovery_method, iter_discover
from ..latent.traversal import LazyTraversal, StoredTraversal, parse_alphas
from ..models.base import GenerativeModel
from ..models.checkpoint import load_model
from ..progress import Operation, ProgressArg, ProgressEvent, StopFlag, run_operation, stop_requested
from ..volumes.cohort import load_cohort
from ..volumes.io import Volume, open_volume
from ..volumes.phantoms import make_phantom_cohort
from .eigen import EigenResult, iter_eigencomponents
from .gallery import direction_gallery
from .plots import write_report
from .trust import TrustWarning, baseline_summary, trust_warnings

#: Unsupervised methods the demo can run beside the supervised direction.
UNSUPERVISED = ("sefa", "pca")

DEFAULT_ALPHAS = "0:3:15"
DEFAULT_UNITS = "direction_std"


@dataclass(eq=False)
class DemoResult:
    """What the demo produced (files under :attr:`out_dir`, and the objects themselves).

    Attributes
    ----------
    out_dir : Path
        The demo's folder.
    report : Path or None
        ``report/report.html`` of the supervised traversal.
    volume : Volume or None
        The healthy subject that was traversed.
    model : GenerativeModel or None
        The model used.
    codes : LatentCodes or None
        The healthy subject's codes.
    supervised, unsupervised : Directions or None
        The discovered directions.
    traversal : StoredTraversal or None
        The traversal along the supervised healthy-to-disease direction (its store,
        ``traversal.zarr``, read lazily).
    eigen : EigenResult or None
        Its eigen analysis.
    unsupervised_traversal : StoredTraversal or None
        The traversal along the unsupervised direction most aligned with the supervised one.
    unsupervised_eigen : EigenResult or None
        Its eigen analysis.
    paths : dict of str to Path
        Every file or folder written, by role.
    summary : dict
        The numbers (also in ``demo.json``): accuracies and their baselines, cosines, eigen
        pattern, the trust warnings, timings.
    warnings : list of TrustWarning
        Why not to trust the supervised traversal (:func:`~napari_latent.analysis.trust.trust_warnings`
        of the model, the supervised direction and the traversed subject's codes); empty
        when every check passed.
    stopped : bool
        True when the run was cancelled before the end (the fields not reached are None).
    """

    out_dir: Path
    report: Path | None = None
    volume: Volume | None = None
    model: GenerativeModel | None = None
    codes: LatentCodes | None = None
    supervised: Directions | None = None
    unsupervised: Directions | None = None
    traversal: StoredTraversal | None = None
    eigen: EigenResult | None = None
    unsupervised_traversal: StoredTraversal | None = None
    unsupervised_eigen: EigenResult | None = None
    paths: dict[str, Path] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    warnings: list[TrustWarning] = field(default_factory=list)
    stopped: bool = False


class _Stopped(Exception):
    """Raised inside the cohort writer's callback to abandon it when a stop is requested."""


def _iter_cohort(folder: Path, subjects: int, size: int, seed: int,
                 stop: StopFlag | None) -> Operation[bool]:
    """Write the phantom cohort in a helper thread, yielding an event per subject; False when stopped."""
    events: queue.Queue[tuple[int, int] | BaseException | None] = queue.Queue()

    def report(done: int, total: int) -> None:
        if stop_requested(stop):
            raise _Stopped
        events.put((done, total))

    def work() -> None:
        try:
            make_phantom_cohort(folder, n_subjects=subjects, size=size, seed=seed, write_labels=False,
                                progress=report)
            events.put(None)
        except BaseException as exc:  # carried to the generator's thread
            events.put(exc)

    thread = threading.Thread(target=work, name="napari-latent-demo-cohort", daemon=True)
    thread.start()
    yield ProgressEvent(0, subjects, f"writing {subjects} phantoms ({size} cubed)", stage="phantoms")
    while True:
        item = events.get()
        if item is None:
            break
        if isinstance(item, _Stopped):
            thread.join()
            return False
        if isinstance(item, BaseException):
            thread.join()
            raise item
        done, total = item
        yield ProgressEvent(done, total, f"phantom {done} of {total}", stage="phantoms")
    thread.join()
    return True


def _cosines(unsupervised: Directions, supervised: Directions) -> np.ndarray:
    """``|cos|`` of each unsupervised direction with the supervised normal (directions have no sign)."""
    normal = supervised.vectors[0].double().numpy()
    return np.abs(unsupervised.vectors.double().numpy() @ normal)


def _pattern(eigen: EigenResult) -> dict[str, Any]:
    """The paper's pattern in numbers: how constant eigenvector 1 is, how linear eigenvector 2."""
    vectors = eigen.eigenvectors
    count = len(eigen.alphas)
    alphas = np.asarray(eigen.alphas, dtype=np.float64)
    out: dict[str, Any] = {
        "explained_variance_ratio": [float(v) for v in eigen.explained_variance_ratio[:eigen.n_components]],
        "eigenvector_1_constant_fraction": float(np.sum(vectors[:, 0]) ** 2 / count),
    }
    if eigen.n_components > 1:
        out["eigenvector_2_alpha_correlation"] = float(np.corrcoef(vectors[:, 1], alphas)[0, 1])
    return out


def iter_demo(out_dir: str | os.PathLike[str], *, subjects: int = 20, size: int = 64, seed: int = 0,
              alphas: str | Sequence[float] = DEFAULT_ALPHAS, units: str = DEFAULT_UNITS,
              unsupervised: str = "sefa", n_components: int = 5, model: str | GenerativeModel = "demo",
              device: str = "cpu", dpi: int = 110,
              stop: StopFlag | None = None) -> Operation[DemoResult]:
    """The demo pipeline as a generator of progress events (see the module docstring).

    Parameters
    ----------
    out_dir : path-like
        Folder for everything (created; files of an earlier demo there are replaced).
    subjects : int
        Phantom subjects, half of them with disease (at least 4: the supervised method holds
        out one subject per group).
    size : int
        Phantom voxels per axis (the demo model sees 64 px slices; 64 is its training size).
    seed : int
        Seed of the cohort.
    alphas : str or sequence of float
        Alphas of the traversals (default ``"0:3:15"``).
    units : str
        Their units (default ``"direction_std"``; see the module docstring).
    unsupervised : {"sefa", "pca"}
        The unsupervised discovery method run beside the supervised one.
    n_components : int
        Eigencomponents kept.
    model : str or GenerativeModel
        ``"demo"`` (the bundled VAE), a checkpoint path, or a loaded model.
    device : str
        Where the model runs.
    dpi : int
        Resolution of the report's figures.
    stop : StopFlag, optional
        Cancels at the next step; the result then has ``stopped=True``.

    Returns
    -------
    DemoResult
    """
    if unsupervised not in UNSUPERVISED:
        raise UserInputError(f"unknown unsupervised method {unsupervised!r}; use one of {', '.join(UNSUPERVISED)}")
    if isinstance(subjects, bool) or int(subjects) < 4:
        raise UserInputError(f"the demo needs at least 4 subjects (2 per group), got {subjects}")
    alpha_values = parse_alphas(alphas)
    if len(alpha_values) < 2:
        raise UserInputError("the demo needs at least 2 alphas for the eigen analysis")
    if int(n_components) < 2:
        raise UserInputError("the demo keeps at least 2 eigencomponents (the paper's pattern needs two)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = DemoResult(out)
    timings: dict[str, float] = {}
    began = time.perf_counter()
    clock = began

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    # 1. The cohort.
    cohort_dir = out / "cohort"
    finished = yield from _iter_cohort(cohort_dir, int(subjects), int(size), int(seed), stop)
    result.paths["cohort"] = cohort_dir
    lap("phantoms")
    if not finished:
        result.stopped = True
        return result

    # 2. The model.
    yield ProgressEvent(0, 1, "loading the model", stage="model")
    net = model if isinstance(model, GenerativeModel) else load_model(model, device=device)
    result.model = net
    yield ProgressEvent(1, 1, f"{net.name}, {net.image_size} px", stage="model")
    lap("model")

    # 3. Codes of the whole cohort (the encoder), and of one healthy subject.
    cohort = load_cohort(cohort_dir)
    cohort_codes: CohortCodes = yield from iter_cohort_codes(net, cohort, stop=stop)
    lap("inversion")
    if stop_requested(stop) or len(cohort_codes.per_subject) < len(cohort):
        result.stopped = True
        return result
    healthy = [i for i, s in enumerate(cohort.subjects) if s.group == "healthy"]
    if not healthy:
        raise UserInputError("the cohort has no healthy subject to traverse")
    chosen = healthy[0]
    subject = cohort.subjects[chosen]
    volume = open_volume(subject.path)
    codes = cohort_codes.per_subject[chosen]
    result.volume, result.codes = volume, codes
    result.paths["codes"] = codes.save(out / f"codes_{subject.name}.safetensors")

    # 4. Directions: supervised healthy -> disease, and one unsupervised method.
    supervised = yield from iter_discover(net, "supervised", data=cohort_codes, stop=stop)
    result.supervised = supervised
    result.paths["supervised"] = supervised.save(out / "directions_supervised.safetensors")
    settings: dict[str, Any] = {"count": min(10, net.latent_dim(codes.space))}
    if discovery_method(unsupervised).data.kind == "codes":  # e.g. pca of the cohort's real codes
        settings["data"] = cohort_codes
    others = yield from iter_discover(net, unsupervised, stop=stop, **settings)
    result.unsupervised = others
    result.paths["unsupervised"] = others.save(out / f"directions_{unsupervised}.safetensors")
    cosines = _cosines(others, supervised)
    aligned = int(np.argmax(cosines))
    lap("discovery")
    if stop_requested(stop):
        result.stopped = True
        return result

    summary: dict[str, Any] = {
        "cohort": {"subjects": len(cohort), "size": int(size), "seed": int(seed),
                   "groups": {g: sum(s.group == g for s in cohort.subjects) for g in ("healthy", "disease")}},
        "model": {"name": net.name, "fingerprint": net.fingerprint, "image_size": net.image_size},
        "traversed_subject": subject.name,
        "inversion_mean_mse": float(codes.errors.mean()),
        "supervised": {"name": supervised.names[0], "held_out_accuracy": supervised.scores["accuracy"][0],
                       "held_out_subject_accuracy": supervised.scores["subject_accuracy"][0],
                       "train_accuracy": supervised.scores["train_accuracy"][0],
                       "code_std": supervised.code_std[0],
                       "baselines": supervised.info.get("baselines"),
                       "baseline_summary": baseline_summary(supervised, 0)},
        "unsupervised": {"method": unsupervised, "cosine_with_supervised": [float(c) for c in cosines],
                         "most_aligned": aligned, "most_aligned_name": others.names[aligned]},
        "alphas": [float(a) for a in np.sort(alpha_values)], "units": units,
    }
    result.warnings = trust_warnings(net, directions=supervised, index=0, codes=codes)
    summary["warnings"] = [w.to_json() for w in result.warnings]
    plain_warnings = trust_warnings(net, codes=codes)  # the unsupervised direction has no baselines

    # 5-7. Traversal, eigencomponents and report, for both directions.
    runs = [("supervised", supervised, 0, out), (unsupervised, others, aligned, out / unsupervised)]
    for label, directions, index, folder in runs:
        lazy = LazyTraversal(net, codes, directions, alpha_values, index=index, units=units,  # type: ignore[arg-type]
                             source=volume)
        # Streamed into a store and read back slab by slab: the same path a CT-sized volume takes.
        stored = yield from lazy.iter_store(folder / "traversal.zarr", stop)
        if stored is None or stop_requested(stop):
            result.stopped = True
            return result
        traversal = stored
        traversal_path = stored.path
        lap(f"traverse_{label}")
        eigen = yield from iter_eigencomponents(traversal, n_components=n_components, differences="all", stop=stop)
        if eigen is None:
            result.stopped = True
            return result
        eigen_dir = eigen.save(folder / "eigen", like=volume)
        lap(f"eigen_{label}")
        yield ProgressEvent(0, 1, f"figures of the {label} traversal", stage="report")
        pattern = _pattern(eigen)
        extra = {"traversed subject": subject.name, "inversion mean MSE": f"{codes.errors.mean():.4g}",
                 "direction": directions.names[index]}
        if label == "supervised":
            extra["held-out accuracy (slices / subjects)"] = (f"{supervised.scores['accuracy'][0]:.3f} / "
                                                              f"{supervised.scores['subject_accuracy'][0]:.3f}")
            baselines = baseline_summary(supervised, 0)
            if baselines is not None:
                extra["accuracy and baselines (same split)"] = baselines
        else:
            extra["|cos| with the supervised direction"] = f"{cosines[index]:.3f}"
        # what every direction of the set does to the traversed subject's middle slice
        gallery = direction_gallery(net, directions, codes, amount=2.0)
        report = write_report(folder / "report", traversal, eigen, extra=extra, dpi=dpi,
                              warnings=result.warnings if label == "supervised" else plain_warnings, gallery=gallery)
        lap(f"report_{label}")
        summary[f"{label}_run"] = {"traversal": str(traversal_path), "eigen": str(eigen_dir), "report": str(report),
                                   "alpha_scale": float(traversal.alpha_scale), **pattern}
        if label == "supervised":
            result.traversal, result.eigen, result.report = traversal, eigen, report
            result.paths.update(traversal=traversal_path, eigen=eigen_dir, report=report)
        else:
            result.unsupervised_traversal, result.unsupervised_eigen = traversal, eigen
            result.paths.update(unsupervised_traversal=traversal_path, unsupervised_eigen=eigen_dir,
                                unsupervised_report=report)
    timings["total"] = round(time.perf_counter() - began, 3)
    summary["timings_s"] = timings
    result.summary = summary
    result.paths["summary"] = write_json_atomic(out / "demo.json", summary)
    yield ProgressEvent(1, 1, f"report: {result.report}", stage="done")
    return result


def run_demo(out_dir: str | os.PathLike[str], progress: ProgressArg = None, stop: StopFlag | None = None,
             **settings: Any) -> DemoResult:
    """Run the demo to the end (keyword settings as in :func:`iter_demo`).

    Parameters
    ----------
    out_dir : path-like
        Folder for everything.
    progress : callable, bool or None
        ``True`` for a terminal progress bar, a callable for every event.
    stop : StopFlag, optional
        Cancels at the next step.
    **settings
        ``subjects``, ``size``, ``seed``, ``alphas``, ``units``, ``unsupervised``,
        ``n_components``, ``model``, ``device``, ``dpi``.

    Returns
    -------
    DemoResult
    """
    return run_operation(iter_demo(out_dir, stop=stop, **settings), progress)
