"""Fixtures of the napari tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from napari_latent.gui.stores import TRAVERSALS_ENV


@pytest.fixture(autouse=True)
def traversal_store_root(tmp_path_factory, monkeypatch) -> Path:
    """The GUI's temporary traversal stores go to a fresh temporary folder, never the user's cache."""
    folder = tmp_path_factory.mktemp("traversal_stores")
    monkeypatch.setenv(TRAVERSALS_ENV, os.fspath(folder))
    return folder
