#!/usr/bin/env bash
# One prepared device session (H200): the speed benchmark, then the three comparisons (all 23
# variants, two seeds) on the real CIFAR-10 image folder with the original protocol.
#
# Prepare here, once (the device has torch but not polars/altair/marimo):
#   mkdir -p .device && cp ../shared/data/cifar10-images.tar.xz .device/
#   echo /.device/ >> .git/info/exclude; echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl polars==2.1.0 polars-runtime-32==2.1.0 pyyaml==6.0.3
# Then run it with the device tool: carry [".device", ".whl"], command `bash benchmarks/gpu_session.sh`.
# What comes back under $OUT: the benchmark JSON and runs.tar.gz (run logs, no checkpoints),
# to unpack into artifacts/runs/ here.
set -euo pipefail
cd "$(dirname "$0")/.."
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
DATA=.device/cifar10-images.tar.xz
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

# 1. speed: plain loop vs nbkit (300 steps), and one full-protocol resnet18 run timed end to end
python3 benchmarks/speed.py --device cuda --dataset "$DATA" --steps 300 --variants resnet18 toy-dilated \
  vit-12x256-8x8 --sweep resnet18 --seeds 1 --jobs 1 --sweep-steps 5000 2>&1 | tee "$OUT/speed.log"
cp benchmarks/results/speed-cuda-*.json "$OUT/" || true

# 2. the three comparisons: 23 variants x 2 seeds, 4 runs per GPU, timed
start=$(date +%s)
python3 -m nbkit sweep resnets learning models --seeds 2 --jobs 4 --device cuda --dataset "$DATA" \
  --runs-dir artifacts/runs --label "H200, original protocol, CIFAR-10 image folder" 2>&1 | tail -n 30
echo "all 23 variants x 2 seeds: $(( $(date +%s) - start )) s wall" | tee -a "$OUT/speed.log"
tar czf "$OUT/runs.tar.gz" --exclude='checkpoint.pt' --exclude='.lock' --exclude='train.log' artifacts/runs
