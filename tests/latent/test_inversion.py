"""Inversion of volumes into latent codes: methods, grids, files and errors."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_latent.errors import MismatchError, UserInputError, VolumeError
from napari_latent.latent.codes import LatentCodes
from napari_latent.latent.inversion import (
    InversionSettings,
    invert,
    iter_optimize_codes,
    latent_statistics,
    learning_rate,
)
from napari_latent.progress import run_operation
from napari_latent.volumes import Volume, open_volume, save_volume
from tests.conftest import reoriented_copy


def test_optimisation_recovers_images_generated_from_known_codes(tiny_vae) -> None:
    generator = torch.Generator().manual_seed(1)
    truth = tiny_vae.sample_latent(12, generator)
    with torch.no_grad():
        targets = tiny_vae.decode(truth)
    mean, spread = latent_statistics(tiny_vae, "z")
    start = mean.expand(12, -1).clone()
    with torch.no_grad():
        before = (tiny_vae.decode(start) - targets).pow(2).mean()
    codes = run_operation(iter_optimize_codes(tiny_vae, targets, start, "z", InversionSettings(steps=150), spread))
    with torch.no_grad():
        after = (tiny_vae.decode(codes) - targets).pow(2).flatten(1).mean(1)
    assert float(after.mean()) < 0.1 * float(before)
    assert float(after.max()) < 0.01


def test_the_encoder_recovers_codes_of_its_own_reconstructions(tiny_vae, tiny_cohort: Path) -> None:
    volume = open_volume(tiny_cohort / "sub-002.nii.gz")
    first = invert(tiny_vae, volume, method="encoder")
    with torch.no_grad():
        again = tiny_vae.encode(tiny_vae.decode(first.codes))
    error = (again - first.codes).pow(2).sum(1).sqrt()
    spread = (first.codes - first.codes.mean(0)).pow(2).sum(1).sqrt().mean()
    assert float(error.mean()) < 0.35 * float(spread)


def test_methods_rank_as_expected_and_hybrid_never_loses(tiny_vae, tiny_cohort: Path) -> None:
    volume = open_volume(tiny_cohort / "sub-003.nii.gz")
    encoder = invert(tiny_vae, volume, method="encoder")
    hybrid = invert(tiny_vae, volume, method="hybrid", steps=60)
    optimized = invert(tiny_vae, volume, method="optimize", steps=60)
    assert hybrid.method == "hybrid" and encoder.method == "encoder"
    assert np.all(hybrid.errors <= encoder.errors + 1e-9)
    assert hybrid.errors.mean() < encoder.errors.mean()
    assert optimized.errors.mean() < 2.0 * encoder.errors.mean()
    assert invert(tiny_vae, volume).method == "encoder"  # auto for a model with an encoder
    assert hybrid.settings["steps"] == 60


def test_inverted_volume_maps_back_onto_the_source_grid(tiny_vae, tiny_cohort: Path, tmp_path: Path) -> None:
    volume = open_volume(tiny_cohort / "sub-004.nii.gz")
    codes = invert(tiny_vae, volume, method="encoder")
    reconstruction = codes.reconstruct(tiny_vae)
    assert reconstruction.shape == volume.shape
    path = save_volume(reconstruction, tmp_path / "rec.nii.gz", like=volume)
    image = nib.load(path)
    np.testing.assert_allclose(image.affine, volume.affine)
    inside = codes.geometry.slice_mask()
    correlation = np.corrcoef(reconstruction[inside], volume.data[inside])[0, 1]
    assert correlation > 0.8  # the reconstruction shows the same anatomy in the same place


def test_other_orientations_are_resliced_to_the_same_codes(tiny_vae, tiny_cohort: Path, tmp_path: Path) -> None:
    source = tiny_cohort / "sub-005.nii.gz"
    other = tmp_path / "lpi.nii.gz"
    nib.save(reoriented_copy(nib.load(source), ("L", "P", "I")), other)
    a = invert(tiny_vae, open_volume(source), method="encoder")
    b = invert(tiny_vae, open_volume(other), method="encoder")
    torch.testing.assert_close(a.codes, b.codes, atol=1e-4, rtol=1e-4)
    assert b.reconstruct(tiny_vae).shape == open_volume(other).shape


def test_codes_round_trip_and_refuse_other_models(tiny_vae, tiny_cohort: Path, tmp_path: Path) -> None:
    volume = open_volume(tiny_cohort / "sub-001.nii.gz")
    codes = invert(tiny_vae, volume, method="encoder")
    path = codes.save(tmp_path / "codes.safetensors")
    again = LatentCodes.load(path)
    torch.testing.assert_close(again.codes, codes.codes)
    np.testing.assert_array_equal(again.indices, codes.indices)
    np.testing.assert_allclose(again.reconstruct(tiny_vae), codes.reconstruct(tiny_vae))
    from napari_latent.models.base import build_model

    other = build_model("vae", image_size=32, latent_dim=8, base_channels=8, max_channels=32)
    other.fingerprint = "0123456789abcdef"
    with pytest.raises(MismatchError, match="another model"):
        again.check_model(other)
    wider = build_model("vae", image_size=32, latent_dim=4, base_channels=8, max_channels=32)
    with pytest.raises(MismatchError, match="do not fit"):
        again.decode(wider, codes=torch.zeros(3, 4))
    (tmp_path / "bad.safetensors").write_bytes(b"nope")
    with pytest.raises(UserInputError, match="not a napari-latent codes file"):
        LatentCodes.load(tmp_path / "bad.safetensors")


def test_bad_inputs_are_clear_errors(tiny_vae, tiny_cohort: Path) -> None:
    volume = open_volume(tiny_cohort / "sub-001.nii.gz")
    empty = Volume(np.zeros(volume.shape, np.float32), volume.affine, name="empty")
    with pytest.raises(VolumeError, match="constant"):
        invert(tiny_vae, empty)
    with pytest.raises(UserInputError, match="unknown inversion method"):
        invert(tiny_vae, volume, method="magic")
    with pytest.raises(MismatchError, match="no latent space 'w'"):
        invert(tiny_vae, volume, space="w")
    with pytest.raises(UserInputError, match="at least 1 step"):
        invert(tiny_vae, volume, method="optimize", steps=0)


def test_learning_rate_schedule_ramps_up_and_down() -> None:
    settings = InversionSettings(steps=100, lr=1.0)
    rates = [learning_rate(s, 100, settings) for s in range(100)]
    assert rates[0] == 0.0
    assert rates[10] == pytest.approx(1.0)
    assert rates[99] < 0.01
    assert max(rates) == pytest.approx(1.0)
