"""Alphas of a traversal: ``START:STOP:N`` or a list, checks, and the baseline frame."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ...errors import UserInputError

_ALPHA_HELP = "use START:STOP:N (N evenly spaced values, both ends included, e.g. 0:50:15) or a comma list (0,10,20)"


# -- alphas -------------------------------------------------------------------------------------

def _number(text: str, whole: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise UserInputError(f"alphas {whole!r}: {text.strip()!r} is not a number; {_ALPHA_HELP}") from None
    if not math.isfinite(value):
        raise UserInputError(f"alphas {whole!r}: {text.strip()!r} is not a finite number")
    return value


def parse_alphas(text: str | Sequence[float] | np.ndarray) -> np.ndarray:
    """Parse alphas written as ``START:STOP:N`` or as a comma list.

    Parameters
    ----------
    text : str or sequence of float
        ``"0:50:15"`` is ``numpy.linspace(0, 50, 15)`` (both ends included; the MS paper's
        setting); ``"0,10,25"`` is the listed values. Numbers may be negative or in
        exponent notation. A sequence of numbers is checked and passed through.

    Returns
    -------
    numpy.ndarray
        float64 alphas in the order given.

    Raises
    ------
    UserInputError
        For empty input, a part that is not a number, ``N`` that is not an integer of at
        least 2, a wrong number of ``:`` parts, non-finite or repeated values.
    """
    if not isinstance(text, str):
        values = np.asarray(text, dtype=np.float64).ravel()
        return check_alphas(values)
    raw = text.strip()
    if not raw:
        raise UserInputError(f"no alphas given; {_ALPHA_HELP}")
    if ":" in raw:
        parts = raw.split(":")
        if len(parts) != 3:
            raise UserInputError(f"alphas {raw!r}: expected three parts START:STOP:N, got {len(parts)}; {_ALPHA_HELP}")
        start, stop = _number(parts[0], raw), _number(parts[1], raw)
        count_text = parts[2].strip()
        try:
            count = int(count_text)
        except ValueError:
            raise UserInputError(f"alphas {raw!r}: N = {count_text!r} must be a whole number of steps") from None
        if count < 2:
            raise UserInputError(f"alphas {raw!r}: N must be at least 2 (use a single number for one alpha)")
        if count > 10_000:
            raise UserInputError(f"alphas {raw!r}: {count} steps is too many (at most 10000)")
        if start == stop:
            raise UserInputError(f"alphas {raw!r}: START and STOP are equal")
        return np.linspace(start, stop, count)
    parts = raw.split(",")
    if any(not p.strip() for p in parts):
        raise UserInputError(f"alphas {raw!r}: an empty item in the list; {_ALPHA_HELP}")
    return check_alphas(np.array([_number(p, raw) for p in parts], dtype=np.float64))


def check_alphas(values: np.ndarray) -> np.ndarray:
    """Check alphas: at least one, finite, no repeats. Returns float64 in the given order."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise UserInputError(f"no alphas given; {_ALPHA_HELP}")
    if not np.all(np.isfinite(values)):
        raise UserInputError("alphas must be finite numbers")
    if len(np.unique(values)) != len(values):
        raise UserInputError(f"alphas must be distinct, got {values.tolist()}")
    return values


def baseline_index(latent_alphas: np.ndarray) -> int:
    """Index of alpha 0, or of the alpha nearest to 0 (the first of a tie)."""
    latent_alphas = np.asarray(latent_alphas, dtype=np.float64)
    if latent_alphas.size == 0:
        return 0
    return int(np.argmin(np.abs(latent_alphas)))


