"""The model-importer extension point: registration, format detection, options, load_model's fallback,
the conversion check, and that imported families are not trained."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from napari_latent.errors import CheckpointError, UserInputError
from napari_latent.models.base import MODELS, GenerativeModel, build_model, register_model, trainable_model_names
from napari_latent.models.checkpoint import load_model
from napari_latent.models.importers import (
    IMPORTERS,
    ModelImporter,
    check_same_outputs,
    find_importer,
    import_model,
    register_importer,
)
from napari_latent.models.vae import VAE

TOY_MAGIC = "toy-vae"


def write_toy_file(path: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """A 'foreign' file: a tiny VAE's weights under another program's key names, with its settings."""
    torch.manual_seed(seed)
    model = build_model("vae", image_size=32, latent_dim=4, base_channels=8, max_channels=16)
    weights = {f"net/{k}": v.contiguous() for k, v in model.state_dict().items()}
    settings = {"image_size": 32, "latent_dim": 4, "base_channels": 8, "max_channels": 16}
    save_file(weights, str(path), metadata={"format": TOY_MAGIC, "settings": json.dumps(settings)})
    return model.state_dict()


def sniff_toy(path: Path) -> bool:
    with safe_open(str(path), "pt") as handle:
        return (handle.metadata() or {}).get("format") == TOY_MAGIC


def read_toy(path: Path, latent_scale: float = 1.0) -> GenerativeModel:
    with safe_open(str(path), "pt") as handle:
        settings = json.loads(handle.metadata()["settings"])
        weights = {k.removeprefix("net/"): handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    model = build_model("vae", **settings)
    model.load_state_dict(weights)
    return model


@pytest.fixture
def toy_importer() -> Iterator[ModelImporter]:
    importer = register_importer(ModelImporter(name="toy", description="toy VAE files (.toy)", suffixes=(".toy",),
                                               sniff=sniff_toy, read=read_toy,
                                               options={"latent_scale": "unused scale"}))
    yield importer
    IMPORTERS.remove("toy")


def test_a_registered_importer_is_found_from_the_file_and_reads_it(tmp_path: Path, toy_importer) -> None:
    path = tmp_path / "weights.toy"
    reference = write_toy_file(path)
    assert "toy" in IMPORTERS.names()
    assert find_importer(path) is toy_importer
    # found from the content even under another suffix
    other = tmp_path / "weights.bin"
    other.write_bytes(path.read_bytes())
    assert find_importer(other) is toy_importer
    model = import_model(path)
    assert model.name == "vae" and not model.training
    assert model.training_info["imported"] == {"format": "toy", "file": "weights.toy"}
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference[key])


def test_unknown_options_and_formats_are_one_line_errors(tmp_path: Path, toy_importer) -> None:
    path = tmp_path / "weights.toy"
    write_toy_file(path)
    with pytest.raises(UserInputError, match=r"the toy importer has no option\(s\) grey; it accepts latent_scale"):
        import_model(path, grey="luminance")
    with pytest.raises(UserInputError, match="unknown model importer 'nope'"):
        import_model(path, "nope")
    junk = tmp_path / "junk.toy"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(CheckpointError, match="not a napari-latent model and not a format that can be imported"):
        import_model(junk)
    with pytest.raises(CheckpointError, match="no such model file"):
        import_model(tmp_path / "missing.toy")


def test_load_model_opens_an_importable_file_and_keeps_its_own_errors(tmp_path: Path, toy_importer) -> None:
    path = tmp_path / "weights.toy"
    write_toy_file(path)
    model = load_model(path, device="cpu")
    assert model.name == "vae" and model.source_path == path and len(model.fingerprint) == 16
    junk = tmp_path / "model.safetensors"
    junk.write_bytes(b"\x80\x04junk")
    with pytest.raises(CheckpointError, match="napari-latent never loads pickles"):
        load_model(junk)


def test_the_conversion_check_compares_decoded_and_encoded_outputs(tmp_path: Path, toy_importer) -> None:
    path = tmp_path / "weights.toy"
    write_toy_file(path)
    imported = import_model(path)
    same = import_model(path)
    assert check_same_outputs(imported, same) == 0.0
    write_toy_file(tmp_path / "other.toy", seed=1)
    with pytest.raises(CheckpointError, match="outputs differ from the imported model's by"):
        check_same_outputs(imported, import_model(tmp_path / "other.toy"))


class ImportedVAE(VAE):
    """A family that is used, not trained (like an imported network)."""

    name = "test-imported-vae"
    objective = ""


def test_imported_families_are_not_trainable(tmp_path: Path) -> None:
    register_model(ImportedVAE)
    try:
        assert not ImportedVAE.trainable() and VAE.trainable()
        assert "test-imported-vae" not in trainable_model_names() and "vae" in trainable_model_names()
        from napari_latent.training import train_model

        with pytest.raises(UserInputError, match="is imported, not trained by napari-latent; train one of"):
            train_model(tmp_path, "test-imported-vae", image_size=32)
    finally:
        MODELS.remove("test-imported-vae")
