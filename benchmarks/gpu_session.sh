#!/usr/bin/env bash
# One prepared device session (one H200), time-boxed to BUDGET seconds (default 560):
#   1. the speed benchmark, resnet18 only: plain loop vs nbkit with the step as a CUDA graph vs
#      nbkit eager (300 steps each), then one full-protocol resnet18 run alone, end to end;
#   2. the study benchmark (benchmarks/study.py): all 23 variants x 2 seeds at the original
#      protocol on the CIFAR-10 image folder, JOBS runs sharing the GPU (through CUDA MPS when
#      it starts; MPS=0 to skip), longest first, into RUNS (a fresh directory: the eager runs in
#      artifacts/runs-h200 are the accuracy reference). Its JSON has wall time, GPU busy share,
#      per-run time, GPU memory and host RSS. Stopped cleanly (SIGTERM, checkpoints) at the
#      budget; the same command in a later session resumes it only if its checkpoints are there;
#   3. with time left, resnet18 x 2 seeds in fp32 (the original's precision) beside the bf16 runs.
#
# Prepare here, once (the device has torch and pyyaml; training needs nothing else):
#   mkdir -p .device && cp ../shared/data/cifar10-images.tar.xz .device/ && echo /.device/ >> .git/info/exclude
# Run with the device tool: carry [".device"], command `bash benchmarks/gpu_session.sh`, timeout 600.
# What comes back under $OUT: session.log, the benchmark JSONs, and runs.tar.gz (run logs, no
# checkpoints). Then, here:
#   tar xzf runs.tar.gz   # -> artifacts/runs-h200-next
#   python benchmarks/compare_runs.py artifacts/runs-h200 artifacts/runs-h200-next --dataset cifar10
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
DATA=.device/cifar10-images.tar.xz
RUNS=${RUNS:-artifacts/runs-h200-next}
BUDGET=${BUDGET:-560}
JOBS=${JOBS:-8}
START=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
exec > >(tee -a "$OUT/session.log") 2>&1

nvidia-smi --query-gpu=name,memory.total,driver_version,compute_mode --format=csv,noheader
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name())"
python3 -c "
import time; from nbkit.data import load_dataset
t = time.time(); ds = load_dataset('$DATA'); print('dataset', ds.name, {k: ds.size(k) for k in ds.labels}, f'{time.time() - t:.1f} s')"

echo "== 1. speed: plain loop, CUDA graph, eager; then one full resnet18 run alone  [$(left) s left]"
timeout 150 python3 benchmarks/speed.py --device cuda --dataset "$DATA" --steps 300 --variants resnet18 \
  --sweep resnet18 --seeds 1 --jobs 1 --sweep-steps 5000
cp benchmarks/results/speed-cuda-*.json "$OUT/" 2>/dev/null

echo "== 2. the study: all 23 variants x 2 seeds, $JOBS runs on the GPU at once  [$(left) s left]"
if [ "${MPS:-1}" = 1 ] && command -v nvidia-cuda-mps-control >/dev/null; then
  # kernels of several processes run side by side under MPS; without it the GPU time-slices them
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/nbkit-mps/pipe CUDA_MPS_LOG_DIRECTORY=/tmp/nbkit-mps/log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  if nvidia-cuda-mps-control -d && timeout 60 python3 -c "import torch; torch.ones(1, device='cuda').sum().item()"; then
    echo "MPS: on"; trap 'echo quit | nvidia-cuda-mps-control' EXIT
  else
    echo quit | nvidia-cuda-mps-control 2>/dev/null; unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY; echo "MPS: off (did not start)"
  fi
else
  echo "MPS: off"
fi
timeout -s TERM -k 40 $(( $(left) - 70 )) python3 benchmarks/study.py --seeds 2 --jobs "$JOBS" --device cuda \
  --dataset "$DATA" --runs-dir "$RUNS" --label "H200, original protocol (5,000 steps), CIFAR-10 image folder" \
  > "$OUT/study.log" 2>&1
echo "study exit $?"; tail -n 4 "$OUT/study.log"
cp benchmarks/results/study-cuda-*.json "$OUT/" 2>/dev/null

echo "== 3. resnet18 in fp32, the original's precision  [$(left) s left]"
if [ "$(left)" -gt 120 ]; then
  timeout -s TERM -k 20 $(( $(left) - 25 )) python3 -m nbkit sweep resnet18 --seeds 2 --jobs 2 --device cuda \
    --precision fp32 --dataset "$DATA" --runs-dir "$RUNS-fp32" --label "H200, original protocol, fp32" > "$OUT/fp32.log" 2>&1
  tail -n 2 "$OUT/fp32.log"
fi
tar czf "$OUT/runs.tar.gz" --exclude='checkpoint*.pt' --exclude='.lock' "$RUNS" $( [ -d "$RUNS-fp32" ] && echo "$RUNS-fp32")
echo "== end  [$(left) s left]"
