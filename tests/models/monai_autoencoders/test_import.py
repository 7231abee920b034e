"""Importing MONAI-trained AutoencoderKL and VQVAE: same decodes and encodes as MONAI, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from napari_latent.errors import CheckpointError, UserInputError
from napari_latent.models.base import GenerativeModel
from napari_latent.models.checkpoint import load_model, save_checkpoint
from napari_latent.models.importers import IMPORTERS, find_importer, import_model

from .conftest import KL_ARGS, SIZE, Trained

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def one_line(info: pytest.ExceptionInfo) -> str:
    message = str(info.value)
    assert "\n" not in message and message
    return message


def monai_kl_codes(trained: Trained) -> torch.Tensor:
    with torch.no_grad():
        return trained.net.encode(trained.images[:6])[0]


def check_kl_matches(model: GenerativeModel, trained: Trained) -> None:
    z = monai_kl_codes(trained)
    with torch.no_grad():
        expected = trained.net.decode(z) * 2 - 1  # MONAI's [0, 1] as our [-1, 1]
        ours = model.decode(z.flatten(1))
        assert (ours - expected).abs().max() <= 1e-5
        encoded = model.encode(trained.images[:6] * 2 - 1)
        assert (encoded - z.flatten(1)).abs().max() <= 1e-5
        mean, logvar = model.posterior(trained.images[:6] * 2 - 1)
        mu, sigma = trained.net.encode(trained.images[:6])
        assert (mean - mu.flatten(1)).abs().max() <= 1e-5
        assert (logvar - 2 * torch.log(sigma).flatten(1)).abs().max() <= 1e-5


def test_autoencoderkl_import_matches_monai(trained_kl: Trained, tmp_path: Path) -> None:
    model = import_model(trained_kl.weights, config=trained_kl.config, image_size=SIZE)
    assert model.name == "monai-autoencoderkl" and not model.trainable() and model.has_posterior
    assert model.latent_shape() == (2, 8, 8) and model.latent_dim() == 128
    assert model.training_info["imported"]["format"] == "monai"
    check_kl_matches(model, trained_kl)
    weights = model.latent_weights()
    assert weights.layout == "tiled" and weights.positions == 64
    torch.testing.assert_close(weights.inputs[0], trained_kl.net.post_quant_conv.conv.weight[:, :, 0, 0])
    # through our checkpoint format
    path = save_checkpoint(tmp_path / "kl.safetensors", model)
    loaded = load_model(path, device="cpu")
    assert loaded.name == model.name and loaded.config == model.config
    check_kl_matches(loaded, trained_kl)


def test_vqvae_import_matches_monai(trained_vq: Trained, tmp_path: Path) -> None:
    model = import_model(trained_vq.weights, config=trained_vq.config, image_size=SIZE)
    assert model.name == "monai-vqvae" and not model.has_posterior and not model.prior().standard_normal
    assert model.latent_shape() == (4, 8, 8)
    images = trained_vq.images[:6]
    loaded = load_model(save_checkpoint(tmp_path / "vq.safetensors", model), device="cpu")
    for ours in (model, loaded):
        with torch.no_grad():
            z_e = trained_vq.net.encode(images)
            expected = trained_vq.net.decode(trained_vq.net.quantize(z_e)[0]) * 2 - 1
            assert (ours.encode(images * 2 - 1) - z_e.flatten(1)).abs().max() <= 1e-5
            assert (ours.decode(z_e.flatten(1)) - expected).abs().max() <= 1e-5
            # a sample is a map of codebook vectors, decoded as MONAI decodes their indices
            codes = ours.sample_latent(3, torch.Generator().manual_seed(0))
            index_map = trained_vq.net.quantizer.quantize(codes.view(3, 4, 8, 8))
            expected = trained_vq.net.decode_samples(index_map) * 2 - 1
            assert (ours.decode(codes) - expected).abs().max() <= 1e-5
    with pytest.raises(UserInputError, match="linear first layer") as info:
        model.latent_weights()
    one_line(info)
    # decoding never updates the codebook, even in training mode
    before = trained_vq.net.state_dict()
    model.train()
    model.decode(model.sample_latent(2))
    assert all(torch.equal(before[k], v) for k, v in model.network.state_dict().items())


def test_bundle_config_and_weight_wrappers(trained_kl: Trained, tmp_path: Path) -> None:
    state = trained_kl.net.state_dict()
    variants = {
        "wrapped.pt": {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3},
        "model_key.pth": {"model": state},
    }
    for name, obj in variants.items():
        torch.save(obj, tmp_path / name)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "weights.safetensors"))
    for name in (*variants, "weights.safetensors"):
        model = import_model(tmp_path / name, config=trained_kl.bundle, image_size=SIZE)
        check_kl_matches(model, trained_kl)
    # the same bundle with the network named
    model = import_model(trained_kl.weights, config=trained_kl.bundle, network="network_def", image_size=SIZE)
    check_kl_matches(model, trained_kl)
    # a YAML bundle
    yaml = pytest.importorskip("yaml")
    bundle = tmp_path / "inference.yaml"
    bundle.write_text(yaml.safe_dump(json.loads(trained_kl.bundle.read_text())))
    check_kl_matches(import_model(trained_kl.weights, config=bundle, image_size=SIZE), trained_kl)


def test_intensity_range_minus_one_one(trained_kl: Trained) -> None:
    model = import_model(trained_kl.weights, config=trained_kl.config, image_size=SIZE, intensity_range="-1,1")
    z = monai_kl_codes(trained_kl)
    with torch.no_grad():
        torch.testing.assert_close(model.decode(z.flatten(1)), trained_kl.net.decode(z), atol=1e-6, rtol=0)


def test_sniff_and_load_model_without_config(trained_kl: Trained, tmp_path: Path) -> None:
    assert find_importer(trained_kl.weights).name == "monai"
    ours = save_checkpoint(tmp_path / "ours.safetensors",
                           import_model(trained_kl.weights, config=trained_kl.config, image_size=SIZE))
    assert not IMPORTERS.get("monai").sniff(ours)
    with pytest.raises(CheckpointError, match=r"not a napari-latent model file.*format='monai', config=") as info:
        load_model(trained_kl.weights, device="cpu")
    one_line(info)


def write(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj))
    return path


def test_bad_inputs_are_one_line_errors(trained_kl: Trained, tmp_path: Path) -> None:
    good = {"_target_": "AutoencoderKL", **KL_ARGS}
    state = trained_kl.net.state_dict()
    weights = trained_kl.weights

    def refused(error: type[Exception], match: str, path: Path = weights, **options: object) -> None:
        with pytest.raises(error, match=match) as info:
            import_model(path, format="monai", **{"image_size": SIZE, **options})
        one_line(info)

    refused(UserInputError, "config=")
    refused(UserInputError, "no such network config", config=tmp_path / "missing.json")
    refused(CheckpointError, "unknown architecture 'DiffusionModelUNet'",
            config=write(tmp_path / "unet.json", {**good, "_target_": "DiffusionModelUNet"}))
    refused(UserInputError, "only 2D", config=write(tmp_path / "3d.json", {**good, "spatial_dims": 3}))
    refused(UserInputError, "single-channel", config=write(tmp_path / "rgb.json", {**good, "in_channels": 3}))
    refused(UserInputError, "refuses these constructor arguments",
            config=write(tmp_path / "typo.json", {**good, "latent_chanels": 2}))
    refused(UserInputError, "expression", config=write(tmp_path / "expr.json", {**good, "channels": "$[8, 16, 16]"}))
    refused(UserInputError, "no AutoencoderKL or VQVAE network; choose one with network=",
            config=write(tmp_path / "none.json", {"net": {"_target_": "UNet"}}))
    refused(UserInputError, "several", config=write(tmp_path / "two.json", {"a": good, "b": good}))
    refused(UserInputError, "no network 'c'", config=write(tmp_path / "two.json", {"a": good, "b": good}), network="c")
    (tmp_path / "bad.json").write_text("{oops")
    refused(UserInputError, "not a valid config", config=tmp_path / "bad.json")
    refused(UserInputError, "no option", config=trained_kl.config, colour="red")
    # weights that do not fit
    refused(CheckpointError, r"has shape \(", config=write(tmp_path / "wide.json", {**good, "latent_channels": 3}))
    missing = tmp_path / "missing.pt"
    torch.save({k: v for k, v in state.items() if "decoder" not in k}, missing)
    refused(CheckpointError, r"missing \(decoder\.", missing, config=trained_kl.config)
    extra = tmp_path / "extra.pt"
    torch.save({**state, "head.weight": torch.zeros(1)}, extra)
    refused(CheckpointError, r"1 unexpected \(head\.weight\)", extra, config=trained_kl.config)
    pickled = tmp_path / "pickled.pt"
    torch.save({"state_dict": state, "optimiser": object()}, pickled)
    refused(CheckpointError, "not a weights-only PyTorch state dict", pickled, config=trained_kl.config)
    refused(UserInputError, "intensity range", config=trained_kl.config, intensity_range="0")
    refused(UserInputError, "image size 48 is not supported", config=trained_kl.config, image_size=48)
