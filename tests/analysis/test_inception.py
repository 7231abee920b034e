"""InceptionV3 features for FID from local safetensors weights."""

from __future__ import annotations

import pytest
import torch

from napari_latent.analysis import inception
from napari_latent.analysis.inception import InceptionFeatures
from napari_latent.errors import UserInputError
from tests.analysis._images import blurred, noisy, one_blas_thread, smooth_images  # noqa: F401


# ------------------------------------------------------------------------------------------
# InceptionV3 (structure only: the real weights cannot be downloaded here)
# ------------------------------------------------------------------------------------------
def test_inception_features_load_from_safetensors_and_are_called_fid(tmp_path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    state = inception._FIDInceptionV3().state_dict()
    assert "Mixed_7c.branch3x3dbl_3b.bn.running_var" in state  # pytorch-fid's key names
    state["fc.weight"] = torch.zeros(1008, 2048)  # the classifier of the original file is ignored
    path = tmp_path / "inception.safetensors"
    save_file(state, str(path))

    extractor = InceptionFeatures(path)
    assert extractor.name == "FID"
    features = extractor(smooth_images(2, 32, seed=15))
    assert features.shape == (2, 2048)
    assert features.dtype == torch.float64
    assert torch.isfinite(features).all()


def test_inception_features_refuse_pickles_and_foreign_weights(tmp_path) -> None:
    from safetensors.torch import save_file

    pickled = tmp_path / "inception.pth"
    pickled.write_bytes(b"not even read")
    with pytest.raises(UserInputError, match="safetensors"):
        InceptionFeatures(pickled)
    with pytest.raises(UserInputError, match="not found"):
        InceptionFeatures(tmp_path / "missing.safetensors")
    foreign = tmp_path / "foreign.safetensors"
    save_file({"encoder.weight": torch.zeros(3, 3)}, str(foreign))
    with pytest.raises(UserInputError, match="missing"):
        InceptionFeatures(foreign)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(UserInputError, match="cannot read"):
        InceptionFeatures(garbage)
