"""Our re-implementation against the official code's outputs, from the fixture's state dicts (no pickle).

The data are the numbers-only copies in ``tests/data/stylegan2_ada`` (see its README), so this
parity check runs wherever the test suite runs; ``test_parity.py`` does the same through the
snapshot pickle when the shared fixture is present.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from napari_latent.models.checkpoint import load_model, save_checkpoint
from napari_latent.models.stylegan2_ada.importer import model_from_state_dicts
from napari_latent.models.stylegan2_ada.model import StyleGAN2ADA

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DATA = Path(__file__).resolve().parents[2] / "data" / "stylegan2_ada"
WS_TOLERANCE = 1e-5
IMAGE_TOLERANCE = 1e-4


def init_kwargs(name: str) -> dict:
    with safe_open(str(DATA / f"{name}.safetensors"), "pt") as handle:
        return json.loads(handle.metadata()["init_kwargs"])


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(DATA / "reference.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def model() -> StyleGAN2ADA:
    return model_from_state_dicts("fixture", "G_ema", init_kwargs("G_ema"), load_file(DATA / "G_ema.safetensors"),
                                  init_kwargs("D"), load_file(DATA / "D.safetensors"))


def largest_difference(ours: torch.Tensor, theirs: np.ndarray) -> float:
    return float(np.abs(ours.detach().numpy() - theirs).max())


def test_mapping_synthesis_and_discriminator_match_the_official_outputs(model, reference) -> None:
    z = torch.from_numpy(reference["z"])
    with torch.no_grad():
        assert largest_difference(model.mapping(z), reference["ws"]) < WS_TOLERANCE
        assert largest_difference(model.mapping(z, truncation_psi=float(reference["truncation_psi"])),
                                  reference["ws_trunc"]) < WS_TOLERANCE
        for image_key, ws_key, noise in (("img", "ws", "const"), ("img_trunc", "ws_trunc", "const"),
                                         ("img_random_noise_off", "ws", "none")):
            # one seed at a time, as the reference was made
            images = torch.cat([model.synthesis(torch.from_numpy(reference[ws_key][i:i + 1]), noise)
                                for i in range(4)])
            assert largest_difference(images, reference[image_key]) < IMAGE_TOLERANCE, image_key
        images = torch.from_numpy(reference["img"])
        single = torch.cat([model.discriminate(images[i:i + 1]) for i in range(4)])
        assert largest_difference(single, reference["D_logits"][:, 0]) < IMAGE_TOLERANCE
        assert largest_difference(model.discriminate(images), reference["D_logits_batch4"][:, 0]) < IMAGE_TOLERANCE


def test_a_checkpoint_of_it_gives_the_same_outputs(model, reference, tmp_path: Path) -> None:
    loaded = load_model(save_checkpoint(tmp_path / "sg2.safetensors", model), device="cpu")
    assert loaded.config == model.config and loaded.fingerprint == model.fingerprint
    ws = torch.from_numpy(reference["ws"][:1])
    with torch.no_grad():
        assert largest_difference(loaded.synthesis(ws), reference["img"][:1]) < IMAGE_TOLERANCE


def test_changed_weights_are_caught(reference) -> None:
    # the check can fail: one filter of the upsampling path replaced by the standard [1, 3, 3, 1] one
    state = load_file(DATA / "G_ema.safetensors")
    standard = torch.tensor([1.0, 3.0, 3.0, 1.0])
    state["synthesis.b16.conv0.resample_filter"] = torch.outer(standard, standard) / 64
    changed = model_from_state_dicts("fixture", "G_ema", init_kwargs("G_ema"), state)
    with torch.no_grad():
        images = changed.synthesis(torch.from_numpy(reference["ws"][:1]))
    assert largest_difference(images, reference["img"][:1]) > 1e-3
