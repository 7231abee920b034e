"""Latent directions: unit vectors in one latent space of one model, with names and scores."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..container import read_container, require_tensors, write_container
from ..errors import MismatchError, UserInputError
from ..models.base import GenerativeModel
from .codes import LatentCodes

DIRECTIONS_FORMAT = "napari-latent-directions"
DIRECTIONS_VERSION = 1


def default_names(method: str, count: int) -> list[str]:
    """``"<method> 1"``, ``"<method> 2"``, ... (rank order)."""
    return [f"{method} {i + 1}" for i in range(count)]


@dataclass(eq=False)
class Directions:
    """K unit vectors in one named latent space of one model.

    Attributes
    ----------
    vectors : torch.Tensor
        ``(K, d)`` float32, each row of unit length.
    space : str
        The latent space (``"z"``, ``"w"``, ``"w+"``).
    model_name, model_fingerprint : str
        The model the directions belong to (checked on use).
    method : str
        The discovery method (``"pca"``, ``"sefa"``, ``"voynov"``, ``"axes"``, ``"supervised"``,
        ``"jacobian"``, ...).
    settings : dict
        The method's settings.
    names : list of str
        One editable name per direction (default: method and rank).
    scores : dict of str to list of float
        Per-direction numbers (``explained_variance``, ``accuracy``, ``rca``, ``kl``, ...).
    code_std : list of float
        Standard deviation of codes along each direction (of the data or prior samples the
        method used), so that traversals can be given in units of it.
    info : dict
        Method-specific facts (for example the groups of a supervised direction).
    """

    vectors: torch.Tensor
    space: str
    model_name: str
    model_fingerprint: str
    method: str
    settings: dict[str, Any] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    scores: dict[str, list[float]] = field(default_factory=dict)
    code_std: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        vectors = torch.as_tensor(self.vectors).detach().float().cpu()
        if vectors.ndim == 1:
            vectors = vectors[None]
        if vectors.ndim != 2 or vectors.shape[0] == 0:
            raise MismatchError(f"directions must be (K, d) with K >= 1, got shape {tuple(vectors.shape)}")
        norms = vectors.norm(dim=1, keepdim=True)
        if bool((norms < 1e-12).any()):
            raise UserInputError("a direction has zero length")
        self.vectors = vectors / norms
        count = self.vectors.shape[0]
        self.names = list(self.names) or default_names(self.method, count)
        if len(self.names) != count:
            raise MismatchError(f"{len(self.names)} names for {count} directions")
        for key, values in self.scores.items():
            if len(values) != count:
                raise MismatchError(f"score {key!r} has {len(values)} values for {count} directions")
        self.scores = {k: [float(v) for v in values] for k, values in self.scores.items()}
        self.code_std = [float(v) for v in self.code_std] or [1.0] * count
        if len(self.code_std) != count:
            raise MismatchError(f"{len(self.code_std)} code spreads for {count} directions")

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        """Length of each vector."""
        return int(self.vectors.shape[1])

    def index_of(self, key: int | str) -> int:
        """The index of a direction given by index (0-based) or name."""
        if isinstance(key, str):
            if key not in self.names:
                raise UserInputError(f"no direction named {key!r}; the directions are: {', '.join(self.names)}")
            return self.names.index(key)
        if not -len(self) <= int(key) < len(self):
            raise UserInputError(f"direction index {key} is out of range; there are {len(self)} directions "
                                 f"(0 to {len(self) - 1})")
        return int(key) % len(self)

    def vector(self, key: int | str) -> torch.Tensor:
        """One direction ``(d,)``."""
        return self.vectors[self.index_of(key)]

    def combination(self, weights: dict[int | str, float]) -> torch.Tensor:
        """A weighted sum of directions, normalised to unit length."""
        if not weights:
            raise UserInputError("no directions given for the combination")
        total = torch.zeros(self.dim)
        for key, weight in weights.items():
            total += float(weight) * self.vector(key)
        norm = total.norm()
        if float(norm) < 1e-12:
            raise UserInputError("the weighted directions cancel out (zero vector)")
        return total / norm

    def rename(self, key: int | str, name: str) -> None:
        """Give a direction a new name (names stay unique)."""
        index = self.index_of(key)
        name = str(name).strip()
        if not name:
            raise UserInputError("a direction name cannot be empty")
        if name in self.names and self.names.index(name) != index:
            raise UserInputError(f"another direction is already named {name!r}")
        self.names[index] = name

    # -- checks ------------------------------------------------------------------------------
    def check_model(self, model: GenerativeModel) -> None:
        """Raise :class:`MismatchError` unless the directions belong to ``model``."""
        if not model.matches(self.model_name):
            raise MismatchError(f"the directions belong to a {self.model_name!r} model, not to this "
                                f"{model.name!r} model")
        if self.model_fingerprint and model.fingerprint and model.fingerprint != self.model_fingerprint:
            raise MismatchError(f"the directions were found for another model (fingerprint {self.model_fingerprint}); "
                                f"this model's fingerprint is {model.fingerprint}")
        if model.latent_dim(self.space) != self.dim:
            raise MismatchError(f"directions of dimension {self.dim} do not fit space {self.space!r} of the model "
                                f"({model.latent_dim(self.space)})")

    def check_codes(self, codes: LatentCodes) -> None:
        """Raise :class:`MismatchError` unless ``codes`` are in the same model and space."""
        if codes.space != self.space:
            raise MismatchError(f"the codes are in space {codes.space!r}, the directions in {self.space!r}")
        if codes.model_name != self.model_name or (
                self.model_fingerprint and codes.model_fingerprint
                and codes.model_fingerprint != self.model_fingerprint):
            raise MismatchError("the codes and the directions belong to different models "
                                f"({codes.model_name} {codes.model_fingerprint} vs {self.model_name} "
                                f"{self.model_fingerprint})")
        if codes.codes.shape[1] != self.dim:
            raise MismatchError(f"codes of dimension {codes.codes.shape[1]} do not fit directions of dimension "
                                f"{self.dim}")

    def shift(self, codes: torch.Tensor, key: int | str, alpha: float) -> torch.Tensor:
        """``codes + alpha * direction`` (alpha in latent units)."""
        if codes.shape[-1] != self.dim:
            raise MismatchError(f"codes of dimension {codes.shape[-1]} do not fit directions of dimension {self.dim}")
        return codes + float(alpha) * self.vector(key).to(codes.device, codes.dtype)

    # -- reporting ---------------------------------------------------------------------------
    def table(self) -> list[dict[str, Any]]:
        """One row per direction: index, name, code spread and every score."""
        rows = []
        for i in range(len(self)):
            row: dict[str, Any] = {"index": i, "name": self.names[i], "code_std": self.code_std[i]}
            row.update({k: v[i] for k, v in self.scores.items()})
            rows.append(row)
        return rows

    def to_json(self) -> dict[str, Any]:
        """Everything but the vectors, JSON-serialisable."""
        return {"format": DIRECTIONS_FORMAT, "format_version": DIRECTIONS_VERSION, "space": self.space,
                "model": self.model_name, "model_fingerprint": self.model_fingerprint, "method": self.method,
                "settings": self.settings, "names": self.names, "scores": self.scores, "code_std": self.code_std,
                "info": self.info}

    # -- files -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write to one ``.safetensors`` file (vectors plus a JSON header), atomically."""
        header = {k: v for k, v in self.to_json().items() if k not in ("format", "format_version")}
        return write_container(path, DIRECTIONS_FORMAT, DIRECTIONS_VERSION, header, {"vectors": self.vectors},
                               kind="directions file")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Directions:
        """Read a directions file written by :meth:`save` (never unpickles anything)."""
        path = Path(path)
        if not path.is_file():
            raise UserInputError(f"{path}: no such directions file")
        header, tensors = read_container(path, DIRECTIONS_FORMAT, DIRECTIONS_VERSION,
                                         kind="directions file")
        require_tensors(path, tensors, ("vectors",), "directions file")
        return cls(tensors["vectors"], header["space"], header.get("model", ""), header.get("model_fingerprint", ""),
                   header.get("method", ""), header.get("settings") or {}, header.get("names") or [],
                   header.get("scores") or {}, header.get("code_std") or [], header.get("info") or {})
