"""512-pixel models: every family builds, decodes, encodes and round-trips its checkpoint at 512 px."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from napari_latent.cli import build_parser, main
from napari_latent.errors import UserInputError
from napari_latent.models.base import SUPPORTED_IMAGE_SIZES, build_model
from napari_latent.models.checkpoint import load_model, save_checkpoint
from napari_latent.volumes import SliceSpec

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Narrow networks keep a 512-pixel forward pass to a fraction of a second.
NARROW = {"image_size": 512, "base_channels": 2, "max_channels": 8}
FAMILIES = {
    "vae": {**NARROW, "latent_dim": 8},
    "introvae": {**NARROW, "latent_dim": 8},
    "vqvae": {**NARROW, "code_dim": 4, "codebook_size": 16, "latent_resolution": 32},
    "dcgan": {**NARROW, "latent_dim": 8},
    "stylegan": {**NARROW, "latent_dim": 8, "w_dim": 8, "mapping_layers": 1},
}


def test_512_is_a_supported_size() -> None:
    assert SUPPORTED_IMAGE_SIZES[-1] == 512
    args = build_parser().parse_args(["train", "data", "--model", "vae", "--out", "m.safetensors", "--size", "512"])
    assert args.size == 512
    with pytest.raises(UserInputError, match="image size 1024 is not supported; use one of 32, 64, 128, 256, 512"):
        build_model("vae", image_size=1024)


def test_train_refuses_a_size_beyond_512(capsys, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(tmp_path), "--model", "vae", "--out", str(tmp_path / "m.safetensors"), "--size", "1024"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 1024" in err and "256, 512" in err


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_each_family_works_at_512_pixels(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(name, **FAMILIES[name]).eval()
    space = model.analysis_space
    codes = model.sample_latent(1, torch.Generator().manual_seed(1), model.default_space)
    codes = model.to_space(codes, model.default_space, space)
    with torch.no_grad():
        images = model.decode(codes, space)
    assert images.shape == (1, 1, 512, 512)
    assert torch.isfinite(images).all() and float(images.std()) > 0
    if model.has_encoder:
        with torch.no_grad():
            found = model.encode(images, model.default_space)
        assert found.shape == (1, model.latent_dim(model.default_space))
    if name == "stylegan":
        assert model.num_ws == 16  # 2 * log2(512) - 2 style inputs
        assert model.latent_dim("w+") == 16 * 8
    if name == "vqvae":
        assert model.latent_shape() == (4, 32, 32)
    path = save_checkpoint(tmp_path / f"{name}.safetensors", model, SliceSpec(size=512))
    loaded = load_model(path, device="cpu")
    assert loaded.image_size == 512 and loaded.slice_spec.size == 512
    with torch.no_grad():
        torch.testing.assert_close(loaded.decode(codes, space), images, rtol=0, atol=0)
