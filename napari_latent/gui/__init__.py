"""napari integration: reader, writer, sample data, layer conversion, widgets and workers.

This is the only package that may import napari, magicgui or Qt (enforced by an
import-linter contract). :func:`show` (scripted sessions) loads lazily, so importing this
package does not import napari.
"""

from __future__ import annotations

from typing import Any

__all__ = ["show"]


def __getattr__(name: str) -> Any:
    if name == "show":
        from .launcher import show

        return show
    raise AttributeError(f"module 'napari_latent.gui' has no attribute {name!r}")
