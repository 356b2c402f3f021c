#!/usr/bin/env bash
# One device session's measurements, run on the GPU machine (see docs/gpu.md):
#   - issue 12: the saliency benchmark, the engine before the refactor (.bench-old, made by
#     `git archive 503e4c4 src benchmarks | tar -x -C .bench-old`) and now, side by side in
#     one run on separate pairs of idle cores (2 threads each, as the 2-core machine);
#   - issue 13: the zoo's guidance maps on the GPU at 256² (both ways of batching exact maps
#     for the networks without structure).
# Every part writes its log under $OUT as it goes; each has its own time limit.
set -u
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
{ nvidia-smi -L; lscpu | grep -E 'Model name|^CPU\(s\)'; python3 -c 'import torch; print(torch.__version__)'; } > "$OUT/machine.txt" 2>&1
if command -v taskset > /dev/null; then
  A="taskset -c 0,1" B="taskset -c 2,3" C="taskset -c 4,5" G="taskset -c 8-15"
else
  A="" B="" C="" G=""
fi
SAL="--sizes 256 --pixels 30 --reference-pixels 3 --loop-pixels 4"
( cd .bench-old && PYTHONPATH=src timeout 420 $A python3 benchmarks/saliency.py $SAL > "$OUT/old.md" 2>&1 ) &
PYTHONPATH=src timeout 420 $B python3 benchmarks/saliency.py $SAL > "$OUT/new.md" 2>&1 &
PYTHONPATH=src timeout 420 $C python3 benchmarks/saliency.py $SAL > "$OUT/new-again.md" 2>&1 &
export OMP_NUM_THREADS=4
ZOO="--device cuda --size 256 --reference-pixels 2"
PYTHONPATH=src timeout 330 $G python3 benchmarks/zoo.py $ZOO --pixels 10 --exact-way replicate > "$OUT/zoo-cuda-replicate.md" 2>&1
PYTHONPATH=src timeout 150 $G python3 benchmarks/zoo.py $ZOO --pixels 3 --exact-way vmap --networks GlobalAttention ShiftedWindow > "$OUT/zoo-cuda-vmap.md" 2>&1
wait
tail -n 30 "$OUT"/*.md
