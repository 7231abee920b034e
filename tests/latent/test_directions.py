"""Directions: unit vectors, names, scores, one file, and clear errors on mismatches."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from napari_latent.errors import MismatchError, UserInputError
from napari_latent.latent.codes import LatentCodes
from napari_latent.latent.directions import Directions
from napari_latent.models.base import build_model, model_fingerprint

SMALL = {"image_size": 32, "base_channels": 8, "max_channels": 32}


def tiny_vae(seed: int = 0, latent_dim: int = 4):
    torch.manual_seed(seed)
    model = build_model("vae", latent_dim=latent_dim, **SMALL)
    model.fingerprint = model_fingerprint(model)
    return model


def make(model, vectors=None, **kwargs) -> Directions:
    if vectors is None:
        vectors = torch.tensor([[3.0, 0.0, 4.0, 0.0], [0.0, 2.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    return Directions(vectors, "z", model.name, model.fingerprint, "pca", **kwargs)


@pytest.fixture(scope="module")
def model():
    return tiny_vae()


def test_vectors_are_normalised_and_names_default_to_method_and_rank(model) -> None:
    found = make(model, scores={"explained_variance": [3.0, 2.0, 1.0]})
    assert torch.allclose(found.vectors.norm(dim=1), torch.ones(3))
    assert torch.allclose(found.vectors[0], torch.tensor([0.6, 0.0, 0.8, 0.0]))
    assert found.names == ["pca 1", "pca 2", "pca 3"] and len(found) == 3 and found.dim == 4
    assert found.code_std == [1.0, 1.0, 1.0]
    assert found.table()[1] == {"index": 1, "name": "pca 2", "code_std": 1.0, "explained_variance": 2.0}
    with pytest.raises(UserInputError, match="zero length"):
        make(model, torch.zeros(2, 4))
    with pytest.raises(MismatchError, match="2 names for 3"):
        make(model, names=["a", "b"])
    with pytest.raises(MismatchError, match="score 'rca' has 1 values"):
        make(model, scores={"rca": [0.5]})


def test_save_load_round_trip_keeps_everything(model, tmp_path) -> None:
    found = make(model, names=["rotation", "size", "mix"], scores={"rca": [0.9, 0.5, 0.25]},
                 code_std=[0.5, 1.5, 2.0], settings={"count": 3, "seed": 7}, info={"note": "x", "steps": [1, 2]})
    path = found.save(tmp_path / "dirs.safetensors")
    loaded = Directions.load(path)
    assert torch.equal(loaded.vectors, found.vectors)
    assert loaded.names == ["rotation", "size", "mix"]
    assert loaded.scores == {"rca": [0.9, 0.5, 0.25]} and loaded.code_std == [0.5, 1.5, 2.0]
    assert loaded.settings == {"count": 3, "seed": 7} and loaded.info == {"note": "x", "steps": [1, 2]}
    assert (loaded.space, loaded.model_name, loaded.model_fingerprint, loaded.method) == (
        "z", model.name, model.fingerprint, "pca")
    assert not list(tmp_path.glob("*.tmp*"))  # atomic write leaves no temporary file
    with pytest.raises(UserInputError, match=r"must end in \.safetensors"):
        found.save(tmp_path / "dirs.pt")


def test_renamed_names_survive_the_file_and_stay_unique(model, tmp_path) -> None:
    found = make(model)
    found.rename(1, "  ventricles ")
    found.rename("pca 3", "rotation")
    assert found.names == ["pca 1", "ventricles", "rotation"]
    assert found.index_of("rotation") == 2 and torch.equal(found.vector("ventricles"), found.vectors[1])
    with pytest.raises(UserInputError, match="already named"):
        found.rename(0, "rotation")
    with pytest.raises(UserInputError, match="cannot be empty"):
        found.rename(0, "   ")
    with pytest.raises(UserInputError, match="no direction named"):
        found.index_of("nope")
    with pytest.raises(UserInputError, match="out of range"):
        found.vector(3)
    assert Directions.load(found.save(tmp_path / "renamed.safetensors")).names == ["pca 1", "ventricles", "rotation"]


def test_bad_files_are_clear_errors(tmp_path) -> None:
    with pytest.raises(UserInputError, match="no such directions file"):
        Directions.load(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not safetensors at all")
    with pytest.raises(UserInputError, match="not a napari-latent directions file"):
        Directions.load(junk)
    other = tmp_path / "other.safetensors"
    save_file({"vectors": torch.eye(2)}, str(other), metadata={"napari_latent": json.dumps({"format": "codes"})})
    with pytest.raises(UserInputError, match="not a directions file"):
        Directions.load(other)


def test_model_and_space_mismatches_are_clear_user_errors(model) -> None:
    found = make(model)
    found.check_model(model)  # its own model is fine
    with pytest.raises(UserInputError, match="fingerprint"):
        found.check_model(tiny_vae(seed=1))
    with pytest.raises(UserInputError, match="dimension 4 do not fit space 'z'"):
        Directions(found.vectors, "z", model.name, "", "pca").check_model(tiny_vae(latent_dim=6))
    with pytest.raises(UserInputError, match="'dcgan' model"):
        found.check_model(build_model("dcgan", latent_dim=4, **SMALL))
    codes = LatentCodes.__new__(LatentCodes)  # only the fields check_codes reads
    codes.codes, codes.space, codes.model_name, codes.model_fingerprint = torch.zeros(2, 4), "w", model.name, \
        model.fingerprint
    with pytest.raises(UserInputError, match="space 'w'"):
        found.check_codes(codes)
    codes.space, codes.model_fingerprint = "z", "another"
    with pytest.raises(UserInputError, match="different models"):
        found.check_codes(codes)
    codes.model_fingerprint, codes.codes = model.fingerprint, torch.zeros(2, 5)
    with pytest.raises(UserInputError, match="dimension 5"):
        found.check_codes(codes)
    codes.codes = torch.zeros(2, 4)
    found.check_codes(codes)


def test_shift_and_combination(model) -> None:
    found = make(model)
    codes = torch.zeros(2, 4, dtype=torch.float64)
    shifted = found.shift(codes, 0, 2.5)
    assert shifted.dtype == torch.float64
    np.testing.assert_allclose(shifted.numpy(), [[1.5, 0.0, 2.0, 0.0]] * 2, atol=1e-6)
    np.testing.assert_allclose(found.shift(codes, "pca 2", -1.0).numpy()[0], [0, -1, 0, 0], atol=1e-7)
    with pytest.raises(UserInputError, match="dimension 3"):
        found.shift(torch.zeros(1, 3), 0, 1.0)
    mixed = found.combination({0: 1.0, "pca 2": 1.0})
    expected = np.array([0.6, 1.0, 0.8, 0.0]) / np.linalg.norm([0.6, 1.0, 0.8, 0.0])
    np.testing.assert_allclose(mixed.numpy(), expected, atol=1e-6)
    assert float(mixed.norm()) == pytest.approx(1.0)
    with pytest.raises(UserInputError, match="cancel out"):
        found.combination({0: 1.0, "pca 1": -1.0})
    with pytest.raises(UserInputError, match="no directions given"):
        found.combination({})
