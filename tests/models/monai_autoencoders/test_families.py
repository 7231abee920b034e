"""The MONAI families without training: registration, settings, intensity mapping, MONAI missing."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from napari_latent.errors import UserInputError
from napari_latent.models.base import build_model, model_names, trainable_model_names
from napari_latent.models.importers import importer_names
from napari_latent.models.monai_autoencoders import config as monai_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = {"image_size": 32, "base_channels": 8, "max_channels": 32, "latent_dim": 8}


def test_registered_as_imported_families() -> None:
    assert {"monai-autoencoderkl", "monai-vqvae"} <= set(model_names())
    assert not {"monai-autoencoderkl", "monai-vqvae"} & set(trainable_model_names())
    assert "monai" in importer_names()


def test_importing_the_plugin_modules_does_not_import_monai() -> None:
    code = ("import sys, napari_latent.models.monai_autoencoders.importer; "
            "from napari_latent.models.base import model_names; model_names(); print('monai' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_monai_is_one_line(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "monai", None)
    monkeypatch.setitem(sys.modules, "monai.networks", None)
    assert not monai_config.monai_available()
    with pytest.raises(UserInputError) as info:
        build_model("monai-vqvae", **TINY)
    assert str(info.value) == "MONAI is not installed: pip install 'napari-latent[monai]'"


@pytest.mark.parametrize("name", ["monai-autoencoderkl", "monai-vqvae"])
def test_tiny_network_from_the_shared_settings(name: str) -> None:
    pytest.importorskip("monai")
    model = build_model(name, **TINY)
    assert model.latent_shape() == (8, 8, 8) and model.latent_dim() == 512
    assert model.config.network["spatial_dims"] == 2
    assert type(model.config).from_json(model.config.to_json()) == model.config
    images = model.decode(model.sample_latent(2, torch.Generator().manual_seed(0)))
    assert images.shape == (2, 1, 32, 32)


def test_intensity_mapping_is_affine() -> None:
    pytest.importorskip("monai")
    torch.manual_seed(0)
    zero_one = build_model("monai-autoencoderkl", **TINY)
    symmetric = build_model("monai-autoencoderkl", **TINY, intensity_range="-1,1")
    symmetric.load_state_dict(zero_one.state_dict())
    codes = zero_one.sample_latent(2, torch.Generator().manual_seed(1))
    with torch.no_grad():
        raw = symmetric.decode(codes)  # the network's own output
        torch.testing.assert_close(zero_one.decode(codes), raw * 2 - 1)
        images = torch.rand(2, 1, 32, 32) * 2 - 1
        torch.testing.assert_close(zero_one.encode(images), symmetric.encode(images * 0.5 + 0.5))


@pytest.mark.parametrize(("settings", "match"), [
    ({"network": {"spatial_dims": 3}}, "only 2D"),
    ({"network": {"spatial_dims": 2, "in_channels": 1, "out_channels": 3}}, "single-channel"),
    ({"network": {"spatial_dims": 2, "latent_channels": 4}, "latent_dim": 8}, "disagrees"),
    ({"intensity_range": "1,0"}, "low < high"),
    ({"intensity_range": "zero,one"}, "two numbers"),
])
def test_bad_settings_are_one_line(settings: dict, match: str) -> None:
    with pytest.raises(UserInputError, match=match) as info:
        build_model("monai-autoencoderkl", **{**TINY, **settings})
    assert "\n" not in str(info.value)


def test_vqvae_whose_decoder_does_not_return_the_image_size() -> None:
    pytest.importorskip("monai")
    network = {"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "channels": [8], "num_res_channels": [8],
               "num_res_layers": 1, "downsample_parameters": [[2, 4, 1, 1]],
               "upsample_parameters": [[2, 4, 1, 0, 0]], "embedding_dim": 4}
    with pytest.raises(UserInputError, match="decodes to 34") as info:
        build_model("monai-vqvae", image_size=32, network=network, latent_dim=4)
    assert "\n" not in str(info.value)
