#!/usr/bin/env bash
# One prepared device session (one H200), time-boxed to BUDGET seconds (default 540):
#   1. the speed benchmark: plain loop vs nbkit (300 steps), one full-protocol resnet18 run;
#   2. the study benchmark (benchmarks/study.py): all 23 variants x 2 seeds at the original
#      protocol on the CIFAR-10 image folder, JOBS runs sharing the GPU, into RUNS; its JSON has
#      wall time, GPU busy share, per-run time, GPU memory and host RSS. Stopped cleanly (SIGTERM,
#      checkpoints) at the budget; a later session resumes it with the same command;
#   3. with time left, resnet18 x 2 seeds in fp32 (the original's precision) beside the bf16 runs.
#
# Prepare here, once (the device has torch and pyyaml; training needs nothing else):
#   mkdir -p .device && cp ../shared/data/cifar10-images.tar.xz .device/ && echo /.device/ >> .git/info/exclude
# Run with the device tool: carry [".device"], command `bash benchmarks/gpu_session.sh`.
# What comes back under $OUT: logs, the benchmark JSON, and runs.tar.gz (run logs, no
# checkpoints) to unpack here.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
DATA=.device/cifar10-images.tar.xz
RUNS=${RUNS:-artifacts/runs-h200}
BUDGET=${BUDGET:-540}
JOBS=${JOBS:-8}
START=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
exec > >(tee -a "$OUT/session.log") 2>&1

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name())"
python3 -c "
import time; from nbkit.data import load_dataset
t = time.time(); ds = load_dataset('$DATA'); print('dataset', ds.name, {k: ds.size(k) for k in ds.labels}, f'{time.time() - t:.1f} s')"

echo "== 1. speed benchmark  [$(left) s left]"
timeout 200 python3 benchmarks/speed.py --device cuda --dataset "$DATA" --steps 300 --variants resnet18 toy-dilated \
  vit-12x256-8x8 --sweep resnet18 --seeds 1 --jobs 1 --sweep-steps 5000
cp benchmarks/results/speed-cuda-*.json "$OUT/" 2>/dev/null

echo "== 2. the study: all 23 variants x 2 seeds, $JOBS runs on the GPU at once  [$(left) s left]"
timeout -s TERM -k 40 $(( $(left) - 90 )) python3 benchmarks/study.py --seeds 2 --jobs "$JOBS" --device cuda \
  --dataset "$DATA" --runs-dir "$RUNS" --label "H200, original protocol (5,000 steps), CIFAR-10 image folder" \
  > "$OUT/study.log" 2>&1
echo "study exit $?"; tail -n 4 "$OUT/study.log"
cp benchmarks/results/study-cuda-*.json "$OUT/" 2>/dev/null

echo "== 3. resnet18 in fp32, the original's precision  [$(left) s left]"
if [ "$(left)" -gt 150 ]; then
  timeout -s TERM -k 30 $(( $(left) - 30 )) python3 -m nbkit sweep resnet18 --seeds 2 --jobs 2 --device cuda \
    --precision fp32 --dataset "$DATA" --runs-dir "$RUNS-fp32" --label "H200, original protocol, fp32" > "$OUT/fp32.log" 2>&1
  tail -n 2 "$OUT/fp32.log"
  tar czf "$OUT/runs-fp32.tar.gz" --exclude='checkpoint*.pt' --exclude='.lock' --exclude='train.log' "$RUNS-fp32"
fi
tar czf "$OUT/runs.tar.gz" --exclude='checkpoint*.pt' --exclude='.lock' --exclude='train.log' "$RUNS"
echo "== end  [$(left) s left]"
