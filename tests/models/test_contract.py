"""The contract every registered model family keeps with the rest of the package.

Parametrised over :func:`model_names`: a newly registered family (a built-in or a plugin's
imported before collection) is checked by registering it. For each family a tiny model is
built and saved; the checks are the checkpoint round trip, the model's description (means,
priors, encoder and posterior, latent weights that fit their space), every discovery method
of :func:`method_names`, every inversion method, a traversal and its eigencomponents.

Whether a discovery or inversion method applies is decided from the model's own description
(``has_posterior``, ``has_encoder``, ``latent_weights``), never from its name or class: a
method that does not apply must refuse with one clear :class:`UserInputError`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import napari_latent as nl
from napari_latent.errors import UserInputError
from napari_latent.latent.discovery import method_names
from napari_latent.models.base import GenerativeModel, build_model, model_class, model_fingerprint, model_names
from napari_latent.models.checkpoint import load_model, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Settings that make any family tiny (fields of the base ``ModelConfig``).
TINY = {"image_size": 32, "base_channels": 8, "max_channels": 32}
#: A small latent code, where the family lets users choose it.
TINY_LATENT = 8
#: Size settings of families whose defaults are large (sizes only: never behaviour).
TINY_EXTRA: dict[str, dict[str, Any]] = {
    "stylegan": {"w_dim": 8, "mapping_layers": 2},
    "stylegan2-ada": {"w_dim": 8, "mapping_layers": 2, "d_mapping_layers": 2},
    "vqvae": {"codebook_size": 16, "code_dim": 4, "latent_resolution": 4},
}
#: Fast settings per discovery method (every method also gets ``space`` and ``count``).
METHOD_SETTINGS: dict[str, dict[str, Any]] = {
    "pca": {"samples": 64},
    "axes": {"samples": 32},
    "jacobian": {"iterations": 5},
    "voynov": {"steps": 2, "batch_size": 4, "eval_samples": 8},
    "supervised": {"steps": 2, "slices": "all"},  # plus data= (the labelled cohort)
}
NEEDS_COHORT = {"supervised"}
COUNT = 2
INVERSION_METHODS = ("encoder", "optimize", "hybrid")
ALPHAS = "-2:2:3"


@dataclass
class Family:
    """One tiny model of a family: as built, and as loaded back from its checkpoint."""

    name: str
    built: GenerativeModel
    model: GenerativeModel
    path: Path

    @property
    def space(self) -> str:
        return self.model.analysis_space


def tiny_settings(name: str) -> dict[str, Any]:
    """Build settings for a tiny model of family ``name``."""
    config = model_class(name).config_class
    fields = {f.name for f in dataclasses.fields(config)}
    settings = {**TINY, **TINY_EXTRA.get(name, {})}
    if "latent_dim" in fields and "latent_dim" not in config.derived:
        settings["latent_dim"] = TINY_LATENT
    return settings


@pytest.fixture(scope="module", params=model_names())
def family(request, tmp_path_factory) -> Family:
    name = request.param
    torch.manual_seed(0)
    try:
        built = build_model(name, **tiny_settings(name)).eval()
    except UserInputError as error:  # a family whose optional dependency is missing (napari-latent[monai])
        if "pip install" in str(error):
            pytest.skip(str(error))
        raise
    path = save_checkpoint(tmp_path_factory.mktemp(f"contract_{name}") / f"{name}.safetensors", built)
    return Family(name, built, load_model(path, device="cpu"), path)


@pytest.fixture(scope="module")
def volume() -> nl.Volume:
    """A 32-cubed phantom head."""
    phantom = nl.make_phantom(size=32, seed=3)
    return nl.Volume(phantom.image, phantom.affine, name="phantom32")


@pytest.fixture(scope="module")
def labelled_cohort(tmp_path_factory) -> Path:
    """8 labelled phantom subjects (32 cubed) with cohort.csv (groups healthy and disease)."""
    folder = tmp_path_factory.mktemp("contract_cohort")
    nl.make_phantom_cohort(folder, n_subjects=8, size=32, seed=11)
    return folder


@pytest.fixture(scope="module")
def codes(family: Family, volume: nl.Volume) -> nl.LatentCodes:
    """The volume's codes (the encoder where there is one, else a few optimisation steps)."""
    return nl.invert(family.model, volume, "auto", steps=2)


