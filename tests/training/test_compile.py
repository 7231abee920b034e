"""``TrainSettings(compile=True)``: torch.compile (inductor, C++ kernels built with gcc) on the CPU."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from safetensors import safe_open

from napari_latent.models.checkpoint import load_model
from napari_latent.training import TrainSettings, train_model

#: The smallest VAE: no residual blocks (fewer kernels for gcc to build).
SMALL = {"image_size": 32, "latent_dim": 8, "base_channels": 8, "max_channels": 32, "blocks_per_level": 0}


@pytest.fixture(scope="module")
def two_subjects(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from napari_latent.volumes.phantoms import make_phantom_cohort

    folder = tmp_path_factory.mktemp("two")
    make_phantom_cohort(folder, n_subjects=2, size=32, seed=11)
    return folder


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # inductor's import
def test_a_compiled_vae_trains_two_steps_and_saves_plain_weights(two_subjects: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import torch._inductor.config as inductor

    # Scalar C++ kernels: the same dynamo -> AOTAutograd -> inductor -> gcc pipeline, but gcc builds them
    # about twice as fast as the AVX ones (measured on the 2-core CI machine), which keeps a cold cache
    # within the slow tests' budget.
    monkeypatch.setattr(inductor.cpp, "vec_isa_ok", False)
    # one step per epoch (every slice in one batch of the same shape), so the graph compiles once
    settings = {"epochs": 2, "batch_size": 256, "device": "cpu", "val_fraction": 0.0, "augment_rotation": 0.0,
                "augment_scale": 0.0, "lr": 2e-3}
    out = tmp_path / "compiled.safetensors"
    compiled = train_model(two_subjects, "vae", out=out, settings=TrainSettings(compile=True, **settings), **SMALL)
    eager = train_model(two_subjects, "vae", settings=TrainSettings(**settings), **SMALL)
    assert compiled.steps == 2
    losses = [row["loss"] for row in compiled.history]
    assert all(math.isfinite(v) for v in losses)
    for ours, reference in zip(compiled.history, eager.history, strict=True):  # the same numbers as eager mode
        assert ours["loss"] == pytest.approx(reference["loss"], rel=1e-4)
    with safe_open(str(out), "pt") as weights:
        keys = list(weights.keys())
    assert keys and not [k for k in keys if "_orig_mod" in k]
    model = load_model(out, device="cpu")
    assert model.training_info["settings"]["compile"] is True
    reference = eager.model.state_dict()
    assert set(model.state_dict()) == set(reference)
