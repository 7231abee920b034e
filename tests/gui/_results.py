"""Small saved napari-latent results (volume, model, codes, directions, traversal, eigen) for GUI tests.

Everything is built from an untrained tiny VAE (seeded), so it takes about a second; the
numbers are meaningless but the files are real and exercise every code path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from napari_latent.analysis.eigen import EigenResult, eigencomponents
from napari_latent.latent.codes import LatentCodes
from napari_latent.latent.directions import Directions
from napari_latent.latent.inversion import invert
from napari_latent.latent.traversal import Traversal, traverse
from napari_latent.models.base import GenerativeModel, build_model, model_fingerprint
from napari_latent.models.checkpoint import save_checkpoint
from napari_latent.volumes import SliceSpec, Volume, save_volume
from napari_latent.volumes.phantoms import PhantomFactors, make_phantom


@dataclass
class Results:
    """Paths and objects of one set of results on one source volume."""

    volume: Volume
    volume_path: Path
    model: GenerativeModel
    model_path: Path
    codes: LatentCodes
    codes_path: Path
    directions: Directions
    directions_path: Path
    traversal: Traversal
    traversal_path: Path
    eigen: EigenResult
    eigen_dir: Path


def tiny_model(size: int = 32, latent_dim: int = 8, seed: int = 0) -> GenerativeModel:
    """An untrained, seeded tiny VAE with an axial slice spec."""
    torch.manual_seed(seed)
    model = build_model("vae", image_size=size, latent_dim=latent_dim, base_channels=8, max_channels=32).eval()
    model.slice_spec = SliceSpec(size=size)
    model.fingerprint = model_fingerprint(model)
    return model


def make_results(folder: Path, size: int = 32) -> Results:
    """Write a phantom volume and every result type into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    phantom = make_phantom(PhantomFactors(), size=size, seed=5)
    # a non-trivial affine: 1.5 mm voxels, an offset
    volume = Volume(phantom.image, phantom.affine, name="subject")
    volume_path = save_volume(volume, folder / "subject.nii.gz")
    model = tiny_model(size)
    model_path = folder / "model.safetensors"
    save_checkpoint(model_path, model, slice_spec=model.slice_spec)
    codes = invert(model, volume, method="encoder")
    codes.source = str(volume_path)
    codes_path = codes.save(folder / "subject_codes.safetensors")
    generator = torch.Generator().manual_seed(1)
    vectors = torch.randn(3, model.latent_dim(), generator=generator)
    directions = Directions(vectors, "z", model.name, model.fingerprint, "random", code_std=[1.0, 2.0, 0.5])
    directions_path = directions.save(folder / "dirs.safetensors")
    traversal = traverse(model, codes, directions, "-2:2:5", index=0, source=volume)
    traversal_path = traversal.save(folder / "traversal.nii.gz")
    eigen = eigencomponents(traversal, n_components=3)
    eigen_dir = eigen.save(folder / "eigen")
    return Results(volume, volume_path, model, model_path, codes, codes_path, directions, directions_path,
                   traversal, traversal_path, eigen, eigen_dir)


def assert_on_grid(layer_data_or_layer, reference) -> None:
    """The spatial shape, scale and translate of a layer equal the reference layer's."""
    def parts(item):
        if isinstance(item, tuple):
            data, kwargs, _ = item
            return np.shape(data), np.asarray(kwargs["scale"]), np.asarray(kwargs["translate"])
        return np.shape(item.data), np.asarray(item.scale), np.asarray(item.translate)

    shape, scale, translate = parts(layer_data_or_layer)
    ref_shape, ref_scale, ref_translate = parts(reference)
    assert tuple(shape[-3:]) == tuple(ref_shape[-3:])
    np.testing.assert_allclose(scale[-3:], ref_scale[-3:])
    np.testing.assert_allclose(translate[-3:], ref_translate[-3:])
