#!/usr/bin/env bash
# Trains the shipped pretrained weights of the four paper networks on the paper's 272
# training pairs and copies them into the package. Run from the repository root with
# ../shared/fusevis-paper beside it (or FUSEVIS_PAPER_DATA set). Takes ~25 min on 2 CPU cores.
set -euo pipefail
DATA="${FUSEVIS_PAPER_DATA:-../shared/fusevis-paper}"
FUSEVIS="${FUSEVIS:-.venv/bin/fusevis}"
WEIGHTS=src/fusevis/models/weights
mkdir -p "$WEIGHTS" runs
train() {  # NAME EPOCHS
  "$FUSEVIS" train --model "$1" --data "$DATA/train" --modalities mri,pet \
    --epochs "$2" --batch-size 8 --crop 64 --lr 0.002 --seed 0 --out "runs/$1" \
    --test-pair "$DATA/test-pair/mri.gif" --test-pair "$DATA/test-pair/pet.png"
  cp "runs/$1/weights.safetensors" "$WEIGHTS/$1.safetensors"
}
for spec in ${MODELS:-DeepFuse:30 DeepPedestrian:20 FunFuseAn:20 MaskNet:12}; do
  train "${spec%%:*}" "${spec##*:}" || echo "training ${spec%%:*} failed" >&2
done
