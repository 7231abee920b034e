"""Fixed intensity windows: CT presets and the ``LOW:HIGH`` / preset / ``auto`` text form.

By default a :class:`~napari_latent.volumes.slicing.SliceSpec` normalises every volume by
percentiles of its own foreground (right for MR, whose units are arbitrary). CT is
calibrated in Hounsfield units, so a fixed window maps the same HU to the same model value
in every subject. The presets are the usual radiological windows, stated as width ``W`` and
level ``L``; the window is ``(L - W/2, L + W/2)``.

>>> parse_window("lung")
('lung', (-1350.0, 150.0))
>>> parse_window("-1000:400")
(None, (-1000.0, 400.0))
>>> parse_window("auto")
(None, None)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import VolumeError

#: The word for the default per-volume percentile window.
AUTO = "auto"


@dataclass(frozen=True)
class WindowPreset:
    """A named window given as width and level, in Hounsfield units.

    Parameters
    ----------
    name : str
        Identifier (lower case, underscores).
    width : float
        Window width ``W``.
    level : float
        Window centre ``L``.
    description : str
        What the window shows.
    """

    name: str
    width: float
    level: float
    description: str

    @property
    def low(self) -> float:
        """The intensity mapped to -1: ``L - W/2``."""
        return self.level - self.width / 2.0

    @property
    def high(self) -> float:
        """The intensity mapped to +1: ``L + W/2``."""
        return self.level + self.width / 2.0

    @property
    def values(self) -> tuple[float, float]:
        """``(low, high)``."""
        return self.low, self.high


#: CT window presets by name.
PRESETS: dict[str, WindowPreset] = {p.name: p for p in (
    WindowPreset("lung", 1500.0, -600.0, "lung parenchyma and airways"),
    WindowPreset("mediastinum", 350.0, 50.0, "heart, vessels and mediastinal soft tissue"),
    WindowPreset("soft_tissue", 400.0, 40.0, "abdominal and general soft tissue"),
    WindowPreset("bone", 1800.0, 400.0, "cortical and trabecular bone"),
    WindowPreset("brain", 80.0, 40.0, "grey and white matter of the brain"),
)}


def _preset_key(text: str) -> str:
    return "_".join(text.strip().lower().replace("-", " ").replace("_", " ").split())


def check_window_values(values: tuple[float, float] | list[float], what: str = "fixed window") -> tuple[float, float]:
    """Two finite numbers with low < high, as floats.

    Raises
    ------
    VolumeError
        If ``values`` is not two finite numbers in increasing order.
    """
    try:
        low, high = (float(v) for v in values)
    except (TypeError, ValueError):
        raise VolumeError(f"{what} must be two numbers (low, high), got {values!r}") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise VolumeError(f"{what} ({low:g}, {high:g}) must be finite numbers")
    if not low < high:
        raise VolumeError(f"{what} ({low:g}, {high:g}) needs low < high")
    return low, high


def window_forms() -> str:
    """The accepted forms, for messages and help texts."""
    return f"LOW:HIGH (e.g. -1000:400), {AUTO} (per-volume percentiles) or a preset: {', '.join(PRESETS)}"


def parse_window(text: str) -> tuple[str | None, tuple[float, float] | None]:
    """Read a window given as ``LOW:HIGH``, a preset name or ``auto``.

    Parameters
    ----------
    text : str
        ``"-1000:400"`` (numbers in the source's units), a preset name (case-insensitive;
        ``soft-tissue``, ``soft tissue`` and ``soft_tissue`` are the same) or ``"auto"``.

    Returns
    -------
    name : str or None
        The preset's name, or None for ``LOW:HIGH`` and ``auto``.
    values : tuple of float or None
        ``(low, high)`` mapped to -1 and +1, or None for ``auto`` (per-volume
        percentiles, the default).

    Raises
    ------
    VolumeError
        One line naming the accepted forms and presets when the text is none of them.
    """
    raw = str(text).strip()
    key = _preset_key(raw)
    if key == AUTO:
        return None, None
    if key in PRESETS:
        return key, PRESETS[key].values
    if raw.count(":") == 1:
        low_text, high_text = raw.split(":")
        try:
            values = float(low_text), float(high_text)
        except ValueError:
            values = None
        if values is not None:
            return None, check_window_values(values, f"window {raw!r}")
    raise VolumeError(f"unknown intensity window {raw!r}; use {window_forms()}")


def format_window(name: str | None, values: tuple[float, float] | None) -> str:
    """The text :func:`parse_window` reads back: a preset name, ``LOW:HIGH`` or ``auto``."""
    if values is None:
        return AUTO
    if name is not None and name in PRESETS and PRESETS[name].values == tuple(values):
        return name
    return f"{values[0]:g}:{values[1]:g}"