@pytest.fixture(scope="module")
def directions(family: Family) -> nl.Directions:
    """PCA directions: the method every family supports."""
    return nl.discover(family.model, "pca", space=family.space, count=COUNT, samples=64)


def unmet_requirement(model: GenerativeModel, method: str, space: str) -> str | None:
    """What ``model`` lacks for discovery ``method``, from its own description (None: it applies)."""
    if method == "axes" and not model.has_posterior:
        return "posterior"
    if method == "sefa":
        try:
            model.latent_weights(space)
        except UserInputError:
            return "linear first layer"
    return None


# -- checkpoint ---------------------------------------------------------------------------------

def test_checkpoint_round_trip(family: Family) -> None:
    built, loaded = family.built, family.model
    assert loaded.name == family.name
    assert type(loaded) is type(built)
    assert loaded.config == built.config
    assert loaded.fingerprint == model_fingerprint(built) != ""
    codes = built.sample_latent(3, torch.Generator().manual_seed(1), built.default_space)
    with torch.no_grad():
        expected, got = built.decode(codes), loaded.decode(codes)
    assert expected.shape == (3, 1, 32, 32)
    assert torch.equal(expected, got)


def test_description_is_consistent(family: Family) -> None:
    model = family.model
    assert model.analysis_space in model.spaces
    for space in model.spaces:
        mean = model.mean_latent(space)
        assert mean.shape == (1, model.latent_dim(space))
        assert torch.isfinite(mean).all()
        if model.prior(space).standard_normal:  # then the centre is 0 (512 samples: |mean| < 4 / sqrt(512))
            assert mean.abs().max() < 0.18
    samples = model.sample_latent(512, torch.Generator().manual_seed(2))
    assert samples.shape == (512, model.latent_dim(model.default_space))
    if model.prior(model.default_space).standard_normal:
        assert abs(float(samples.std()) - 1.0) < 0.1
    images = model.decode(model.sample_latent(2, torch.Generator().manual_seed(0)))
    if model.has_encoder:
        assert model.encode(images).shape == (2, model.latent_dim(model.default_space))
    else:
        with pytest.raises(UserInputError, match="no encoder"):
            model.encode(images)
    if model.has_posterior:
        mean, logvar = model.posterior(images)
        assert mean.shape == logvar.shape == (2, model.latent_dim(model.default_space))
    else:
        with pytest.raises(UserInputError, match="posterior"):
            model.posterior(images)


def test_latent_weights_fit_their_space(family: Family) -> None:
    """Where a model exposes the weights on a space's codes, their input sizes add up to the code as the layout says."""
    model = family.model
    for space in model.spaces:
        try:
            weights = model.latent_weights(space)
        except UserInputError:  # allowed: then sefa refuses (test_discovery_method checks the message)
            continue
        latent = model.latent_dim(space)
        dims = [int(w.shape[1]) for w in weights.inputs]
        assert dims and all(w.ndim == 2 and torch.isfinite(w).all() for w in weights.inputs)
        if weights.layout == "single":
            assert dims == [latent]
        elif weights.layout == "shared":  # every input reads the whole code
            assert set(dims) == {latent}
        elif weights.layout == "blocks":  # the code is the inputs' codes one after another
            assert sum(dims) == latent
        else:
            assert weights.layout == "tiled" and len(dims) == 1 and dims[0] * weights.positions == latent
        assert weights.layout == "tiled" or weights.positions == 1


# -- discovery ----------------------------------------------------------------------------------

