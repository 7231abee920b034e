"""Latent codes of a volume: one code per kept slice, tied to its model and source grid."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_save

from .._atomic import write_bytes_atomic
from ..errors import MismatchError, UserInputError
from ..models.base import GenerativeModel
from ..volumes.slicing import SliceGeometry

CODES_FORMAT = "napari-latent-codes"
CODES_VERSION = 1
HEADER_KEY = "napari_latent"


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
        if model.name != self.model_name:
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
        path = Path(path)
        if path.suffix != ".safetensors":
            raise UserInputError(f"{path}: a codes file must end in .safetensors")
        header = {"format": CODES_FORMAT, "format_version": CODES_VERSION, "space": self.space,
                  "method": self.method, "settings": self.settings, "model": self.model_name,
                  "model_fingerprint": self.model_fingerprint, "source": self.source,
                  "geometry": self.geometry.to_json()}
        tensors = {"codes": self.codes.contiguous(), "errors": torch.from_numpy(self.errors.copy())}
        return write_bytes_atomic(path, safetensors_save(tensors, metadata={HEADER_KEY: json.dumps(header)}))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LatentCodes:
        """Read a codes file written by :meth:`save` (never unpickles anything)."""
        path = Path(path)
        if not path.is_file():
            raise UserInputError(f"{path}: no such codes file")
        try:
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                metadata = handle.metadata() or {}
                tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise UserInputError(f"{path}: not a napari-latent codes file (not a valid safetensors file)") from exc
        try:
            header = json.loads(metadata[HEADER_KEY])
        except (KeyError, json.JSONDecodeError) as exc:
            raise UserInputError(f"{path}: not a napari-latent codes file (no napari-latent header)") from exc
        if header.get("format") != CODES_FORMAT:
            raise UserInputError(f"{path}: not a codes file (it is a {header.get('format')!r} file)")
        if int(header.get("format_version", 0)) > CODES_VERSION:
            raise UserInputError(f"{path}: made by a newer napari-latent; please upgrade")
        return cls(tensors["codes"], SliceGeometry.from_json(header["geometry"]), header["space"],
                   tensors["errors"].numpy(), header.get("method", ""), header.get("settings") or {},
                   header.get("model", ""), header.get("model_fingerprint", ""), header.get("source", ""))
