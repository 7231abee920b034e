"""Tiny MONAI autoencoders trained for a few steps with MONAI's own API, saved the MONAI way.

Each fixture trains on 32-pixel axial slices of nibabel's ``anatomical.nii`` scaled to [0, 1]
(MONAI's usual intensity range) and writes ``model.pt`` (``torch.save(net.state_dict())``)
next to ``network.json`` (the constructor arguments with a ``_target_``) and a bundle-style
``inference.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import pytest
import torch
from torch import nn

monai_nets = pytest.importorskip("monai.networks.nets", reason="MONAI is not installed (napari-latent[monai])")

SIZE = 32
KL_ARGS: dict[str, Any] = {"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "channels": [8, 16, 16],
                           "latent_channels": 2, "num_res_blocks": 1, "norm_num_groups": 8,
                           "attention_levels": [False, False, False], "with_encoder_nonlocal_attn": False,
                           "with_decoder_nonlocal_attn": False}
VQ_ARGS: dict[str, Any] = {"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "channels": [8, 16],
                           "num_res_layers": 1, "num_res_channels": [8, 16],
                           "downsample_parameters": [[2, 4, 1, 1], [2, 4, 1, 1]],
                           "upsample_parameters": [[2, 4, 1, 1, 0], [2, 4, 1, 1, 0]],
                           "num_embeddings": 16, "embedding_dim": 4}


@dataclass
class Trained:
    """A trained MONAI network and the files it was saved to."""

    net: nn.Module
    args: dict[str, Any]
    weights: Path
    config: Path
    bundle: Path
    images: torch.Tensor  # (n, 1, 32, 32) in [0, 1]


def anatomical_slices() -> torch.Tensor:
    """nibabel's anatomical.nii: its 25 axial slices, 32 pixels square, scaled to [0, 1]."""
    from nibabel.testing import data_path

    data = torch.as_tensor(nib.load(Path(data_path) / "anatomical.nii").get_fdata(), dtype=torch.float32)
    data = (data - data.min()) / (data.max() - data.min())
    slices = data.permute(2, 0, 1)[:, None]  # (25, 1, 33, 41)
    return nn.functional.interpolate(slices, size=(SIZE, SIZE), mode="bilinear", align_corners=False)


def _train(net: nn.Module, images: torch.Tensor, loss_of, steps: int) -> nn.Module:
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions: more threads only wait for each other
    try:
        net.train()
        for _ in range(steps):
            batch = images[torch.randint(0, images.shape[0], (8,), generator=generator)]
            loss = loss_of(net, batch)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    finally:
        torch.set_num_threads(threads)
    return net.eval()


def _kl_loss(net: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    reconstruction, z_mu, z_sigma = net(batch)
    kl = 0.5 * (z_mu.pow(2) + z_sigma.pow(2) - torch.log(z_sigma.pow(2)) - 1).sum((1, 2, 3)).mean()
    return nn.functional.l1_loss(reconstruction, batch) + 1e-6 * kl


def _vq_loss(net: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    reconstruction, quantization_loss = net(batch)
    return nn.functional.l1_loss(reconstruction, batch) + quantization_loss


def _save(folder: Path, net: nn.Module, target: str, args: dict[str, Any], images: torch.Tensor) -> Trained:
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "model.pt"
    torch.save(net.state_dict(), weights)
    config = folder / "network.json"
    config.write_text(json.dumps({"_target_": f"monai.networks.nets.{target}", **args}))
    # A bundle-style config: the network among other entries, with @references to plain values.
    section = {"_target_": target, **args, "spatial_dims": "@spatial_dims", "channels": "@channels"}
    bundle = folder / "inference.json"
    bundle.write_text(json.dumps({
        "imports": ["$import torch"], "spatial_dims": 2, "channels": args["channels"],
        "device": "$torch.device('cpu')",
        "network_def": section,
        "inferer": {"_target_": "SimpleInferer"},
        "preprocessing": {"_target_": "Compose", "transforms": []},
    }))
    return Trained(net, args, weights, config, bundle, images)


@pytest.fixture(scope="session")
def slices() -> torch.Tensor:
    return anatomical_slices()


@pytest.fixture(scope="session")
def trained_kl(tmp_path_factory, slices) -> Trained:
    torch.manual_seed(0)
    net = _train(monai_nets.AutoencoderKL(**KL_ARGS), slices, _kl_loss, steps=20)
    return _save(tmp_path_factory.mktemp("monai_kl"), net, "AutoencoderKL", KL_ARGS, slices)


@pytest.fixture(scope="session")
def trained_vq(tmp_path_factory, slices) -> Trained:
    torch.manual_seed(0)
    net = _train(monai_nets.VQVAE(**VQ_ARGS), slices, _vq_loss, steps=20)
    return _save(tmp_path_factory.mktemp("monai_vq"), net, "VQVAE", VQ_ARGS, slices)
