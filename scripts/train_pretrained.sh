#!/usr/bin/env bash
# Trains the shipped pretrained weights of the four paper networks on the paper's 272
# training pairs and copies them into the package. Run from the repository root with
# ../shared/fusevis-paper beside it (or FUSEVIS_PAPER_DATA set).
#
# MODELS lists NAME:EPOCHS:LR:CLIP:SCHEDULE:SKIP:RANGE[:noclip] (SKIP "skip":
# --skip-nonfinite; RANGE: the weight of the range term that keeps the fused image in [0, 1],
# see fusevis.training.losses.range_penalty; noclip: --no-ssim-clip). DEVICE picks the torch device (the shipped weights
# were trained on one H100 with DEVICE=cuda; on 2 CPU cores the same epochs take about
# 1.5 h). JOBS=N trains N networks at once. COPY=0 leaves the weights in runs/ only.
#
# The networks whose last layer is BatchNorm + tanh (DeepFuse, MaskNet) learn slowly at the
# paper's constant lr 0.002; FunFuseAn's max(h1, h2) / (h1 + h2) rule diverges (NaN) at lr
# 0.002 unless the gradient norm is clipped, and even then a few batches give a non-finite
# loss (h1 + h2 near 0), which are skipped (their BatchNorm updates are undone).
set -euo pipefail
DATA="${FUSEVIS_PAPER_DATA:-../shared/fusevis-paper}"
FUSEVIS="${FUSEVIS:-.venv/bin/fusevis}"
DEVICE="${DEVICE:-cpu}"
JOBS="${JOBS:-1}"
COPY="${COPY:-1}"
WEIGHTS=src/fusevis/models/weights
DEFAULT_MODELS="DeepPedestrian:40:0.002:0:cosine:-:1 DeepFuse:60:0.01:0:cosine:-:1"
DEFAULT_MODELS+=" FunFuseAn:45:0.001:1.0:cosine:skip:1 MaskNet:40:0.01:0:cosine:-:1"
mkdir -p "$WEIGHTS" runs

train() {
  local name=$1 epochs=$2 lr=$3 clip=$4 schedule=$5 skip=$6 range=$7 ssim=${8:-}
  local extra=() run="runs/$name-range$range$ssim"
  if [ "$clip" != "0" ]; then extra=(--clip-grad "$clip"); fi
  if [ "$skip" = "skip" ]; then extra+=(--skip-nonfinite); fi
  if [ "$ssim" = "noclip" ]; then extra+=(--no-ssim-clip); fi
  $FUSEVIS train --model "$name" --data "$DATA/train" --modalities mri,pet \
    --epochs "$epochs" --batch-size 8 --crop 64 --lr "$lr" --lr-schedule "$schedule" \
    --range-weight "$range" "${extra[@]}" --seed 0 --device "$DEVICE" --out "$run" \
    --test-pair "$DATA/test-pair/mri.gif" --test-pair "$DATA/test-pair/pet.png" \
    > "$run.log" 2>&1 || { echo "training $name (range $range) failed: see $run.log" >&2; return 1; }
  tail -n 1 "$run.log"
  if [ "$COPY" = 1 ]; then cp "$run/weights.safetensors" "$WEIGHTS/$name.safetensors"; fi
}

status=0
for spec in ${MODELS:-$DEFAULT_MODELS}; do
  IFS=: read -r name epochs lr clip schedule skip range ssim <<< "$spec"
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || status=1; done
  train "$name" "$epochs" "$lr" "$clip" "$schedule" "$skip" "${range:-1}" "${ssim:-}" &
done
while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || status=1; done
exit $status
