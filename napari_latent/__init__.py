"""napari-latent: interpret the latent spaces of generative models of medical images.

The public functions are importable from here; they load lazily so that importing the
package (and running ``napari-latent --help``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

try:
    from ._version import __version__
except ImportError:  # pragma: no cover - only in a source tree without build metadata
    __version__ = "0+unknown"

_EXPORTS: dict[str, str] = {
    "Volume": "napari_latent.volumes",
    "SliceSpec": "napari_latent.volumes",
    "open_volume": "napari_latent.volumes",
    "save_volume": "napari_latent.volumes",
    "foreground_mask": "napari_latent.volumes",
    "load_cohort": "napari_latent.volumes",
    "make_phantom_cohort": "napari_latent.volumes.phantoms",
    "make_phantom": "napari_latent.volumes.phantoms",
    "make_warped_cohort": "napari_latent.volumes.warped",
    "load_model": "napari_latent.models.checkpoint",
    "wrap": "napari_latent.models.wrapped",
    "train_model": "napari_latent.training",
    "TrainSettings": "napari_latent.training",
    "evaluate_model": "napari_latent.analysis.evaluation",
    "invert": "napari_latent.latent",
    "InversionSettings": "napari_latent.latent",
    "LatentCodes": "napari_latent.latent",
    "discover": "napari_latent.latent.discovery",
    "Directions": "napari_latent.latent.directions",
    "evaluate_directions": "napari_latent.analysis.direction_evaluation",
    "traverse": "napari_latent.latent.traversal",
    "Traversal": "napari_latent.latent.traversal",
    "eigencomponents": "napari_latent.analysis.eigen",
    "EigenResult": "napari_latent.analysis.eigen",
    "difference_maps": "napari_latent.analysis.eigen",
    "ProgressEvent": "napari_latent.progress",
    "StopFlag": "napari_latent.progress",
    "get_device": "napari_latent.device",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'napari_latent' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
