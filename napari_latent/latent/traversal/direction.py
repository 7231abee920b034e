"""The direction a traversal moves along: resolution of Directions, names, weights or raw vectors; alpha units."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from ...errors import UserInputError
from ..codes import LatentCodes
from ..directions import Directions

UNITS = ("latent", "std", "direction_std")
Units = Literal["latent", "std", "direction_std"]

#: What ``direction`` may be: a Directions object (with ``index=``), a resolved
#: :class:`TraversalDirection`, or a raw vector.
DirectionArg = Any

#: What ``index`` may be: a direction's index or name, or weights of several directions.
IndexArg = int | str | Mapping[int | str, float] | None


# -- directions ---------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class TraversalDirection:
    """The direction a traversal moves along (resolved to one unit vector).

    Attributes
    ----------
    vector : numpy.ndarray
        ``(d,)`` float32 unit vector.
    name : str
        The direction's name (a weighted combination is named after its parts).
    index : int or None
        Index in its :class:`Directions` object (None for combinations and raw vectors).
    method : str
        The discovery method of the directions (``"vector"`` for a raw vector).
    weights : dict of str to float, or None
        Names and weights of a combination of several directions.
    space : str
        Latent space of the vector (empty for a raw vector).
    code_std : float or None
        The direction's :attr:`Directions.code_std` (single directions only).
    """

    vector: np.ndarray
    name: str = "direction"
    index: int | None = None
    method: str = ""
    weights: dict[str, float] | None = None
    space: str = ""
    code_std: float | None = None

    def __post_init__(self) -> None:
        vector = np.asarray(self.vector, dtype=np.float64).ravel()
        norm = float(np.linalg.norm(vector))
        if vector.size == 0 or not np.all(np.isfinite(vector)) or norm < 1e-12:
            raise UserInputError("a traversal direction must be a finite vector of non-zero length")
        object.__setattr__(self, "vector", (vector / norm).astype(np.float32))

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (the vector as a list)."""
        return {"name": self.name, "index": self.index, "method": self.method, "weights": self.weights,
                "space": self.space, "code_std": self.code_std, "vector": [float(v) for v in self.vector]}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> TraversalDirection:
        """Rebuild from :meth:`to_json` output."""
        return cls(np.asarray(obj["vector"], dtype=np.float32), obj.get("name", "direction"), obj.get("index"),
                   obj.get("method", ""), obj.get("weights"), obj.get("space", ""), obj.get("code_std"))


def resolve_direction(direction: DirectionArg,
                      index: IndexArg = None) -> TraversalDirection:
    """Turn the accepted direction arguments into one :class:`TraversalDirection`.

    Parameters
    ----------
    direction : Directions, TraversalDirection, torch.Tensor or numpy.ndarray
        A set of directions, or one raw vector (normalised to unit length).
    index : int, str or mapping, optional
        With a :class:`Directions`: the direction's index or name, or a mapping of indices
        or names to weights for a weighted sum (normalised to unit length, see
        :meth:`Directions.combination`). May be omitted when there is only one direction.

    Raises
    ------
    UserInputError
        Index out of range, unknown name, several directions and no index, weights that
        cancel out, an index given with a raw vector, a zero or non-finite vector.
    """
    if isinstance(direction, TraversalDirection):
        if index is not None:
            raise UserInputError("index/weights apply to a Directions object, not to a resolved direction")
        return direction
    if isinstance(direction, Directions):
        if isinstance(index, Mapping):
            vector = direction.combination(dict(index))
            weights = {direction.names[direction.index_of(k)]: float(w) for k, w in index.items()}
            name = " + ".join(f"{w:g}*{n}" for n, w in weights.items())
            return TraversalDirection(vector.numpy(), name, None, direction.method, weights, direction.space, None)
        if index is None:
            if len(direction) != 1:
                raise UserInputError(f"there are {len(direction)} directions; choose one with an index (0 to "
                                     f"{len(direction) - 1}) or a name, or give weights for a combination")
            index = 0
        i = direction.index_of(index)
        return TraversalDirection(direction.vectors[i].numpy(), direction.names[i], i, direction.method, None,
                                  direction.space, float(direction.code_std[i]))
    if index is not None:
        raise UserInputError("index/weights apply to a Directions object, not to a raw vector")
    if isinstance(direction, torch.Tensor):
        direction = direction.detach().cpu().double().numpy()
    try:
        vector = np.asarray(direction, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserInputError(f"a direction must be a Directions object or a vector, got {type(direction).__name__}") \
            from None
    if vector.ndim != 1:
        raise UserInputError(f"a raw direction must be one vector (d,), got shape {vector.shape}")
    return TraversalDirection(vector, "vector", None, "vector", None, "", None)


def alpha_scale(units: str, direction: TraversalDirection, codes: LatentCodes) -> float:
    """Latent units per alpha unit for ``units`` (see the module docstring)."""
    if units == "latent":
        return 1.0
    if units == "std":
        projected = codes.codes.double().numpy() @ direction.vector.astype(np.float64)
        scale = float(np.std(projected, ddof=1)) if len(projected) > 1 else 0.0
        if not scale > 1e-12:
            raise UserInputError("the codes do not vary along the direction (their std is 0); use units 'latent'")
        return scale
    if units == "direction_std":
        if direction.code_std is None:
            raise UserInputError("units 'direction_std' need a single direction of a Directions object (its "
                                 "code_std); use 'std' or 'latent'")
        if not direction.code_std > 0:
            raise UserInputError(f"direction {direction.name!r} has no positive code_std")
        return float(direction.code_std)
    raise UserInputError(f"unknown alpha units {units!r}; use one of {', '.join(UNITS)}")


