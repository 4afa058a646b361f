#!/usr/bin/env bash
# The epochs comparison's run set on the CPU, shipped in artifacts/runs-epochs: the real CIFAR-10
# image folder cut to 2,560 training images (the first of a fixed seeded permutation; resnet18-half
# trains on the first 1,280 of them), so an epoch is 20 steps of 128 and 120 steps span 6 epochs.
# 256 held-out images (val) are scored every 2 steps within 6 steps of each epoch end; every train
# row (2 steps) logs the loss by how many times its examples were trained on before. The warm-up
# is one epoch, the decay reaches its floor at step 120; test is scored once, at the end.
#
# Every variant has 2 seeds; the ones the verdict tests (resnet18 with its held-out probe,
# -replacement, -fixed, and the disjoint-half control -disjoint, which trains on one half of the
# 2,560 images for 6 epochs of 10 steps and then on the other, never-seen half) have SEEDS (6), the
# number benchmarks/epochs_power.py gives from the 2-seed runs (seeds are the unit of every test).
# The 18 runs added for the seed-level tests took 57 minutes here, two at a time on a 2-core machine
# shared with other jobs; the 2-seed set before them about 70 (vitn-12x256-8x8 23 of those).
#
# On a GPU, the full-scale version (50,000 images, 390 steps an epoch, the original protocol):
#   python -m nbkit sweep epochs --seeds 6 --jobs 8 --dataset "$DATA" --val-size 5000 \
#     --runs-dir artifacts/runs-epochs-gpu --set seen_probe=true boundary_eval=100 log_every=10
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/cifar10-images.tar.xz}
RUNS=${RUNS:-artifacts/runs-epochs}
SEEDS=${SEEDS:-6}
PY=${PY:-python}
LABEL="epochs comparison on the CPU: 2,560 CIFAR-10 training images (20 steps an epoch), 120 steps"
sweep() {
  "$PY" -m nbkit sweep "$@" --jobs 2 --device cpu --dataset "$DATA" --runs-dir "$RUNS" --label "$LABEL" \
    --max-iter 120 --eval-every 120 --val-size 256 \
    --set train_size=2560 seen_probe=true boundary_eval=6 log_every=2 warmup_num_steps=20
}
sweep resnet18-disjoint --seeds "$SEEDS"
sweep resnet18 resnet18-replacement resnet18-fixed --seeds "$SEEDS"
sweep epochs --seeds 2
