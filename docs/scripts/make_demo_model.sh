#!/usr/bin/env bash
# Rebuilds the bundled demo model (napari_latent/models/data/demo.safetensors) with our own
# training command, then compares the new file's data fingerprint with the bundled one.
#
#   bash docs/scripts/make_demo_model.sh [OUT_DIR] [PHANTOM_SEED]
#
# The bundled file's header records the training run: a vae with the default config at
# 64 px (latent 32), axial slices, 40 subjects (32 training, 8 validation), 2554 training
# slices, 30 epochs of batch 32, seed 7, default augmentation, float16 weights without
# training state (--compact). It does not record the phantom cohort's size and seed: 2554
# slices from 32 subjects matches 96-voxel phantoms, and 40 phantoms of 96^3 with seed 7
# reproduce the bundled data fingerprint exactly (ebfdca304cc1c072, checked 2026-12-01): this is
# the bundled model's data. The fingerprint check below repeats that check. Takes a few hours
# on a 2-core CPU.
set -euo pipefail
out=${1:-demo-model}
phantom_seed=${2:-7}
mkdir -p "$out"
napari-latent phantoms "$out/cohort" --subjects 40 --size 96 --seed "$phantom_seed" --overwrite
napari-latent train "$out/cohort" --model vae --size 64 --latent-dim 32 --epochs 30 --batch-size 32 \
  --seed 7 --out "$out/demo.safetensors" --overwrite --compact
python - "$out/demo.safetensors" <<'PY'
import sys

from napari_latent.models.checkpoint import read_header

new = read_header(sys.argv[1])["training"]
bundled = read_header("demo")["training"]
for key in ("data_fingerprint", "train_slices", "steps"):
    print(f"{key}: new {new[key]}, bundled {bundled[key]}")
same = new["data_fingerprint"] == bundled["data_fingerprint"]
print("same data as the bundled model" if same else "other data than the bundled model (try another phantom seed)")
PY
