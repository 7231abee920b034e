"""SeFa: the eigenvectors of the row-normalised first weight, for every model family."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_latent.errors import UserInputError
from napari_latent.latent.discovery import discover
from napari_latent.models.base import build_model, model_fingerprint
from napari_latent.models.stylegan import SynthesisLayer, ToGray

SMALL = {"image_size": 32, "base_channels": 8, "max_channels": 32}


def tiny(name: str, **settings):
    torch.manual_seed(0)
    model = build_model(name, **SMALL, **settings)
    model.fingerprint = model_fingerprint(model)
    return model


def reference(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """genforce/sefa ``factorize_weight``: rows of A to unit length, eigen-decomposition of A^T A (descending)."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    values, vectors = np.linalg.eigh(a.T @ a)
    return values[::-1], vectors[:, ::-1].T


def assert_matches(found, values: np.ndarray, vectors: np.ndarray) -> None:
    count = len(found)
    cos = np.abs(np.sum(found.vectors.double().numpy() * vectors[:count], axis=1))
    assert np.all(cos > 0.9999), cos
    np.testing.assert_allclose(found.scores["eigenvalue"], values[:count], rtol=1e-5)


def test_vae_factorises_from_latent() -> None:
    model = tiny("vae", latent_dim=8)
    with torch.no_grad():  # A^T read off the layer's response to unit codes
        a = (model.from_latent(torch.eye(8)) - model.from_latent(torch.zeros(1, 8))).T.double().numpy()
    found = discover(model, "sefa", count=5)
    assert_matches(found, *reference(a))
    assert found.code_std == [1.0] * 5 and found.model_fingerprint == model.fingerprint


def test_dcgan_factorises_the_first_transposed_convolution() -> None:
    model = tiny("dcgan", latent_dim=8)
    with torch.no_grad():  # every 4x4 output unit of the first layer is one row of A
        a = model.generator.net[0](torch.eye(8).view(8, 8, 1, 1)).flatten(1).T.double().numpy()
    assert_matches(discover(model, "sefa", count=6), *reference(a))


def test_stylegan_w_stacks_every_style_affine() -> None:
    model = tiny("stylegan", latent_dim=16, w_dim=16, mapping_layers=2)
    affines = [m.affine.weight for m in model.generator.synthesis.modules() if isinstance(m, SynthesisLayer | ToGray)]
    assert len(affines) == (model.num_ws - 1) + len(model.generator.synthesis.blocks)  # 3x3 convs + toGray
    a = torch.cat(affines).detach().double().numpy()  # raw weights: the gains vanish with the row normalisation
    found = discover(model, "sefa", count=8)
    assert found.space == "w"
    assert_matches(found, *reference(a))
    assert all(s > 0 for s in found.code_std)
    coarse = discover(model, "sefa", count=4, layers="0-2")  # inputs 0-2: the 3x3 convs 0-2 and the 4x4 toGray
    blocks = model.generator.synthesis.blocks
    layers = [blocks[0].convs[0], blocks[0].to_gray, blocks[1].convs[0], blocks[1].convs[1]]
    assert_matches(coarse, *reference(torch.cat([m.affine.weight for m in layers]).detach().double().numpy()))


def test_stylegan_w_plus_factorises_each_style_input_on_its_own() -> None:
    model = tiny("stylegan", latent_dim=16, w_dim=16, mapping_layers=2)
    per_input: list[list[torch.Tensor]] = [[] for _ in range(model.num_ws)]
    index = 0
    for block in model.generator.synthesis.blocks:
        for conv in block.convs:
            per_input[index].append(conv.affine.weight)
            index += 1
        per_input[index].append(block.to_gray.affine.weight)  # shared with the next block's first conv
    eigen = [reference(torch.cat(ws).detach().double().numpy()) for ws in per_input]
    pairs = sorted(((v, i, vec) for i, (vals, vecs) in enumerate(eigen) for v, vec in zip(vals, vecs)),
                   key=lambda p: -p[0])[:10]
    found = discover(model, "sefa", space="w+", count=10)
    np.testing.assert_allclose(found.scores["eigenvalue"], [p[0] for p in pairs], rtol=1e-5)
    assert found.info["style_input"] == [p[1] for p in pairs]
    blocks = found.vectors.view(10, model.num_ws, 16)
    for k, (_, i, vec) in enumerate(pairs):
        assert float(blocks[k].abs().sum()) == pytest.approx(float(blocks[k, i].abs().sum()))
        assert abs(float(blocks[k, i].double() @ torch.from_numpy(vec.copy()))) > 0.9999


def test_stylegan_z_factorises_the_first_mapping_layer() -> None:
    model = tiny("stylegan", latent_dim=16, w_dim=16, mapping_layers=2)
    a = model.generator.mapping.layers[0].weight.detach().double().numpy()
    found = discover(model, "sefa", space="z", count=4)
    assert_matches(found, *reference(a))
    assert found.code_std == [1.0] * 4
    with pytest.raises(UserInputError, match="layers="):
        discover(model, "sefa", space="z", count=4, layers=[0])


def test_vqvae_puts_one_channel_vector_at_every_position() -> None:
    model = tiny("vqvae", code_dim=4, latent_resolution=4, codebook_size=16)
    values, vectors = reference(model.from_code.weight[:, :, 0, 0].detach().double().numpy())
    found = discover(model, "sefa", count=3)
    maps = found.vectors.view(3, 4, 16)
    assert torch.allclose(maps, maps[:, :, :1].expand(-1, -1, 16))
    assert_matches(found, values, np.repeat(vectors[:, :, None], 16, axis=2).reshape(4, 64) / 4.0)
    with pytest.raises(UserInputError, match="code_dim"):
        discover(model, "sefa", count=5)
