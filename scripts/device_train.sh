#!/usr/bin/env bash
# The device session that trained the shipped paper networks (issue 16, part 5), run on the
# GPU machine from the repository root, with the paper's training data carried in
# .paperdata/ (train/, test-pair/, fused/) and pytorch_msssim in .devicepkgs/ (the machine
# has torch but not that package). Trains every network three ways at once (range weight 1
# and 3 with SSIM of the image clipped at 0, range weight 1 without the clip) and writes the runs (weights, loss.csv, logs) to $OUT/runs.tar.gz.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONPATH="$PWD/src:$PWD/.devicepkgs" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
{ nvidia-smi -L; python3 -c 'import torch; print(torch.__version__)'; } > "$OUT/machine.txt" 2>&1
mkdir -p ../shared && ln -sfn "$PWD/.paperdata" ../shared/fusevis-paper
python3 -c 'import fusevis.cli.main, pytorch_msssim, safetensors' || exit 1
M1="DeepPedestrian:40:0.002:0:cosine:-:1 DeepFuse:60:0.01:0:cosine:-:1"
M1+=" FunFuseAn:45:0.001:1.0:cosine:skip:1 MaskNet:40:0.01:0:cosine:-:1"
M3=${M1//:1 /:3 }; M3=${M3%:1}:3
MN=${M1// /:noclip }:noclip
MODELS="$M1 $M3 $MN" JOBS=12 COPY=0 DEVICE=cuda FUSEVIS="python3 -m fusevis" \
  timeout "${LIMIT:-480}" bash scripts/train_pretrained.sh 2>&1 | tee "$OUT/train.log"
tar -czf "$OUT/runs.tar.gz" runs
