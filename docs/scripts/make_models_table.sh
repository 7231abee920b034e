#!/usr/bin/env bash
# Regenerates the reconstruction table of docs/models.md: the three autoencoder models trained
# with the same budget (epochs, batch size, image size, seed, data) on the same phantom cohort,
# then evaluated on the held-out validation subjects.
#
#   bash docs/scripts/make_models_table.sh [OUT_DIR]
#
# The budget (defaults: 12 subjects of 64^3, 5 epochs of batch 32 at 64 px, seed 3) is small
# so that it runs in minutes on a laptop CPU; SUBJECTS=40 EPOCHS=30 bash ... trains longer.
# The VAE and the IntroVAE get a 32-dimensional latent; a VQ-VAE's latent size is not free
# (it is code_dim x latent_resolution^2 = 16 x 8 x 8, quantised to 64 codes of a 256-code
# book), so it keeps its default.
set -euo pipefail
out=${1:-models-table}
subjects=${SUBJECTS:-12}
epochs=${EPOCHS:-5}
mkdir -p "$out"
rm -f "$out/times.txt"
# phantoms are byte-identical for the same arguments, so a cohort made by an earlier run is reused
stamp="subjects=$subjects size=64 seed=3"
if [ "$(cat "$out/cohort/.made-with" 2>/dev/null)" != "$stamp" ]; then
  napari-latent phantoms "$out/cohort" --subjects "$subjects" --size 64 --seed 3 --quiet --overwrite
  echo "$stamp" > "$out/cohort/.made-with"
fi
for model in vae introvae vqvae; do
  latent=(--latent-dim 32)
  if [ "$model" = vqvae ]; then latent=(); fi
  start=$(date +%s)
  napari-latent train "$out/cohort" --model "$model" --size 64 "${latent[@]}" --epochs "$epochs" \
    --batch-size 32 --seed 3 --device cpu --out "$out/$model.safetensors" --overwrite --quiet
  echo "$model train_seconds $(( $(date +%s) - start ))" | tee -a "$out/times.txt"
  napari-latent evaluate "$out/$model.safetensors" "$out/cohort" --device cpu --json "$out/$model.json" --quiet
done
python - "$out" <<'PY'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
times = dict(line.split(" train_seconds ") for line in (out / "times.txt").read_text().splitlines())
print("| model | MSE | PSNR (dB) | SSIM | MS-SSIM | Fréchet distance | train s |")
print("|---|---|---|---|---|---|---|")
for model in ("vae", "introvae", "vqvae"):
    m = json.loads((out / f"{model}.json").read_text())
    print(f"| {model} | {m['mse']:.4f} | {m['psnr']:.2f} | {m['ssim']:.3f} | {m['ms_ssim']:.3f} "
          f"| {m['frechet_distance']:.2f} ({m['frechet_features']}) | {times[model].strip()} |")
PY
