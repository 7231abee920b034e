"""Our re-implementation against the official code's outputs on the fixture snapshot (fixtures/stylegan2-ada)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import napari_latent as nl
from napari_latent.models.checkpoint import load_model, read_checkpoint, save_checkpoint
from napari_latent.models.importers import find_importer, import_model
from napari_latent.models.stylegan2_ada.model import StyleGAN2ADA

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FIXTURES = Path(os.environ.get("NAPARI_LATENT_SG2_FIXTURES",
                               Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "stylegan2-ada"))
SNAPSHOT = FIXTURES / "network-snapshot-000000.pkl"
WS_TOLERANCE = 1e-5
IMAGE_TOLERANCE = 1e-4

if not SNAPSHOT.is_file():
    pytest.skip(f"the StyleGAN2-ADA fixture is not at {FIXTURES}", allow_module_level=True)


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "reference.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def models() -> dict[str, StyleGAN2ADA]:
    return {"": import_model(SNAPSHOT), "G_": import_model(SNAPSHOT, "stylegan2-ada", network="G")}


def max_abs(a: torch.Tensor, b: np.ndarray) -> float:
    return float(np.abs(a.detach().numpy() - b).max())


def check_outputs(model: StyleGAN2ADA, reference: dict[str, np.ndarray], prefix: str = "") -> None:
    z = torch.from_numpy(reference["z"])
    psi = float(reference["truncation_psi"])
    with torch.no_grad():
        ws = model.mapping(z)
        ws_trunc = model.mapping(z, truncation_psi=psi)
        assert max_abs(ws, reference[prefix + "ws"]) < WS_TOLERANCE
        assert max_abs(ws_trunc, reference[prefix + "ws_trunc"]) < WS_TOLERANCE
        for key, styles, noise in (("img", ws, "const"), ("img_trunc", ws_trunc, "const"),
                                   ("img_random_noise_off", ws, "none")):
            images = model.synthesis(torch.from_numpy(reference[prefix + ("ws" if styles is ws else "ws_trunc")]),
                                     noise)
            assert images.shape == (4, 1, 64, 64)
            assert max_abs(images, reference[prefix + key]) < IMAGE_TOLERANCE, key


@pytest.mark.parametrize("prefix", ["", "G_"])
def test_mapping_and_synthesis_match_the_official_code(models, reference, prefix) -> None:
    check_outputs(models[prefix], reference, prefix)


def test_discriminator_matches_the_official_code(models, reference) -> None:
    model = models[""]
    images = torch.from_numpy(reference["img"])
    with torch.no_grad():
        single = torch.cat([model.discriminate(images[i:i + 1]) for i in range(4)])
        batch = model.discriminate(images)
    assert max_abs(single, reference["D_logits"][:, 0]) < IMAGE_TOLERANCE
    assert max_abs(batch, reference["D_logits_batch4"][:, 0]) < IMAGE_TOLERANCE


def test_rebuilt_weights_equal_the_state_dicts(models) -> None:
    for prefix, module, name in (("", "generator", "G_ema"), ("", "discriminator", "D")):
        expected = load_file(FIXTURES / f"{name}.safetensors")
        got = getattr(models[prefix], module).state_dict()
        assert sorted(got) == sorted(expected)
        for key, value in expected.items():
            assert torch.equal(got[key], value), key
    # G differs from G_ema in every tensor
    ema, g = models[""].generator.state_dict(), models["G_"].generator.state_dict()
    assert all(not torch.equal(ema[k], g[k]) for k in ema if not k.endswith("resample_filter"))


def test_the_model_describes_itself(models) -> None:
    model = models[""]
    assert model.name == "stylegan2-ada" and model.family == "gan" and not model.trainable()
    assert model.spaces == ("z", "w", "w+") and model.analysis_space == "w"
    assert model.num_ws == 10 and model.latent_dim("w+") == 640 and model.latent_dim("z") == 64
    assert torch.equal(model.mean_latent("w")[0], load_file(FIXTURES / "G_ema.safetensors")["mapping.w_avg"])
    assert not model.prior("z").mean_is_typical and model.prior("z").standard_normal
    weights = model.latent_weights("w")
    assert weights.layout == "shared" and len(weights.inputs) == 10
    assert weights.inputs[0].shape == (64, 64)  # b4.conv1
    assert weights.inputs[1].shape == (64 + 64, 64)  # b4.torgb and b8.conv0 share a row
    assert model.latent_weights("w+").layout == "blocks"
    assert model.noise_inputs() == [(4, 4)] + [(r, r) for r in (8, 16, 32, 64) for _ in range(2)]
    assert find_importer(SNAPSHOT).name == "stylegan2-ada"
    assert model.training_info["imported"]["format"] == "stylegan2-ada"


def test_load_model_opens_the_snapshot(reference) -> None:
    model = load_model(SNAPSHOT, device="cpu")
    assert isinstance(model, StyleGAN2ADA) and model.fingerprint
    check_outputs(model, reference)


@pytest.fixture(scope="module")
def converted(models, tmp_path_factory) -> StyleGAN2ADA:
    path = save_checkpoint(tmp_path_factory.mktemp("sg2") / "model.safetensors", models[""],
                           training=models[""].training_info)
    return load_model(path, device="cpu")


def test_the_converted_checkpoint_gives_the_same_outputs(models, converted, reference) -> None:
    assert converted.config == models[""].config
    assert converted.fingerprint == models[""].fingerprint
    check_outputs(converted, reference)
    codes = converted.sample_latent(3, torch.Generator().manual_seed(0))
    with torch.no_grad():
        images = converted.decode(codes)
        assert torch.equal(images, models[""].decode(codes))
    assert images.shape == (3, 1, 64, 64) and images.abs().max() <= 1
    header = read_checkpoint(converted.source_path).header
    assert header["model"] == "stylegan2-ada" and header["training"]["imported"]["file"] == SNAPSHOT.name


def test_decode_clamps_with_a_straight_through_gradient(converted) -> None:
    w = converted.mean_latent("w").requires_grad_(True)
    ws = w[:, None].expand(-1, converted.num_ws, -1)
    raw = converted.synthesis(ws)
    assert raw.abs().max() > 1  # the fixture's random weights overshoot
    images = converted.decode(w, "w")
    assert images.abs().max() <= 1
    (grad,) = torch.autograd.grad(images.sum(), w)
    (expected,) = torch.autograd.grad(raw.sum(), w)
    assert torch.allclose(grad, expected, atol=1e-5)


def test_inversion_discovery_and_traversal_work_on_the_converted_model(converted) -> None:
    phantom = nl.make_phantom(size=32, seed=3)
    volume = nl.Volume(phantom.image, phantom.affine, name="phantom32")
    codes = nl.invert(converted, volume, "optimize", steps=2)
    assert codes.space == "w" and codes.codes.shape[1] == 64
    directions = nl.discover(converted, "sefa", space="w", count=2)
    assert directions.vectors.shape == (2, 64)
    traversal = nl.traverse(converted, codes, directions, "-2:2:3", index=0, source=volume)
    assert np.isfinite(traversal.images).all() and traversal.images.shape[0] == 3
