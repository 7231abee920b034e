"""A gallery of directions: what each direction does to one slice (as SeFa and GANSpace show).

For each direction ``k`` one start code ``c`` is decoded at ``c - a_k d_k``, ``c`` and
``c + a_k d_k`` with ``a_k = amount * code_std_k``: the shift is given in spreads of the codes
along the direction (:attr:`Directions.code_std`), the unit of traversals and of the Explore
widget. The start code is one slice's inverted code (by default the middle modelled slice of
:class:`~napari_latent.latent.codes.LatentCodes`) or, without codes, the model's mean latent
(:meth:`GenerativeModel.mean_latent`). All thumbnails are decoded in batches, gradient-free::

    gallery = direction_gallery(model, directions, amount=2.0)
    gallery.differences            # mean |image(+a) - image(-a)| per direction
    gallery.order(by="eigenvalue").to_png("gallery.png")
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .._atomic import atomic_path
from ..errors import MismatchError, UserInputError
from ..latent.codes import LatentCodes
from ..latent.directions import Directions
from ..models.base import GenerativeModel
from ..progress import Operation, ProgressArg, ProgressEvent, StopFlag, run_operation, stop_requested

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .direction_evaluation import DirectionEvaluation

#: Columns of a gallery: the shift in spreads, times ``amount``.
COLUMNS = (-1.0, 0.0, 1.0)


@dataclass(eq=False)
class Gallery:
    """Thumbnails of one slice decoded along each direction at ``-a``, 0 and ``+a``.

    Attributes
    ----------
    images : numpy.ndarray
        ``(K, 3, S, S)`` float32 decoded images in model units ([-1, 1]); columns ``-a``, 0, ``+a``.
    alphas : numpy.ndarray
        ``(K, 3)`` the shifts in latent units (``-a_k``, 0, ``a_k`` with ``a_k = amount * code_std_k``).
    amount : float
        The shift in spreads of the codes along each direction.
    names : list of str
        Direction name per row.
    scores : dict of str to list of float
        The directions' scores, per row.
    indices : list of int
        Each row's index in the :class:`Directions` the gallery was made from (rows may be reordered).
    start : str
        Where the start code came from (``"mean latent"``, ``"slice 31 of NAME"``, ``"given code"``).
    method : str
        The directions' discovery method.
    """

    images: np.ndarray
    alphas: np.ndarray
    amount: float
    names: list[str]
    scores: dict[str, list[float]] = field(default_factory=dict)
    indices: list[int] = field(default_factory=list)
    start: str = ""
    method: str = ""

    def __post_init__(self) -> None:
        self.images = np.asarray(self.images, dtype=np.float32)
        self.alphas = np.asarray(self.alphas, dtype=np.float64)
        count = len(self.images)
        if self.images.ndim != 4 or self.images.shape[1] != len(COLUMNS):
            raise MismatchError(f"gallery images must be (K, 3, S, S), got shape {self.images.shape}")
        if self.alphas.shape != (count, len(COLUMNS)) or len(self.names) != count:
            raise MismatchError(f"{count} rows of images, {len(self.alphas)} of alphas, {len(self.names)} names")
        self.indices = list(self.indices) or list(range(count))

    def __len__(self) -> int:
        return len(self.images)

    @property
    def differences(self) -> np.ndarray:
        """``(K,)`` mean absolute difference between the ``+a`` and the ``-a`` image of each row.

        How much the direction changes the slice at this amount (model units; 0: no visible effect).
        """
        return np.abs(self.images[:, 2] - self.images[:, 0]).mean(axis=(1, 2)).astype(np.float64)

    def order(self, by: str = "difference", *, descending: bool = True,
              evaluation: DirectionEvaluation | None = None) -> Gallery:
        """The gallery with its rows sorted (a new object; this one is unchanged).

        Parameters
        ----------
        by : str
            ``"difference"`` (:attr:`differences`, the visible change), ``"index"`` (the
            directions' own order, e.g. after another sort), the name of one of :attr:`scores`
            (``"eigenvalue"``, ``"explained_variance"``, ``"accuracy"``, ...), or, with
            ``evaluation``, the name of one of its factors: rows by the absolute effect of
            the direction on that factor (the direction that changes it most first).
        descending : bool
            Largest first (for ``"index"``: True gives the directions' own order, False reverses it).
        evaluation : DirectionEvaluation, optional
            The factor evaluation of the same directions
            (:func:`~napari_latent.analysis.direction_evaluation.evaluate_directions`).

        Raises
        ------
        UserInputError
            ``by`` is neither a score nor (with ``evaluation``) a factor.
        """
        if by == "difference":
            keys = self.differences
        elif by == "index":
            keys = -np.asarray(self.indices, dtype=np.float64)  # descending: the directions' own order
        elif by in self.scores:
            keys = np.asarray(self.scores[by], dtype=np.float64)
        elif evaluation is not None and by in evaluation.factors:
            effects = np.abs(np.asarray(evaluation.effects, dtype=np.float64)[:, evaluation.factors.index(by)])
            if len(effects) < max(self.indices) + 1:
                raise MismatchError(f"the evaluation has {len(effects)} directions; the gallery has direction "
                                    f"{max(self.indices)}")
            keys = effects[self.indices]
        else:
            known = ["difference", "index", *self.scores, *(evaluation.factors if evaluation is not None else [])]
            raise UserInputError(f"cannot order the gallery by {by!r}; use one of: {', '.join(known)}")
        keys = np.nan_to_num(keys, nan=-np.inf)
        rows = np.argsort(-keys if descending else keys, kind="stable")
        return self.take(rows)

    def take(self, rows: Any) -> Gallery:
        """The gallery with only ``rows`` (indices into the current rows), in that order."""
        rows = [int(r) for r in np.asarray(rows).ravel()]
        return replace(self, images=self.images[rows], alphas=self.alphas[rows], names=[self.names[r] for r in rows],
                       scores={k: [v[r] for r in rows] for k, v in self.scores.items()},
                       indices=[self.indices[r] for r in rows])

    def row_label(self, row: int, score: str | None = None) -> str:
        """``"name"`` plus one score (the first one by default) and the difference, for figures."""
        key = score if score is not None else next(iter(self.scores), None)
        label = self.names[row]
        if key is not None and key in self.scores:
            label += f"\n{key} {self.scores[key][row]:.3g}"
        return label + f"\nΔ {self.differences[row]:.3f}"

    def figure(self, score: str | None = None, thumbnail: float = 1.3) -> Figure:
        """A matplotlib figure: one row per direction, columns ``-a``, 0, ``+a`` (grey, window [-1, 1]).

        Columns are titled with the shift in spreads; the small corner number of the outer
        thumbnails is the shift in latent units (:attr:`alphas`).
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        rows = len(self)
        figure = Figure(figsize=(0.9 + 3 * thumbnail, 0.35 + rows * thumbnail), dpi=100, layout="constrained")
        FigureCanvasAgg(figure)
        axes = np.asarray(figure.subplots(rows, len(COLUMNS), squeeze=False))
        for r in range(rows):
            for c, sign in enumerate(COLUMNS):
                ax = axes[r, c]
                ax.imshow(self.images[r, c], cmap="gray", vmin=-1.0, vmax=1.0, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title("α = 0" if sign == 0 else f"α = {sign * self.amount:+g} σ", fontsize=8)
                if c != 1 and sign:
                    ax.text(0.02, 0.02, f"{self.alphas[r, c]:+.2f}", transform=ax.transAxes, fontsize=6,
                            color="yellow", va="bottom")
            axes[r, 0].set_ylabel(self.row_label(r, score), fontsize=7, rotation=0, ha="right", va="center")
        title = f"{self.method} directions" if self.method else "directions"
        figure.suptitle(f"{title} from {self.start}" if self.start else title, fontsize=8)
        return figure

    def to_png(self, path: str | os.PathLike[str], *, score: str | None = None, thumbnail: float = 1.3,
               dpi: int = 100) -> Path:
        """Write :meth:`figure` as a PNG, atomically (nothing at ``path`` unless complete).

        Parameters
        ----------
        path : path-like
            A ``.png`` file (its folder is created if missing).
        score : str, optional
            The score shown in each row's label (the first score by default).
        thumbnail : float
            Size of one thumbnail in inches.
        dpi : int
            Resolution.

        Raises
        ------
        UserInputError
            ``path`` does not end in ``.png``.
        """
        path = Path(path)
        check_png_path(path)
        figure = self.figure(score=score, thumbnail=thumbnail)
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=dpi, facecolor="white")
        return path

    def to_json(self) -> dict[str, Any]:
        """Everything but the images, JSON-serialisable (for reports)."""
        differences = self.differences
        return {"amount": self.amount, "start": self.start, "method": self.method,
                "rows": [{"index": self.indices[r], "name": self.names[r], "alpha": float(self.alphas[r, 2]),
                          "difference": float(differences[r])} for r in range(len(self))]}


def check_png_path(path: str | os.PathLike[str]) -> Path:
    """Raise :class:`UserInputError` unless ``path`` can take a PNG (``.png``, not a folder, parent not a file)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UserInputError(f"{path}: a gallery must be a .png file")
    if path.is_dir():
        raise UserInputError(f"{path}: is a folder, not a .png file")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserInputError(f"{path}: {parent} is not a folder")
            break
    return path


@contextlib.contextmanager
def _eval_mode(model: GenerativeModel) -> Iterator[None]:
    training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(training)


def start_code(model: GenerativeModel, directions: Directions, codes: LatentCodes | torch.Tensor | None = None,
               slice_index: int | None = None, seed: int = 0) -> tuple[torch.Tensor, str]:
    """The code the gallery starts from, ``(1, d)``, and where it came from.

    Parameters
    ----------
    model, directions
        The model and its directions.
    codes : LatentCodes or torch.Tensor, optional
        A volume's codes (one slice is used) or one code ``(d,)`` / ``(1, d)``. None: the
        model's mean latent in the directions' space.
    slice_index : int, optional
        With :class:`LatentCodes`: the slice position (one of ``codes.indices``); the middle
        modelled slice by default.
    seed : int
        Seed of the prior samples behind the mean latent (models without a tracked mean).
    """
    if codes is None:
        return model.mean_latent(directions.space, seed=seed).detach().float().cpu(), "mean latent"
    if isinstance(codes, LatentCodes):
        codes.check_model(model)
        directions.check_codes(codes)
        if len(codes) == 0:
            raise UserInputError("the codes hold no slices")
        indices = np.asarray(codes.indices)
        if slice_index is None:
            row = len(codes) // 2
        else:
            found = np.flatnonzero(indices == int(slice_index))
            if not len(found):
                raise UserInputError(f"slice {slice_index} has no code; the codes cover slices {int(indices.min())} "
                                     f"to {int(indices.max())}")
            row = int(found[0])
        source = Path(codes.source).name if codes.source else "the volume"
        return codes.codes[row:row + 1].float(), f"slice {int(indices[row])} of {source}"
    code = torch.as_tensor(codes).detach().float().cpu().reshape(1, -1)
    if code.shape[1] != directions.dim:
        raise MismatchError(f"a start code of dimension {code.shape[1]} does not fit directions of dimension "
                            f"{directions.dim}")
    return code, "given code"


def direction_gallery(model: GenerativeModel, directions: Directions, codes: LatentCodes | torch.Tensor | None = None,
                      slice_index: int | None = None, amount: float = 2.0, seed: int = 0, batch_size: int = 64,
                      progress: ProgressArg = None) -> Gallery:
    """Decode one slice along every direction at ``-a``, 0 and ``+a`` (``a = amount * code_std``).

    Drives :func:`iter_direction_gallery` to the end (``progress``: see
    :func:`~napari_latent.progress.run_operation`).

    Parameters
    ----------
    model : GenerativeModel
        The model the directions belong to (put in eval mode while decoding, then restored).
    directions : Directions
        The directions (one gallery row each, in their order).
    codes : LatentCodes or torch.Tensor, optional
        Where to start: a volume's inverted codes (the slice ``slice_index``, by default the
        middle modelled slice) or one code; the model's mean latent by default.
    slice_index : int, optional
        The slice position in ``codes`` (see :func:`start_code`).
    amount : float
        The shift in spreads of the codes along each direction (:attr:`Directions.code_std`).
    seed : int
        Seed of the prior samples behind the mean latent.
    batch_size : int
        Codes per decoder call.
    progress : callable or bool, optional
        Progress display.

    Returns
    -------
    Gallery

    Raises
    ------
    UserInputError
        ``amount`` not positive and finite, or a slice without a code.
    MismatchError
        The model, directions and codes do not belong together.
    """
    return run_operation(iter_direction_gallery(model, directions, codes, slice_index, amount, seed, batch_size),
                         progress)


def iter_direction_gallery(model: GenerativeModel, directions: Directions,
                           codes: LatentCodes | torch.Tensor | None = None, slice_index: int | None = None,
                           amount: float = 2.0, seed: int = 0, batch_size: int = 64,
                           stop: StopFlag | None = None) -> Operation[Gallery]:
    """:func:`direction_gallery` as an operation: one progress event per decoded batch.

    A ``stop`` request ends it after the current batch with :class:`UserInputError` (no
    partial gallery).
    """
    if not np.isfinite(amount) or amount <= 0:
        raise UserInputError(f"the gallery amount must be a positive number of spreads, got {amount}")
    if batch_size < 1:
        raise UserInputError(f"batch size must be positive, got {batch_size}")
    directions.check_model(model)
    start, where = start_code(model, directions, codes, slice_index, seed)
    spreads = torch.tensor(directions.code_std, dtype=torch.float32) * float(amount)
    shifts = directions.vectors * spreads[:, None]                                    # (K, d)
    batch = torch.cat([start, start + torch.stack([-shifts, shifts], 1).reshape(-1, directions.dim)])
    images = []
    total = -(-len(batch) // batch_size)
    for step, first in enumerate(range(0, len(batch), batch_size), start=1):
        if stop_requested(stop):
            raise UserInputError("the gallery was cancelled")
        with _eval_mode(model), torch.inference_mode():
            chunk = batch[first:first + batch_size].to(model.device)
            images.append(model.decode(chunk, directions.space).float().cpu())
        yield ProgressEvent(step, total, f"gallery: decoded {min(first + batch_size, len(batch))} of {len(batch)}",
                            stage="gallery")
    decoded = torch.cat(images)[:, 0].numpy()                                          # (1 + 2K, S, S)
    count = len(directions)
    pairs = decoded[1:].reshape(count, 2, *decoded.shape[1:])
    grid = np.stack([pairs[:, 0], np.broadcast_to(decoded[0], pairs[:, 0].shape), pairs[:, 1]], axis=1)
    a = spreads.double().numpy()
    alphas = np.stack([-a, np.zeros_like(a), a], axis=1)
    return Gallery(grid, alphas, float(amount), list(directions.names),
                   {k: list(v) for k, v in directions.scores.items()}, list(range(count)), where, directions.method)
