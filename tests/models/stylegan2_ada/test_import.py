"""Importing snapshots of other shapes (architectures, conditional, 3 channels) written by our test writer, and the
one-line refusals of snapshots that do not fit."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

from napari_latent.errors import CheckpointError, UserInputError
from napari_latent.models.base import build_model
from napari_latent.models.checkpoint import load_model, save_checkpoint
from napari_latent.models.importers import import_model
from napari_latent.models.stylegan2_ada.model import LUMINANCE_WEIGHTS, StyleGAN2ADA

from .snapshots import snapshot_bytes

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"image_size": 32, "base_channels": 8, "max_channels": 16, "latent_dim": 8, "w_dim": 8, "mapping_layers": 2,
        "d_mapping_layers": 2}


def tiny(**settings: Any) -> StyleGAN2ADA:
    torch.manual_seed(0)
    model = build_model("stylegan2-ada", **{**TINY, **settings})
    with torch.no_grad():  # make every parameter matter (random, not the zero/one initial values)
        for name, parameter in model.named_parameters():
            if name.endswith(("bias", "noise_strength")):
                parameter.add_(0.2 * torch.randn_like(parameter))
    return model.eval()


def official_kwargs(model: StyleGAN2ADA) -> tuple[dict, dict]:
    """The constructor arguments as the official train.py writes them (nested kwargs, unset fields left out)."""
    c = model.config
    g = {"z_dim": c.latent_dim, "w_dim": c.w_dim, "c_dim": c.c_dim, "img_resolution": c.image_size,
         "img_channels": c.img_channels, "mapping_kwargs": {"num_layers": c.mapping_layers},
         "synthesis_kwargs": {"channel_base": c.g_channel_base, "channel_max": c.g_channel_max,
                              "num_fp16_res": 0, "conv_clamp": c.conv_clamp, "architecture": c.architecture}}
    d = {"c_dim": c.c_dim, "img_resolution": c.image_size, "img_channels": c.img_channels,
         "architecture": c.d_architecture, "channel_base": c.g_channel_base, "channel_max": c.g_channel_max,
         "num_fp16_res": 0, "conv_clamp": c.d_conv_clamp, "block_kwargs": {},
         "mapping_kwargs": {"num_layers": c.d_mapping_layers}, "epilogue_kwargs": {"mbstd_group_size": 4}}
    return g, d


def write_snapshot(tmp_path: Path, model: StyleGAN2ADA, g_kwargs: dict | None = None, d_kwargs: dict | None = None,
                   name: str = "network-snapshot-000010.pkl", **kwargs: Any) -> Path:
    g, d = official_kwargs(model)
    path = tmp_path / name
    path.write_bytes(snapshot_bytes(model.generator, g_kwargs or g, model.discriminator, d_kwargs or d, **kwargs))
    return path


@pytest.mark.parametrize("settings", [
    {"architecture": "resnet", "d_architecture": "skip"},
    {"architecture": "orig", "d_architecture": "orig", "conv_clamp": 0.5, "d_conv_clamp": 0.5},
    {"img_channels": 3, "c_dim": 3, "class_index": 2},
], ids=["resnet-skip", "orig-clamp", "rgb-conditional"])
def test_snapshots_of_each_architecture_import_exactly(tmp_path, settings) -> None:
    source = tiny(**settings)
    path = write_snapshot(tmp_path, source, legacy=settings.get("architecture") == "orig")
    options = {"class_index": "2"} if source.config.c_dim else {}
    model = import_model(path, **options)
    channels = ("channel_base", "channel_max", "d_channel_base", "d_channel_max")
    c = source.config
    assert model.config == dataclasses.replace(c, **dict(zip(channels, [c.g_channel_base, c.g_channel_max] * 2)))
    for key, value in source.state_dict().items():
        if not key.endswith("w_avg"):
            assert torch.equal(model.state_dict()[key], value), key
    z = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model.mapping(z), source.mapping(z))
        ws = source.mapping(z, truncation_psi=0.5, truncation_cutoff=2)
        assert torch.equal(ws[:, 2:], source.mapping(z)[:, 2:]) and not torch.equal(ws[:, :2], source.mapping(z)[:, :2])
        assert torch.equal(model.synthesis(ws), source.synthesis(ws))
        images = model.synthesis(ws)
        assert images.shape == (4, source.config.img_channels, 32, 32)
        assert torch.equal(model.discriminate(images), source.discriminate(images))
        assert model.decode(z, "z").shape == (4, 1, 32, 32)


def test_three_channel_generators_are_grey_by_luminance_or_one_channel(tmp_path) -> None:
    source = tiny(img_channels=3)
    path = write_snapshot(tmp_path, source)
    w = source.mean_latent("w")
    with torch.no_grad():
        rgb = source.synthesis(w[:, None].expand(-1, source.num_ws, -1))
        luminance = sum(weight * rgb[:, i:i + 1] for i, weight in enumerate(LUMINANCE_WEIGHTS))
        for grey, expected in (("luminance", luminance), ("green", rgb[:, 1:2]), ("2", rgb[:, 2:3])):
            model = import_model(path, grey=grey)
            assert model.config.grey == grey
            assert torch.allclose(model.decode(w, "w"), expected.clamp(-1, 1), atol=1e-6), grey
    with pytest.raises(UserInputError, match="unknown grey choice"):
        import_model(path, grey="purple")


def test_a_conditional_generator_needs_a_class(tmp_path) -> None:
    source = tiny(c_dim=4, class_index=1)
    path = write_snapshot(tmp_path, source)
    with pytest.raises(UserInputError, match="conditional") as info:
        import_model(path)
    assert "\n" not in str(info.value) and "class_index" in str(info.value)
    with pytest.raises(UserInputError, match="out of range"):
        import_model(path, class_index=4)
    model = import_model(path, class_index=3)
    converted = load_model(save_checkpoint(tmp_path / "c.safetensors", model), device="cpu")
    assert converted.config.class_index == 3
    z = torch.randn(2, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        labels = torch.nn.functional.one_hot(torch.tensor([3, 3]), 4).float()
        assert torch.equal(converted.to_space(z, "z", "w+").view(2, -1, 8), source.mapping(z, labels))


def test_options_are_checked(tmp_path) -> None:
    path = write_snapshot(tmp_path, tiny())
    with pytest.raises(UserInputError, match="no option"):
        import_model(path, colour="red")
    with pytest.raises(UserInputError, match="G_ema or G"):
        import_model(path, network="D")
    with pytest.raises(UserInputError, match="number"):
        import_model(path, truncation_psi="lots")
    model = import_model(path, truncation_psi="0.5")
    assert model.config.truncation_psi == 0.5


def broken(kwargs: dict, path: list[str], value: Any) -> dict:
    kwargs = {k: dict(v) if isinstance(v, dict) else v for k, v in kwargs.items()}
    target = kwargs
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return kwargs


@pytest.mark.parametrize(("change", "match"), [
    ((["synthesis_kwargs", "architecture"], "fancy"), "unknown architecture 'fancy'"),
    ((["img_resolution"], 16), "resolution 16 is not supported"),
    ((["img_resolution"], 48), "resolution 48 is not supported"),
    ((["img_channels"], 2), "2 image channels are not supported"),
    ((["synthesis_kwargs", "channel_max"], 8), "has shape"),
    ((["mapping_kwargs", "num_layers"], 3), "lacks weights mapping.fc2.bias, mapping.fc2.weight"),
    ((["mapping_kwargs", "num_layers"], 1), "unexpected weights mapping.fc1.bias, mapping.fc1.weight"),
    ((["synthesis_kwargs", "magic"], 1), "unsupported synthesis network setting(s) magic"),
    ((["w_dim"], KeyError), "lack w_dim"),
])
def test_snapshots_that_do_not_fit_are_refused_in_one_line(tmp_path, change, match) -> None:
    source = tiny()
    g, _ = official_kwargs(source)
    path = write_snapshot(tmp_path, source, g_kwargs=broken(g, *change))
    with pytest.raises(CheckpointError) as info:
        import_model(path)
    message = str(info.value)
    assert match in message and "\n" not in message and path.name in message


def test_a_snapshot_without_a_discriminator_is_read(tmp_path) -> None:
    source = tiny(discriminator=False)
    path = write_snapshot(tmp_path, source)
    model = import_model(path)
    assert model.discriminator is None and not model.config.discriminator
    with pytest.raises(UserInputError, match="without its discriminator"):
        model.discriminate(torch.zeros(1, 1, 32, 32))


def test_config_validation_is_one_line() -> None:
    for settings, match in (({"image_size": 2048}, "image size 2048"), ({"img_channels": 4}, "4 image channels"),
                            ({"architecture": "x"}, "unknown architecture"), ({"class_index": 1}, "only for"),
                            ({"noise_mode": "loud"}, "noise mode")):
        with pytest.raises(UserInputError, match=match) as info:
            build_model("stylegan2-ada", **{**TINY, **settings})
        assert "\n" not in str(info.value)
    assert not build_model("stylegan2-ada", **TINY).trainable()
