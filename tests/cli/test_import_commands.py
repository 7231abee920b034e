"""``napari-latent import``: conversion through a registered importer, the conversion check, one-line errors,
nothing written on failure."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from napari_latent.cli import main
from napari_latent.models.checkpoint import load_model, read_header
from napari_latent.models.importers import IMPORTERS, ModelImporter, register_importer
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
