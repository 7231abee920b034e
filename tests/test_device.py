"""Device selection."""

from __future__ import annotations

import pytest
import torch

from napari_latent.device import available_devices, get_device
from napari_latent.errors import UserInputError


def test_auto_resolves_to_an_available_device() -> None:
    device = get_device("auto")
    if not torch.cuda.is_available():
        assert device.type in ("cpu", "mps")
    assert get_device("cpu") == torch.device("cpu")
    assert get_device(torch.device("cpu")) == torch.device("cpu")
    assert available_devices()[:2] == ["auto", "cpu"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
def test_unavailable_or_unknown_devices_are_clear_errors() -> None:
    with pytest.raises(UserInputError, match="CUDA is not available"):
        get_device("cuda")
    with pytest.raises(UserInputError, match="unknown device"):
        get_device("quantum")
