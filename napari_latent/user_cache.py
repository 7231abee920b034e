"""The folders napari-latent keeps under the user's cache folder."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_folder(name: str, environment_variable: str) -> Path:
    """``$ENVIRONMENT_VARIABLE`` if set, else ``<user cache>/napari-latent/<name>``.

    The user cache folder is platformdirs' ``user_cache_dir("napari-latent")``
    (``~/.cache/napari-latent`` on Linux, ``~/Library/Caches/napari-latent`` on macOS,
    ``%LOCALAPPDATA%\\napari-latent\\Cache`` on Windows).
    """
    env = os.environ.get(environment_variable, "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("napari-latent", appauthor=False)) / name
