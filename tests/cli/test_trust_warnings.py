"""The command line's trust warnings: ``invert`` and ``traverse`` say when a subject is far from the model's data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_latent.cli import main
from napari_latent.volumes.io import Volume, open_volume, save_volume
from napari_latent.volumes.phantoms import make_phantom_cohort

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def volumes(tmp_path_factory) -> tuple[Path, Path]:
    """A phantom of the demo model's kind, and the same phantom with its contrast inverted."""
    folder = tmp_path_factory.mktemp("trust_cli")
    make_phantom_cohort(folder, n_subjects=2, size=64, seed=3)
    good = sorted(folder.glob("*.nii.gz"))[0]
    volume = open_volume(good)
    inverted = Volume(volume.data.max() - volume.data, volume.affine, name="inverted")
    return good, save_volume(inverted, folder / "inverted.nii.gz", like=volume)


def test_invert_warns_about_a_subject_far_from_the_training_data(capsys, tmp_path: Path, volumes) -> None:
    good, inverted = volumes
    assert main(["invert", "demo", str(good), "--out", str(tmp_path / "good.safetensors"), "--quiet"]) == 0
    assert "warning:" not in capsys.readouterr().err
    assert main(["invert", "demo", str(inverted), "--out", str(tmp_path / "bad.safetensors"), "--quiet"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: ") and "times the validation MSE" in err[0]
    ratio = float(err[0].split(", ")[1].split(" times")[0])
    assert ratio > 10


def test_traverse_repeats_the_inversion_and_direction_warnings(capsys, tmp_path: Path, volumes) -> None:
    _, inverted = volumes
    dirs = tmp_path / "sefa.safetensors"
    assert main(["discover", "demo", "--method", "sefa", "--count", "2", "--out", str(dirs), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["traverse", "demo", str(inverted), "--directions", str(dirs), "--index", "0", "--alphas", "-1:1:3",
                 "--out", str(tmp_path / "t.nii.gz"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: ") == 1 and "inversion MSE" in err
    assert np.isfinite(open_volume(tmp_path / "t.nii.gz", index=2).data).all()
