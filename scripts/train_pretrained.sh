#!/usr/bin/env bash
# Trains the shipped pretrained weights of the four paper networks on the paper's 272
# training pairs and copies them into the package. Run from the repository root with
# ../shared/fusevis-paper beside it (or FUSEVIS_PAPER_DATA set). About 30 min on 2 CPU cores.
#
# MODELS lists NAME:EPOCHS:LR:CLIP:SCHEDULE[:skip] (skip: --skip-nonfinite). The networks whose last layer is BatchNorm +
# tanh (DeepFuse, MaskNet) learn slowly at the paper's constant lr 0.002 on a small CPU
# budget; FunFuseAn's max(h1, h2) / (h1 + h2) rule diverges (NaN) at lr 0.002 unless the
# gradient norm is clipped, and even then a few batches give a non-finite loss
# (h1 + h2 near 0), which are skipped (3 of 510 steps; their BatchNorm updates are undone).
set -euo pipefail
DATA="${FUSEVIS_PAPER_DATA:-../shared/fusevis-paper}"
FUSEVIS="${FUSEVIS:-.venv/bin/fusevis}"
WEIGHTS=src/fusevis/models/weights
DEFAULT_MODELS="DeepPedestrian:10:0.002:0:constant DeepFuse:20:0.01:0:cosine"
DEFAULT_MODELS+=" FunFuseAn:15:0.001:1.0:cosine:skip MaskNet:10:0.01:0:cosine"
mkdir -p "$WEIGHTS" runs

train() {
  local name=$1 epochs=$2 lr=$3 clip=$4 schedule=$5 skip=${6:-}
  local extra=()
  if [ "$clip" != "0" ]; then extra=(--clip-grad "$clip"); fi
  if [ "$skip" = "skip" ]; then extra+=(--skip-nonfinite); fi
  "$FUSEVIS" train --model "$name" --data "$DATA/train" --modalities mri,pet \
    --epochs "$epochs" --batch-size 8 --crop 64 --lr "$lr" --lr-schedule "$schedule" \
    "${extra[@]}" --seed 0 --out "runs/$name" \
    --test-pair "$DATA/test-pair/mri.gif" --test-pair "$DATA/test-pair/pet.png"
  cp "runs/$name/weights.safetensors" "$WEIGHTS/$name.safetensors"
}

for spec in ${MODELS:-$DEFAULT_MODELS}; do
  IFS=: read -r name epochs lr clip schedule skip <<< "$spec"
  train "$name" "$epochs" "$lr" "$clip" "$schedule" "$skip" || echo "training $name failed" >&2
done
