"""Latent codes of a volume: one code per kept slice, tied to its model and source grid."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..container import read_container, require_tensors, write_container
from ..errors import MismatchError, UserInputError
from ..models.base import GenerativeModel
from ..volumes.slicing import SliceGeometry

CODES_FORMAT = "napari-latent-codes"
CODES_VERSION = 1


@dataclass(eq=False)
class LatentCodes:
    """The codes of the slices of one volume in one latent space of one model.

    Attributes
    ----------
    codes : torch.Tensor
        ``(n, latent_dim)`` float32 codes, one per slice.
    geometry : SliceGeometry
        How the volume was sliced (source grid, box, window, kept slice positions); maps
        decoded images back onto the source volume.
    space : str
        The latent space (``"z"``, ``"w"``, ``"w+"``).
    errors : numpy.ndarray
        Per-slice reconstruction MSE in model units ([-1, 1] images).
    method : str
        How the codes were found (``"encoder"``, ``"optimize"``, ``"hybrid"``).
    settings : dict
        The method's settings.
    model_name, model_fingerprint : str
        The model the codes belong to.
    source : str
        The source volume's path or name.
    """

    codes: torch.Tensor
    geometry: SliceGeometry
    space: str
    errors: np.ndarray
    method: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    model_name: str = ""
    model_fingerprint: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        self.codes = self.codes.detach().float().cpu()
        self.errors = np.asarray(self.errors, dtype=np.float64)
        if self.codes.ndim != 2:
            raise MismatchError(f"codes must be (n, dim), got shape {tuple(self.codes.shape)}")
        if len(self.codes) != len(self.geometry.indices) or len(self.errors) != len(self.codes):
            raise MismatchError(f"{len(self.codes)} codes, {len(self.geometry.indices)} slice positions and "
                                f"{len(self.errors)} errors do not match")

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    @property
    def indices(self) -> np.ndarray:
        """Slice positions of the codes (the plane's slice axis, canonical orientation)."""
        return self.geometry.indices

    def check_model(self, model: GenerativeModel) -> None:
        """Raise :class:`MismatchError` unless ``model`` is the model the codes belong to."""
        if not model.matches(self.model_name):
            raise MismatchError(f"the codes belong to a {self.model_name!r} model, not to this {model.name!r} model")
        if self.model_fingerprint and model.fingerprint and model.fingerprint != self.model_fingerprint:
            raise MismatchError(f"the codes were computed with another model (fingerprint {self.model_fingerprint}); "
                                f"this model's fingerprint is {model.fingerprint}")
        if model.latent_dim(self.space) != self.codes.shape[1]:
            raise MismatchError(f"codes of dimension {self.codes.shape[1]} do not fit space {self.space!r} of the "
                                f"model ({model.latent_dim(self.space)})")

    @torch.no_grad()
    def decode(self, model: GenerativeModel, codes: torch.Tensor | None = None, batch_size: int = 64) -> torch.Tensor:
        """Decode these codes (or replacement codes for the same slices) in batches, on the CPU."""
        self.check_model(model)
        codes = self.codes if codes is None else codes
        out = []
        for start in range(0, len(codes), batch_size):
            batch = codes[start:start + batch_size].to(model.device)
            out.append(model.decode(batch, self.space).float().cpu())
        return torch.cat(out)

    def reconstruct(self, model: GenerativeModel, fill: Any = None) -> np.ndarray:
        """The decoded volume on the source grid (scanner intensity units)."""
        return self.geometry.to_volume(self.decode(model), fill=fill)

    def summary(self) -> dict[str, Any]:
        """Numbers for reports: counts, space, method and error statistics."""
        return {"slices": len(self), "space": self.space, "dimension": int(self.codes.shape[1]),
                "method": self.method, "mean_mse": float(self.errors.mean()) if len(self.errors) else float("nan"),
                "max_mse": float(self.errors.max()) if len(self.errors) else float("nan"),
                "model": self.model_name, "model_fingerprint": self.model_fingerprint, "source": self.source}

    # -- files -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the codes to one ``.safetensors`` file (tensors plus a JSON header), atomically."""
        header = {"space": self.space, "method": self.method, "settings": self.settings, "model": self.model_name,
                  "model_fingerprint": self.model_fingerprint, "source": self.source,
                  "geometry": self.geometry.to_json()}
        tensors = {"codes": self.codes, "errors": torch.from_numpy(self.errors.copy())}
        return write_container(path, CODES_FORMAT, CODES_VERSION, header, tensors, kind="codes file")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LatentCodes:
        """Read a codes file written by :meth:`save` (never unpickles anything)."""
        path = Path(path)
        if not path.is_file():
            raise UserInputError(f"{path}: no such codes file")
        header, tensors = read_container(path, CODES_FORMAT, CODES_VERSION,
                                         kind="codes file")
        require_tensors(path, tensors, ("codes", "errors"), "codes file")
        return cls(tensors["codes"], SliceGeometry.from_json(header["geometry"]), header["space"],
                   tensors["errors"].numpy(), header.get("method", ""), header.get("settings") or {},
                   header.get("model", ""), header.get("model_fingerprint", ""), header.get("source", ""))
