"""``napari-latent import``: conversion through a registered importer, the conversion check, one-line errors,
nothing written on failure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from napari_latent.cli import main
from napari_latent.models.checkpoint import load_model, read_header
from napari_latent.models.importers import IMPORTERS, ModelImporter, import_model, register_importer
from tests.models.test_importers import read_toy, sniff_toy, toy_importer, write_toy_file  # noqa: F401


def test_import_converts_and_the_checkpoint_decodes_the_same(tmp_path: Path, toy_importer,  # noqa: F811
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "weights.toy"
    write_toy_file(source)
    out = tmp_path / "model.safetensors"
    assert main(["import", str(source), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "imported weights.toy (toy) as a 'vae' model: 32 px, latent spaces z 4, with an encoder" in printed
    assert f"wrote {out}" in printed
    header = read_header(out)
    assert header["model"] == "vae" and header["training"]["imported"] == {"format": "toy", "file": "weights.toy"}
    converted, imported = load_model(out, device="cpu"), load_model(source, device="cpu")
    codes = torch.randn(3, 4, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(converted.decode(codes), imported.decode(codes))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "weights.toy"]  # no temporary left


def test_import_errors_are_one_line_with_exit_2_and_nothing_written(tmp_path: Path, toy_importer,  # noqa: F811
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "weights.toy"
    write_toy_file(source)
    out = tmp_path / "model.safetensors"
    cases = [
        (["--out", str(tmp_path / "model.nii.gz")], "the output must be a .safetensors file"),
        (["--out", str(tmp_path / "missing" / "m.safetensors")], "no such folder"),
        (["--out", str(out), "--grey", "luminance"], "the toy importer has no option(s) grey"),
        (["--out", str(out), "--format", "nope"], "unknown model importer 'nope'"),
    ]
    for extra, message in cases:
        assert main(["import", str(source), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    junk = tmp_path / "junk.toy"
    junk.write_bytes(b"nothing")
    assert main(["import", str(junk), "--out", str(out)]) == 2
    assert "not a napari-latent model and not a format that can be imported" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.toy", "weights.toy"]


def test_a_conversion_that_changes_the_outputs_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    # an importer whose model keeps part of its behaviour outside its state dict: the saved checkpoint differs
    def read_drifting(path: Path) -> object:
        model = read_toy(path)
        model.decoder_offset = 0.5
        original = model.decode
        model.decode = lambda codes, space=None: (original(codes, space) + model.decoder_offset).clamp(-1, 1)
        return model

    register_importer(ModelImporter(name="drifting", description="drifting toy", suffixes=(".toy",),
                                    sniff=sniff_toy, read=read_drifting))
    try:
        source = tmp_path / "weights.toy"
        write_toy_file(source)
        out = tmp_path / "model.safetensors"
        assert main(["import", str(source), "--format", "drifting", "--out", str(out)]) == 2
        assert "outputs differ from the imported model's" in capsys.readouterr().err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.toy"]
    finally:
        IMPORTERS.remove("drifting")


def test_import_of_a_monai_autoencoder_decodes_like_monai(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nets = pytest.importorskip("monai.networks.nets", reason="MONAI is not installed (napari-latent[monai])")
    from tests.models.monai_autoencoders.conftest import KL_ARGS

    torch.manual_seed(0)
    net = nets.AutoencoderKL(**KL_ARGS).eval()
    weights, config = tmp_path / "model.pt", tmp_path / "network.json"
    torch.save(net.state_dict(), weights)
    config.write_text(json.dumps({"_target_": "monai.networks.nets.AutoencoderKL", **KL_ARGS}))
    out = tmp_path / "kl.safetensors"
    assert main(["import", str(weights), "--config", str(config), "--image-size", "32", "--out", str(out)]) == 0
    assert "as a 'monai-autoencoderkl' model: 32 px" in capsys.readouterr().out
    model = load_model(out, device="cpu")
    codes = torch.randn(2, model.latent_dim(), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model.decode(codes)
        theirs = net.decode(codes.reshape(2, KL_ARGS["latent_channels"], 8, 8)) * 2 - 1  # [0, 1] -> [-1, 1]
    assert float((ours - theirs).abs().max()) < 1e-5
    # options the format does not have, and a missing config: one line, exit 2, nothing written
    other = str(tmp_path / "x.safetensors")
    assert main(["import", str(weights), "--config", str(config), "--grey", "red", "--out", other]) == 2
    assert "the monai importer has no option(s) grey" in capsys.readouterr().err
    assert main(["import", str(weights), "--format", "monai", "--out", other]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config" in err
    assert not (tmp_path / "x.safetensors").exists()


def test_import_of_a_stylegan2_ada_snapshot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.models.stylegan2_ada.test_import import tiny, write_snapshot

    model = tiny(c_dim=3, class_index=0)
    snapshot = write_snapshot(tmp_path, model)
    out = tmp_path / "sg2.safetensors"
    # a conditional generator needs its class: one line, exit 2, nothing written
    assert main(["import", str(snapshot), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "class_index" in err and not out.exists()
    assert main(["import", str(snapshot), "--class-index", "1", "--truncation-psi", "0.7", "--out", str(out)]) == 0
    assert "as a 'stylegan2-ada' model: 32 px" in capsys.readouterr().out
    converted = load_model(out, device="cpu")
    assert converted.config.class_index == 1 and converted.config.truncation_psi == 0.7
    codes = converted.sample_latent(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        images = converted.decode(codes)
        assert torch.equal(images, import_model(snapshot, class_index=1, truncation_psi=0.7).decode(codes))
        assert not torch.equal(images, import_model(snapshot, class_index=2, truncation_psi=0.7).decode(codes))


def test_a_hostile_snapshot_is_refused_and_nothing_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.models.stylegan2_ada.test_safety import call_pickle

    marker = tmp_path / "pwned"
    source = tmp_path / "network-snapshot-000000.pkl"
    source.write_bytes(call_pickle("posix", "system", f"touch {marker}"))
    out = tmp_path / "model.safetensors"
    assert main(["import", str(source), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "posix.system" in err
    assert not marker.exists() and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [source.name]
