"""Plugins installed the way users install them, used from fresh processes.

``tests/plugin_example`` (the example of docs/contributing.md) is a package that adds the
``tinyae`` model family and its objective through entry points. It is installed with
``pip install --target`` (built by setuptools, a testing extra, without network) into a
temporary folder, which then goes on ``PYTHONPATH`` of fresh processes that run the command
line (``phantoms``, ``train``, ``discover``, ``traverse``, ``eigen``), load its checkpoint
by the registered name and run the model contract on it. Without the plugin the same
checkpoint fails with one clear error. A broken plugin (its module raises on import) is
reported by a warning and leaves the built-ins working.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "tests" / "plugin_example"
TIMEOUT = 300

pytestmark = pytest.mark.slow

BROKEN_PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "napari-latent-broken"
version = "0.1.0"

[project.entry-points."napari_latent.models"]
broken = "napari_latent_broken.model"

[tool.setuptools]
packages = ["napari_latent_broken"]
"""


def pip_install(source: Path, target: Path, scratch: Path) -> Path:
    """``pip install --no-deps --no-build-isolation --target target`` of a copy of ``source`` (no network).

    The copy keeps the build's ``build/`` and ``*.egg-info`` folders out of the source tree.
    """
    copy = scratch / source.name
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                             "--target", str(target), str(copy)], capture_output=True, text=True, env=env,
                            timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    return target


