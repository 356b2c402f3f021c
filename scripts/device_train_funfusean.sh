#!/usr/bin/env bash
# The second device run of issue 16, part 5 (after scripts/device_train.sh): FunFuseAn, the one
# network whose first variants did not beat the authors' published image on both scores, tried
# at 3 crop sizes x 2 learning rates x 2 range weights on the GPU, 12 runs at once. Needs
# .paperdata/ and .devicepkgs/ carried as for scripts/device_train.sh.
set -u
export PYTHONPATH="$PWD/src:$PWD/.devicepkgs" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
mkdir -p ../shared && ln -sfn "$PWD/.paperdata" ../shared/fusevis-paper
F="FunFuseAn:45:0.001:1.0:cosine:skip:3 FunFuseAn:45:0.001:1.0:cosine:skip:10 FunFuseAn:45:0.0005:1.0:cosine:skip:3 FunFuseAn:45:0.0005:1.0:cosine:skip:10"
for c in 64 128 256; do
  CROP=$c MODELS="$F" JOBS=4 COPY=0 DEVICE=cuda FUSEVIS="python3 -m fusevis" timeout 330 bash scripts/train_pretrained.sh > $OUT/train-$c.log 2>&1 &
done
wait
tar -czf $OUT/weights.tar.gz runs/*/weights.safetensors runs/*/loss.csv runs/*.log
grep -h wrote $OUT/train-*.log | sed 's/.test_pair.*//'
