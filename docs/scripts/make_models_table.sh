#!/usr/bin/env bash
# Regenerates the reconstruction table of docs/models.md: the three autoencoder models trained
# with the same budget (epochs, batch size, image size, latent size, seed) on the same phantom
# cohort, then evaluated on the held-out validation subjects.
set -euo pipefail
out=${1:-models-table}
mkdir -p "$out"
napari-latent phantoms "$out/cohort" --subjects 24 --size 64 --seed 3 --quiet --overwrite
for model in vae introvae vqvae; do
  start=$(date +%s)
  napari-latent train "$out/cohort" --model "$model" --size 64 --latent-dim 32 --epochs 10 \
    --batch-size 32 --seed 3 --out "$out/$model.safetensors" --overwrite --quiet
  echo "$model train_seconds $(( $(date +%s) - start ))" | tee -a "$out/times.txt"
  napari-latent evaluate "$out/$model.safetensors" "$out/cohort" --json "$out/$model.json" --quiet
done