@pytest.mark.parametrize("method", method_names())
def test_discovery_method(family: Family, method: str, labelled_cohort: Path) -> None:
    model, space = family.model, family.space
    settings: dict[str, Any] = {"space": space, "count": COUNT, **METHOD_SETTINGS.get(method, {})}
    if method in NEEDS_COHORT:
        with pytest.raises(UserInputError, match="needs labelled data"):
            nl.discover(model, method, **settings)
        settings["data"] = labelled_cohort
    missing = unmet_requirement(model, method, space)
    if missing is not None:
        with pytest.raises(UserInputError, match=missing) as info:
            nl.discover(model, method, **settings)
        assert family.name in str(info.value) and "\n" not in str(info.value)
        return
    found = nl.discover(model, method, **settings)
    assert isinstance(found, nl.Directions)
    assert found.space == space
    assert found.method == method
    assert found.vectors.shape == (COUNT, model.latent_dim(space))
    assert torch.isfinite(found.vectors).all()
    np.testing.assert_allclose(found.vectors.norm(dim=1).numpy(), 1.0, atol=1e-5)
    assert (found.model_name, found.model_fingerprint) == (model.name, model.fingerprint)


# -- inversion ----------------------------------------------------------------------------------

@pytest.mark.parametrize("method", INVERSION_METHODS)
def test_inversion_method(family: Family, method: str, volume: nl.Volume) -> None:
    model, space = family.model, family.space
    if method in ("encoder", "hybrid") and not model.has_encoder:
        with pytest.raises(UserInputError, match="no encoder"):
            nl.invert(model, volume, method, steps=2)
        return
    codes = nl.invert(model, volume, method, steps=3)
    n = codes.codes.shape[0]
    assert 0 < n <= volume.data.shape[2]
    assert codes.codes.shape == (n, model.latent_dim(space))
    assert codes.space == space and codes.method == method
    assert (codes.model_name, codes.model_fingerprint) == (model.name, model.fingerprint)
    assert codes.errors.shape == (n,) and np.isfinite(codes.errors).all() and (codes.errors >= 0).all()
    if method == "hybrid":  # never worse than its encoder start, slice by slice
        start = nl.invert(model, volume, "encoder")
        assert (codes.errors <= start.errors + 1e-7).all()


# -- traversal and eigencomponents --------------------------------------------------------------

@pytest.fixture(scope="module")
def traversal(family: Family, codes: nl.LatentCodes, directions: nl.Directions, volume: nl.Volume) -> nl.Traversal:
    return nl.traverse(family.model, codes, directions, ALPHAS, index=0, source=volume)


def test_traversal(traversal: nl.Traversal, volume: nl.Volume, family: Family) -> None:
    assert traversal.images.shape == (3, *volume.data.shape)
    np.testing.assert_array_equal(traversal.grid.affine, volume.affine)
    assert traversal.grid.shape == volume.data.shape
    np.testing.assert_allclose(traversal.alphas, [-2.0, 0.0, 2.0])
    assert np.isfinite(traversal.images).all()
    assert traversal.model_fingerprint == family.model.fingerprint
    assert np.abs(traversal.images[-1] - traversal.images[0]).max() > 0  # the direction changes the images


def test_eigencomponents_of_the_traversal(traversal: nl.Traversal) -> None:
    result = nl.eigencomponents(traversal, n_components=2)
    assert result.eigenvalues.shape == (3,)
    assert np.all(np.diff(result.eigenvalues) <= 0) and result.eigenvalues.min() >= -1e-9
    np.testing.assert_allclose(result.explained_variance_ratio.sum(), 1.0, atol=1e-6)
    assert result.eigenvectors.shape == (3, 2)
    assert result.projections.shape == (result.n_voxels, 2) and result.n_voxels == int(result.mask.sum()) > 0
    assert result.mask.shape == traversal.images.shape[1:]
    assert result.maps.shape == (2, *traversal.images.shape[1:])
    np.testing.assert_array_equal(result.grid.affine, traversal.grid.affine)
