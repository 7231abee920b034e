"""The voxel grid of a volume: its shape and affine, and the facts derived from them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import nibabel as nib
import numpy as np

from ..errors import MismatchError

#: Largest angle (radians) between a voxel axis and the nearest world axis for which a
#: grid still counts as axis-aligned. Below this, rounding noise in headers.
OBLIQUE_TOLERANCE = 1e-3


@dataclass(frozen=True, eq=False)
class Grid:
    """A 3D voxel grid: array shape plus the voxel-to-world (RAS+, mm) affine.

    Every result computed on a volume keeps the grid it belongs to, so that it can be
    written as NIfTI or shown in napari exactly on top of the source.
    """

    shape: tuple[int, int, int]
    affine: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        shape = tuple(int(n) for n in self.shape)
        if len(shape) != 3:
            raise ValueError(f"a grid is 3D, got shape {shape}")
        affine = np.array(self.affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise ValueError(f"an affine is 4x4, got {affine.shape}")
        affine.setflags(write=False)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "affine", affine)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Grid):
            return NotImplemented
        return self.shape == other.shape and bool(np.allclose(self.affine, other.affine, atol=1e-4))

    def __hash__(self) -> int:
        return hash((self.shape, tuple(np.round(self.affine, 4).ravel())))

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along each array axis in mm (norms of the affine's columns)."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def orientation(self) -> tuple[str, str, str]:
        """Anatomical direction each array axis increases toward, e.g. ``('R', 'A', 'S')``."""
        return tuple(nib.aff2axcodes(self.affine))  # type: ignore[return-value]

    @property
    def obliquity(self) -> float:
        """Largest angle in radians between a voxel axis and its nearest world axis."""
        return float(np.max(np.abs(nib.affines.obliquity(self.affine))))

    @property
    def is_oblique(self) -> bool:
        """True when the voxel axes are not aligned with the world axes."""
        return self.obliquity > OBLIQUE_TOLERANCE

    @property
    def fingerprint(self) -> str:
        """A short hash of shape and (rounded) affine, for matching results to grids."""
        payload = repr((self.shape, np.round(self.affine, 4).tolist())).encode()
        return hashlib.sha256(payload).hexdigest()[:16]

    def check_same(self, other: Grid, what: str = "the data") -> None:
        """Raise :class:`MismatchError` unless ``other`` is the same grid."""
        if self.shape != other.shape:
            raise MismatchError(f"{what} has grid shape {other.shape}, expected {self.shape}")
        if not np.allclose(self.affine, other.affine, atol=1e-4):
            raise MismatchError(f"{what} has another affine than the source volume (not on the same grid)")

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable description."""
        return {"shape": list(self.shape), "affine": np.asarray(self.affine).tolist()}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Grid:
        """Rebuild a grid from :meth:`to_json` output."""
        return cls(tuple(obj["shape"]), np.asarray(obj["affine"], dtype=np.float64))  # type: ignore[arg-type]
