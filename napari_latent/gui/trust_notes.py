"""Trust warnings (:mod:`napari_latent.analysis.trust`) as napari warning notifications."""

from __future__ import annotations

from collections.abc import Iterable

from ..analysis.trust import TrustWarning


def notify_warnings(warnings: Iterable[TrustWarning]) -> list[TrustWarning]:
    """Show each warning as a napari warning notification; returns them (for the widget to keep)."""
    from napari.utils.notifications import show_warning

    shown = list(warnings)
    for warning in shown:
        show_warning(f"napari-latent: {warning.message}")
    return shown