def run(args: list[str], cwd: Path, site: Path | None) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` in a fresh process, ``site`` (a plugin's install folder) and the repository on its path."""
    path = [str(site)] if site is not None else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*path, str(ROOT)]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=TIMEOUT)


def cli(cwd: Path, site: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    """``napari-latent ARGS`` in a fresh process."""
    return run(["-m", "napari_latent", *args], cwd, site)


@pytest.fixture(scope="session")
def tinyae_site(tmp_path_factory) -> Path:
    """The example plugin, installed into a folder of its own."""
    return pip_install(EXAMPLE, tmp_path_factory.mktemp("site_tinyae"), tmp_path_factory.mktemp("build_tinyae"))


@pytest.fixture(scope="session")
def broken_site(tmp_path_factory) -> Path:
    """A plugin whose model module raises on import, installed the same way."""
    source = tmp_path_factory.mktemp("broken_source") / "napari_latent_broken"
    (source / "napari_latent_broken").mkdir(parents=True)
    (source / "pyproject.toml").write_text(BROKEN_PYPROJECT)
    (source / "napari_latent_broken" / "__init__.py").write_text("")
    (source / "napari_latent_broken" / "model.py").write_text(
        'raise RuntimeError("napari_latent_broken is broken on purpose")\n')
    return pip_install(source, tmp_path_factory.mktemp("site_broken"), tmp_path_factory.mktemp("build_broken"))


@pytest.fixture(scope="module")
def trained(tinyae_site: Path, tmp_path_factory) -> tuple[Path, str]:
    """A folder with a tiny phantom cohort and a tinyae model trained on it from the CLI; the train output."""
    work = tmp_path_factory.mktemp("plugin_run")
    result = cli(work, tinyae_site, "phantoms", "data", "--subjects", "4", "--size", "32", "--quiet")
    assert result.returncode == 0, result.stderr
    result = cli(work, tinyae_site, "train", "data", "--model", "tinyae", "--out", "m.safetensors", "--epochs", "3",
                 "--size", "32", "--batch-size", "16", "--no-augment", "--device", "cpu", "--quiet")
    assert result.returncode == 0, result.stderr
    return work, result.stdout


def test_train_discover_traverse_eigen_from_the_cli(trained: tuple[Path, str], tinyae_site: Path) -> None:
    work, train_output = trained
    match = re.search(r"done: 3 epochs, \d+ steps; saved m\.safetensors \(val_mse ([\d.e+-]+), val_psnr", train_output)
    assert match, train_output
    assert math.isfinite(float(match.group(1))) and float(match.group(1)) > 0

    result = cli(work, tinyae_site, "discover", "m.safetensors", "--method", "sefa", "--count", "4",
                 "--out", "d.safetensors", "--device", "cpu", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "4 sefa directions in space z of tinyae" in result.stdout

    source = nib.load(work / "data" / "sub-001.nii.gz")
    result = cli(work, tinyae_site, "traverse", "m.safetensors", "data/sub-001.nii.gz", "--directions", "d.safetensors",
                 "--index", "0", "--alphas=-2:2:3", "--out", "t.nii.gz", "--device", "cpu", "--quiet")
    assert result.returncode == 0, result.stderr
    traversal = nib.load(work / "t.nii.gz")
    assert traversal.shape == (*source.shape, 3)
    np.testing.assert_allclose(traversal.affine, source.affine)
    frames = np.asarray(traversal.dataobj)
    assert np.isfinite(frames).all() and not np.array_equal(frames[..., 0], frames[..., 2])
    sidecar = json.loads((work / "t.json").read_text())
    assert (sidecar["model"], sidecar["space"], sidecar["alphas"]) == ("tinyae", "z", [-2.0, 0.0, 2.0])

    result = cli(work, tinyae_site, "eigen", "t.nii.gz", "--out", "eig", "--no-report", "--quiet")
    assert result.returncode == 0, result.stderr
    for k in (1, 2, 3):
        component = nib.load(work / "eig" / f"component_{k}.nii.gz")
        assert component.shape == source.shape
        np.testing.assert_allclose(component.affine, source.affine)
    ratios = json.loads((work / "eig" / "eigen.json").read_text())["explained_variance_ratio"]
    assert len(ratios) == 3 and abs(sum(ratios) - 1.0) < 1e-6


def test_a_fresh_process_loads_the_checkpoint_by_its_registered_name(trained: tuple[Path, str],
                                                                       tinyae_site: Path) -> None:
    work, _ = trained
    code = textwrap.dedent("""
        import json, torch
        from napari_latent import load_model
        from napari_latent.models.base import MODELS
        from napari_latent.models.checkpoint import read_checkpoint
        model = load_model("m.safetensors", device="cpu")
        images = model.decode(model.sample_latent(2, torch.Generator().manual_seed(0)))
        history = read_checkpoint("m.safetensors").state["history"]
        print(json.dumps({"name": model.name, "class": type(model).__module__, "origin": MODELS.origin("tinyae"),
                          "shape": list(images.shape), "codes": list(model.encode(images).shape),
                          "val_mse": [row["val_mse"] for row in history]}))
    """)
    result = run(["-c", code], work, tinyae_site)
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["name"] == "tinyae"
    assert facts["class"] == facts["origin"] == "napari_latent_tinyae.model"
    assert facts["shape"] == [2, 1, 32, 32] and facts["codes"] == [2, 8]
    errors = facts["val_mse"]
    assert len(errors) == 3 and all(math.isfinite(e) for e in errors)
    assert errors[0] > errors[1] > errors[2]  # the reconstruction error falls, epoch by epoch


def test_without_the_plugin_the_checkpoint_fails_with_one_clear_error(trained: tuple[Path, str]) -> None:
    work, _ = trained
    result = run(["-c", "from napari_latent import load_model\n"
                        "try:\n    load_model('m.safetensors', device='cpu')\n"
                        "except Exception as exc:\n    print(type(exc).__name__, exc)"], work, None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("UserInputError unknown model 'tinyae'; choose one of dcgan, ")
    result = cli(work, None, "discover", "m.safetensors", "--method", "sefa", "--count", "2", "--out", "d2.safetensors",
                 "--quiet")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("napari-latent discover: error: unknown model 'tinyae'; choose one of dcgan, introvae, ")
    assert not (work / "d2.safetensors").exists()


def test_a_broken_plugin_is_named_and_the_built_ins_still_work(broken_site: Path, tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import json, warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from napari_latent.models.base import build_model, model_names
            names = model_names()
        try:
            build_model("broken")
            error = ""
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        vae = build_model("vae", image_size=32, latent_dim=4, base_channels=4, max_channels=8)
        print(json.dumps({"names": names, "error": error, "shape": list(vae.decode(vae.sample_latent(1)).shape),
                          "warnings": [f"{w.category.__name__}: {w.message}" for w in caught]}))
    """)
    result = run(["-c", code], tmp_path, broken_site)
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert {"vae", "introvae", "vqvae", "dcgan", "stylegan"} <= set(facts["names"]) and "broken" not in facts["names"]
    assert facts["shape"] == [1, 1, 32, 32]
    assert facts["warnings"] == [
        "PluginWarning: napari-latent: the model plugin entry point 'broken' (napari_latent_broken.model) of the group "
        "'napari_latent.models' failed to load: RuntimeError: napari_latent_broken is broken on purpose"]
    assert facts["error"].startswith("UserInputError: unknown model 'broken'; choose one of dcgan, ")
    assert facts["error"].endswith("; plugin entry 'broken' failed to load "
                                   "(RuntimeError: napari_latent_broken is broken on purpose)")

    result = cli(tmp_path, broken_site, "train", "data", "--model", "broken", "--out", "b.safetensors", "--quiet")
    assert result.returncode == 2
    assert "entry point 'broken' (napari_latent_broken.model)" in result.stderr  # the failure is named ...
    assert "RuntimeError: napari_latent_broken is broken on purpose" in result.stderr
    error = result.stderr.strip().splitlines()[-1]  # ... and the one-line error lists the built-ins and names it again
    assert "unknown model 'broken'; choose one of dcgan, " in error
    assert all(name in error for name in ("dcgan", "introvae", "stylegan", "vae", "vqvae"))
    assert error.endswith("plugin entry 'broken' failed to load "
                          "(RuntimeError: napari_latent_broken is broken on purpose)")
    assert "Traceback" not in result.stderr


def test_the_model_contract_checks_the_plugins_family(tinyae_site: Path, tmp_path: Path) -> None:
    """tests/models/test_contract.py is parametrised over the registered families: installing a plugin adds its own."""
    contract = ROOT / "tests" / "models" / "test_contract.py"
    result = run(["-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", "-p", "no:xvfb",  # needs no display
                  f"--basetemp={tmp_path / 'pytest'}", "-k", "tinyae", str(contract)], ROOT, tinyae_site)
    assert result.returncode == 0, result.stdout[-3000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert re.match(r"\d+ passed", summary), summary
    assert int(summary.split()[0]) >= 10  # round trip, description, every discovery and inversion method, ...
