"""The checkpoint format: round trips, the bundled model, and refusing anything that is not ours."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from napari_latent.container import HEADER_KEY, flatten_state, unflatten_state
from napari_latent.errors import CheckpointError, UserInputError
from napari_latent.models.base import build_model, model_fingerprint, model_names
from napari_latent.models.checkpoint import (
    FORMAT_VERSION,
    load_model,
    read_checkpoint,
    read_header,
    save_checkpoint,
)
from napari_latent.volumes import SliceSpec

TINY = {"image_size": 32, "latent_dim": 8, "base_channels": 8, "max_channels": 32}


def test_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    model = build_model("vae", **TINY).eval()
    spec = SliceSpec(plane="coronal", size=32)
    path = save_checkpoint(tmp_path / "m.safetensors", model, spec, {"epochs": 3, "seed": 7})
    loaded = load_model(path, device="cpu")
    codes = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    images = torch.rand(4, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded.decode(codes), model.decode(codes), rtol=0, atol=0)
        torch.testing.assert_close(loaded.encode(images), model.encode(images), rtol=0, atol=0)
    assert loaded.slice_spec == spec
    assert loaded.training_info["epochs"] == 3
    assert loaded.fingerprint == model_fingerprint(model)
    assert not loaded.training
    header = read_header(path)
    assert header["format_version"] == FORMAT_VERSION
    assert header["config"]["latent_dim"] == 8


def test_training_state_round_trips_through_flatten() -> None:
    model = build_model("vae", **TINY)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.zeros(2, 1, 32, 32))["reconstruction"].sum().backward()
    optimizer.step()
    state = {"opt": optimizer.state_dict(), "step": 5, "pair": (1, 2.5), "rng": torch.get_rng_state()}
    tensors: dict[str, torch.Tensor] = {}
    flat = flatten_state(state, "state", tensors)
    back = unflatten_state(json.loads(json.dumps(flat)), tensors)
    assert back["step"] == 5 and back["pair"] == (1, 2.5)
    torch.testing.assert_close(back["rng"], state["rng"])
    fresh = torch.optim.Adam(model.parameters(), lr=1e-3)
    fresh.load_state_dict(back["opt"])
    assert fresh.state_dict()["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"]


def test_a_malicious_pickle_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned.txt"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    for name in ("model.pt", "model.safetensors", "model.pth"):
        path = tmp_path / name
        path.write_bytes(pickle.dumps({"state_dict": Exploit()}))
        with pytest.raises(CheckpointError, match="not a napari-latent model file"):
            load_model(path, device="cpu")
        torch_style = tmp_path / f"zip_{name}"
        torch.save({"x": torch.zeros(2)}, torch_style)  # a real PyTorch zip pickle
        with pytest.raises(CheckpointError, match="never loads pickles"):
            load_model(torch_style, device="cpu")
    assert not marker.exists()


def test_random_truncated_and_foreign_files_are_clear_errors(tmp_path: Path) -> None:
    model = build_model("vae", **TINY)
    good = save_checkpoint(tmp_path / "good.safetensors", model)
    random_file = tmp_path / "random.safetensors"
    random_file.write_bytes(torch.randint(0, 255, (5000,), dtype=torch.uint8).numpy().tobytes())
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(foreign), metadata={"format": "pt"})
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    cases = {
        random_file: "not a valid safetensors file",
        truncated: "not a valid safetensors file|truncated or damaged",
        foreign: "not a napari-latent model",
        empty: "the file is empty",
        tmp_path / "missing.safetensors": "no such model file",
        tmp_path: "is a folder",
    }
    for path, message in cases.items():
        with pytest.raises(CheckpointError, match=message):
            load_model(path, device="cpu")


def test_mismatched_weights_and_newer_formats_are_refused(tmp_path: Path) -> None:
    model = build_model("vae", **TINY)
    path = save_checkpoint(tmp_path / "m.safetensors", model)
    header = read_header(path)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    header["config"]["latent_dim"] = 9
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata={HEADER_KEY: json.dumps(header)})
    with pytest.raises(CheckpointError, match=r"do not match|has shape"):
        load_model(bad, device="cpu")
    header["config"]["latent_dim"] = 8
    header["format_version"] = FORMAT_VERSION + 1
    newer = tmp_path / "newer.safetensors"
    save_file(tensors, str(newer), metadata={HEADER_KEY: json.dumps(header)})
    with pytest.raises(CheckpointError, match="newer napari-latent"):
        load_model(newer, device="cpu")


def test_suffix_and_registry_errors(tmp_path: Path) -> None:
    model = build_model("vae", **TINY)
    with pytest.raises(UserInputError, match=r"\.safetensors"):
        save_checkpoint(tmp_path / "m.pt", model)
    with pytest.raises(UserInputError, match="unknown model"):
        build_model("transformer")
    with pytest.raises(UserInputError, match="not supported"):
        build_model("vae", image_size=100)
    with pytest.raises(UserInputError, match="no setting"):
        build_model("vae", colour="red")
    assert "vae" in model_names()


def test_the_bundled_demo_model_loads_without_download() -> None:
    model = load_model("demo", device="cpu")
    assert model.name == "vae"
    assert model.slice_spec is not None and model.slice_spec.size == model.image_size
    assert model.training_info.get("completed") is True
    with torch.no_grad():
        images = model.decode(model.sample_latent(2, torch.Generator().manual_seed(0)))
    assert images.shape == (2, 1, model.image_size, model.image_size)
    checkpoint = read_checkpoint("demo", device="cpu")
    assert checkpoint.state is None  # shipped without optimiser state
