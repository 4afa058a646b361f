#!/usr/bin/env bash
# The reduced real comparison shipped in artifacts/runs when no GPU was available: the real
# CIFAR-10 image folder, the original protocol shortened to 200 steps (warm-up scaled to 20,
# evaluation every 40 steps), the smaller variants only. Each run's config.json carries the label.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/cifar10-images.tar.xz}
LABEL="reduced CPU comparison: 200 steps (warm-up 20), smaller variants"
COMMON=(--dataset "$DATA" --max-iter 200 --eval-every 40 --device cpu --jobs 2 --label "$LABEL" --set warmup_num_steps=20)
python -m nbkit sweep resnet18 resnet18-aug resnet18-clr1e-4 resnet18-gn resnet18-ms1 resnet18-ms2 resnet18-ms3 \
  resnet18-pcnorm resnet18-tnc resnet18-wonorm toy-dilated --seeds 2 "${COMMON[@]}"
python -m nbkit sweep vitn-12x256-8x8 vitn-12x256-8x8-ra --seeds 1 "${COMMON[@]}"
