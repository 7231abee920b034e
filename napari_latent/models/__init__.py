"""napari-latent models stage.

:func:`wrap` (from :mod:`.wrapped`) makes any PyTorch decoder (and encoder) a model the
analysis functions accept; it is loaded lazily, like the package's top-level exports.
"""

from __future__ import annotations

from typing import Any

__all__ = ["wrap"]


def __getattr__(name: str) -> Any:
    if name == "wrap":
        from .wrapped import wrap

        return wrap
    raise AttributeError(f"module 'napari_latent.models' has no attribute {name!r}")
