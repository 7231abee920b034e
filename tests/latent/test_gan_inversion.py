"""Inversion with GANs: optimisation from the mean code, W against W+ on a volume, the source grid."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_latent.latent.inversion import (
    InversionSettings,
    invert,
    iter_optimize_codes,
    latent_statistics,
)
from napari_latent.models.base import GenerativeModel, build_model
from napari_latent.progress import run_operation
from napari_latent.volumes import SliceSpec, open_volume, save_volume

STYLEGAN = {"image_size": 32, "base_channels": 16, "max_channels": 32, "latent_dim": 16, "w_dim": 16,
            "mapping_layers": 2}
DCGAN = {"image_size": 32, "base_channels": 8, "max_channels": 32, "latent_dim": 16}


def _gan(name: str, settings: dict, seed: int = 0) -> GenerativeModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(name, **settings)
    model.slice_spec = SliceSpec(size=32)
    return model.eval()


@pytest.fixture(scope="module")
def stylegan() -> GenerativeModel:
    return _gan("stylegan", STYLEGAN)


@pytest.mark.parametrize("name, settings, space", [("dcgan", DCGAN, "z")])
def test_optimisation_recovers_images_generated_from_known_codes(name: str, settings: dict, space: str) -> None:
    model = _gan(name, settings)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        truth = model.to_space(model.sample_latent(8, generator), model.default_space, space)
        targets = model.decode(truth, space)
    mean, spread = latent_statistics(model, space)
    start = mean.expand(8, -1).clone()
    with torch.no_grad():
        before = float((model.decode(start, space) - targets).pow(2).mean())
    codes = run_operation(iter_optimize_codes(model, targets, start, space, InversionSettings(steps=150), spread))
    with torch.no_grad():
        after = float((model.decode(codes, space) - targets).pow(2).mean())
    assert after < 0.1 * before, (name, before, after)


def test_w_plus_inversion_of_a_volume_fits_better_than_w(stylegan: GenerativeModel, tiny_cohort: Path) -> None:
    volume = open_volume(tiny_cohort / "sub-002.nii.gz")
    in_w = invert(stylegan, volume, method="optimize", space="w", steps=60)
    in_w_plus = invert(stylegan, volume, method="optimize", space="w+", steps=60)
    assert in_w.space == "w" and in_w_plus.space == "w+"
    assert in_w_plus.codes.shape[1] == stylegan.latent_dim("w+") > in_w.codes.shape[1] == stylegan.latent_dim("w")
    assert float(in_w_plus.errors.mean()) < float(in_w.errors.mean())
    assert invert(stylegan, volume, steps=1).method == "optimize"  # auto without an encoder


def test_gan_inversion_maps_back_onto_the_source_grid(stylegan: GenerativeModel, tiny_cohort: Path,
                                                      tmp_path: Path) -> None:
    volume = open_volume(tiny_cohort / "sub-003.nii.gz")
    codes = invert(stylegan, volume, method="optimize", space="w+", steps=20)
    reconstruction = codes.reconstruct(stylegan)
    assert reconstruction.shape == volume.shape
    path = save_volume(reconstruction, tmp_path / "rec.nii.gz", like=volume)
    np.testing.assert_allclose(nib.load(path).affine, volume.affine)
    assert np.all(np.isfinite(reconstruction))
    inside = codes.geometry.slice_mask()
    assert inside.any() and reconstruction[inside].std() > 0  # the inverted slices carry an image
