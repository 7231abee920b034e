"""The command line for models: train, evaluate, invert, train-encoder (exit codes and outputs)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_latent.cli import main
from napari_latent.latent.codes import LatentCodes
from napari_latent.models.checkpoint import load_model, read_checkpoint

TINY = ["--size", "32", "--latent-dim", "8", "--set", "base_channels=8", "--set", "max_channels=32",
        "--batch-size", "16", "--device", "cpu", "--quiet", "--lr", "0.002"]


@pytest.fixture(scope="module")
def cli_model(tiny_cohort: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "vae.safetensors"
    assert main(["train", str(tiny_cohort), "--model", "vae", "--out", str(out), "--epochs", "3", *TINY]) == 0
    return out


def test_train_writes_a_loadable_model(cli_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = load_model(cli_model, device="cpu")
    assert model.name == "vae" and model.image_size == 32 and model.config.latent_dim == 8
    assert model.training_info["epochs"] == 3


def test_train_resume_and_compact(cli_model: Path, tiny_cohort: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(cli_model.read_bytes())
    assert main(["train", str(tiny_cohort), "--model", "vae", "--out", str(copy), "--epochs", "4", "--resume",
                 "--device", "cpu", "--quiet", "--compact"]) == 0
    assert "4 epochs" in capsys.readouterr().out
    checkpoint = read_checkpoint(copy, device="cpu")
    assert checkpoint.state is None and checkpoint.header["half_precision"] is True
    assert copy.stat().st_size < cli_model.stat().st_size / 2


@pytest.mark.parametrize("argv, message", [
    (["train", "{empty}", "--model", "vae", "--out", "{tmp}/m.safetensors"], "the folder is empty"),
    (["train", "{cohort}", "--model", "vae", "--out", "{tmp}/m.pt"], "must end in .safetensors"),
    (["train", "{cohort}", "--model", "vae", "--out", "{model}"], "exists"),
    (["train", "{cohort}", "--model", "vae", "--out", "{tmp}/m.safetensors", "--set", "colour=red"], "no setting"),
    (["train", "{cohort}", "--model", "vae", "--out", "{tmp}/m.safetensors", "--set", "oops"], "KEY=VALUE"),
    (["evaluate", "{tmp}/random.safetensors", "{cohort}"], "not a napari-latent model file"),
    (["invert", "{model}", "{tmp}/missing.nii.gz", "--out", "{tmp}/c.safetensors"], "no such file"),
    (["invert", "{model}", "{cohort}/sub-001.nii.gz", "--out", "{tmp}/c.safetensors", "--space", "w"],
     "no latent space 'w'"),
    (["train-encoder", "demo"], "cannot be changed"),
    (["train", "{cohort}", "--model", "vae", "--out", "{tmp}/m.safetensors", "--no-amp", "--precision", "bf16"],
     "--no-amp means --precision fp32"),
    (["train", "{cohort}", "--model", "vae", "--out", "{tmp}/m.safetensors", "--precision", "fp16", "--device", "cpu"],
     "fp16 mixed precision needs a CUDA device"),
    (["train", "{cohort}", "--model", "stylegan", "--out", "{tmp}/m.safetensors", "--precision", "fp16"],
     "does not train in fp16"),
])
def test_user_errors_are_one_line_exit_2(argv: list[str], message: str, cli_model: Path, tiny_cohort: Path,
                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "random.safetensors").write_bytes(np.random.default_rng(0).bytes(3000))
    values = {"empty": tmp_path / "empty", "tmp": tmp_path, "cohort": tiny_cohort, "model": cli_model}
    assert main([a.format(**values) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert message in err


def test_unsupported_image_size_is_a_usage_error(tiny_cohort: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["train", str(tiny_cohort), "--model", "vae", "--out", str(tmp_path / "m.safetensors"), "--size", "100"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_evaluate_reports_the_metric_keys(cli_model: Path, tiny_cohort: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "metrics.json"
    assert main(["evaluate", str(cli_model), str(tiny_cohort), "--json", str(out), "--quiet", "--device", "cpu"]) == 0
    report = json.loads(out.read_text())
    for key in ("mse", "psnr", "ssim", "ms_ssim", "frechet_distance"):
        assert np.isfinite(report[key])
    assert report["frechet_features"] == "FD-randconv64"
    assert report["evaluated_on"].startswith("validation subjects")
    captured = capsys.readouterr()
    assert "ms_ssim" in captured.out
    # a warning line on stderr exactly when the reconstruction is below 20 dB PSNR or 0.6 SSIM
    expected = int(report["psnr"] < 20.0) + int(report["ssim"] < 0.6)
    assert captured.err.count("reconstructs held-out slices poorly") == expected


def test_evaluate_with_local_inception_weights_reports_fid(cli_model: Path, tiny_cohort: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import torch
    from safetensors.torch import save_file

    from napari_latent.analysis import inception

    torch.manual_seed(0)
    weights = tmp_path / "inception.safetensors"
    save_file(inception._FIDInceptionV3().state_dict(), str(weights))  # the structure; real weights are not here
    out = tmp_path / "metrics.json"
    assert main(["evaluate", str(cli_model), str(tiny_cohort), "--inception", str(weights), "--samples", "4",
                 "--json", str(out), "--quiet", "--device", "cpu"]) == 0
    report = json.loads(out.read_text())
    assert report["frechet_features"] == "FID" and np.isfinite(report["frechet_distance"])
    # the tiny model reconstructs poorly: the evaluation says so on stderr (analysis.trust)
    assert "warning: the vae model reconstructs held-out slices poorly" in capsys.readouterr().err
    pickled = tmp_path / "inception.pth"
    pickled.write_bytes(b"\x80\x04K\x01.")
    assert main(["evaluate", str(cli_model), str(tiny_cohort), "--inception", str(pickled), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "never loaded" in err


def test_invert_writes_codes_and_a_reconstruction_on_the_source_grid(cli_model: Path, tiny_cohort: Path,
                                                                      tmp_path: Path) -> None:
    volume_path = tiny_cohort / "sub-002.nii.gz"
    codes_path, recon = tmp_path / "codes.safetensors", tmp_path / "rec.nii.gz"
    assert main(["invert", str(cli_model), str(volume_path), "--out", str(codes_path), "--method", "hybrid",
                 "--steps", "10", "--reconstruction", str(recon), "--device", "cpu", "--quiet"]) == 0
    codes = LatentCodes.load(codes_path)
    assert codes.method == "hybrid" and codes.settings["steps"] == 10
    source, image = nib.load(volume_path), nib.load(recon)
    assert image.shape == source.shape
    np.testing.assert_allclose(image.affine, source.affine)


def test_train_encoder_stores_the_encoder_in_the_model_file(cli_model: Path, tmp_path: Path,
                                                             tiny_cohort: Path) -> None:
    copy = tmp_path / "model.safetensors"
    copy.write_bytes(cli_model.read_bytes())
    assert main(["train-encoder", str(copy), "--steps", "20", "--batch-size", "8", "--device", "cpu", "--quiet"]) == 0
    model = load_model(copy, device="cpu")
    assert "inversion_encoder" in model.extras
    assert model.training_info["inversion_encoder"]["steps"] == 20
    assert read_checkpoint(copy, device="cpu").state is not None  # training state kept


@pytest.mark.parametrize("pair, message", [
    ("base_channels=abc", "model 'vae': base_channels must be a whole number, got 'abc'"),
    ("beta=heavy", "model 'vae': beta must be a number, got 'heavy'"),
    ("colour=red", "model 'vae' has no setting(s) colour; it accepts base_channels, beta, blocks_per_level, "
     "image_size, latent_dim, max_channels"),
])
def test_train_set_is_checked_against_the_model_config(pair: str, message: str, tiny_cohort: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.safetensors"
    assert main(["train", str(tiny_cohort), "--model", "vae", "--set", pair, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("napari-latent train: error: "), err
    assert message in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_train_set_leaves_out_derived_settings(tiny_cohort: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.safetensors"
    assert main(["train", str(tiny_cohort), "--model", "vqvae", "--set", "latent_dim=64", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "model 'vqvae' has no setting(s) latent_dim" in err and "codebook_size" in err
    assert not out.exists()


@pytest.fixture(scope="module")
def ct_window_model(tiny_cohort: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli-window") / "ct.safetensors"
    assert main(["train", str(tiny_cohort), "--model", "vae", "--out", str(out), "--epochs", "1",
                 "--window", "-1000:400", *TINY]) == 0  # a negative LOW as its own word
    return out


def test_train_window_is_stored_in_the_model_and_used_by_invert(ct_window_model: Path, tiny_cohort: Path,
                                                                 tmp_path: Path) -> None:
    spec = load_model(ct_window_model, device="cpu").slice_spec
    assert spec.fixed_window == (-1000.0, 400.0) and spec.window_name is None
    codes_path = tmp_path / "codes.safetensors"
    assert main(["invert", str(ct_window_model), str(tiny_cohort / "sub-001.nii.gz"), "--out", str(codes_path),
                 "--steps", "2", "--device", "cpu", "--quiet"]) == 0
    geometry = LatentCodes.load(codes_path).geometry
    assert geometry.window_values == (-1000.0, 400.0)
    assert geometry.spec.fixed_window == (-1000.0, 400.0)


def test_train_window_preset(tiny_cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "lung.safetensors"
    assert main(["train", str(tiny_cohort), "--model", "vae", "--out", str(out), "--epochs", "1",
                 "--window", "Lung", *TINY]) == 0
    spec = load_model(out, device="cpu").slice_spec
    assert (spec.window_name, spec.fixed_window) == ("lung", (-1350.0, 150.0))


def test_train_default_window_is_per_volume_percentiles(cli_model: Path) -> None:
    spec = load_model(cli_model, device="cpu").slice_spec
    assert spec.fixed_window is None and spec.window_text == "auto"


@pytest.mark.parametrize("window", ["-1000:400", "--window=-1000:400"])
def test_resume_keeps_the_window_and_accepts_the_same_one(ct_window_model: Path, tiny_cohort: Path, tmp_path: Path,
                                                          window: str) -> None:
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(ct_window_model.read_bytes())
    option = [window] if window.startswith("--") else ["--window", window]
    assert main(["train", str(tiny_cohort), "--model", "vae", "--out", str(copy), "--epochs", "2", "--resume",
                 *option, "--device", "cpu", "--quiet"]) == 0
    assert load_model(copy, device="cpu").slice_spec.fixed_window == (-1000.0, 400.0)


@pytest.mark.parametrize("window, trained", [("lung", "-1000:400"), ("auto", "-1000:400")])
def test_resume_with_another_window_is_refused(ct_window_model: Path, tiny_cohort: Path, tmp_path: Path,
                                               window: str, trained: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(ct_window_model.read_bytes())
    before = copy.read_bytes()
    assert main(["train", str(tiny_cohort), "--model", "vae", "--out", str(copy), "--epochs", "2", "--resume",
                 "--window", window, "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"trained with --window {trained}" in err and "--resume keeps it" in err
    assert copy.read_bytes() == before


def test_resume_of_a_percentile_model_with_a_fixed_window_is_refused(cli_model: Path, tiny_cohort: Path,
                                                                     tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(cli_model.read_bytes())
    assert main(["train", str(tiny_cohort), "--model", "vae", "--out", str(copy), "--resume",
                 "--window", "-160:240", "--device", "cpu", "--quiet"]) == 2
    assert "trained with --window auto" in capsys.readouterr().err


@pytest.mark.parametrize("window, message", [
    ("400:-1000", "needs low < high"),
    ("liver", "unknown intensity window 'liver'; use LOW:HIGH"),
    ("-1000:", "unknown intensity window"),
])
def test_bad_train_window_is_one_line_exit_2(window: str, message: str, tiny_cohort: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.safetensors"
    assert main(["train", str(tiny_cohort), "--model", "vae", "--out", str(out), "--window", window, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("napari-latent train: error: "), err
    assert message in err
    assert not out.exists()


def test_resume_names_each_typed_option_it_ignores(cli_model: Path, tiny_cohort: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(cli_model.read_bytes())
    resume = ["train", str(tiny_cohort), "--model", "vae", "--out", str(copy), "--resume", "--device", "cpu", "--quiet"]
    capsys.readouterr()
    assert main([*resume, "--epochs", "4", "--batch-size", "8", "--lr", "0.01", "--seed", "0", "--rotation", "5"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "napari-latent train: warning: --batch-size 8 is ignored on --resume: the run keeps its batch size (16)",
        "napari-latent train: warning: --lr 0.01 is ignored on --resume: the run keeps its learning rate (0.002)",
    ]  # --seed 0 and --rotation 5 are the run's own values: nothing to say
    settings = read_checkpoint(copy, device="cpu").training["settings"]
    assert (settings["epochs"], settings["batch_size"], settings["lr"]) == (4, 16, 0.002)
    assert main([*resume, "--epochs", "2", "--no-augment"]) == 0  # a finished run: nothing left to train
    assert capsys.readouterr().err.splitlines() == [
        "napari-latent train: warning: --epochs 2 is ignored on --resume: the run already trains for 4 epochs "
        "(--epochs can only raise them)",
        "napari-latent train: warning: --no-augment is ignored on --resume: the run keeps its rotation (5.0)",
        "napari-latent train: warning: --no-augment is ignored on --resume: the run keeps its scale (0.05)",
    ]
    assert main(resume) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "4 epochs, 40 steps" in captured.out  # without --epochs the run ends where it was going to


def test_resume_with_another_number_of_processes_is_refused(cli_model: Path, tiny_cohort: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(cli_model.read_bytes())
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert main(["train", str(tiny_cohort), "--model", "vae", "--out", str(copy), "--resume", "--device", "cpu",
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "trained by 1 process(es) and cannot be resumed by 2" in err, err
    assert copy.read_bytes() == cli_model.read_bytes()


def test_tensorboard_without_the_package_is_one_line_and_writes_nothing(tiny_cohort: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # what a missing package looks like
    out, logs = tmp_path / "m.safetensors", tmp_path / "tb"
    assert main(["train", str(tiny_cohort), "--model", "vae", "--out", str(out), "--tensorboard", str(logs),
                 *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs the tensorboard package" in err and "[tensorboard]" in err, err
    assert not out.exists() and not logs.exists()
