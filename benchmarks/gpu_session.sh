#!/usr/bin/env bash
# One prepared device session (one H200), time-boxed to BUDGET seconds (default 540):
#   1. torchrun with one process (NCCL, DistributedDataParallel, SyncBatchNorm, the sharded data
#      path) against a plain single-process run: resnet18, 300 steps;
#   2. the speed benchmark: plain loop vs nbkit (300 steps), one full-protocol resnet18 run;
#   3. the three comparisons (all 23 variants, two seeds, original protocol) on the CIFAR-10
#      image folder, 8 runs sharing the GPU, stopped cleanly (SIGTERM, checkpoints) at the budget.
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
START=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
exec > >(tee -a "$OUT/session.log") 2>&1

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name())"
python3 -c "
import time; from nbkit.data import load_dataset
t = time.time(); ds = load_dataset('$DATA'); print('dataset', ds.name, {k: ds.size(k) for k in ds.labels}, f'{time.time() - t:.1f} s')"

echo "== 1. torchrun, one process, NCCL (resnet18, 300 steps) vs one plain process  [$(left) s left]"
COMMON=(resnet18 --dataset "$DATA" --max-iter 300 --eval-every 100 --device cuda)
timeout 120 python3 -m torch.distributed.run --nproc_per_node 1 -m nbkit train "${COMMON[@]}" --run-dir /tmp/ddp/torchrun
timeout 90 python3 -m nbkit train "${COMMON[@]}" --run-dir /tmp/ddp/single
python3 - <<'EOF' | tee "$OUT/ddp.txt"
import json
from nbkit.runlog import read_metrics
one, two = (read_metrics(f"/tmp/ddp/{d}/metrics.jsonl") for d in ("single", "torchrun"))
for d in ("single", "torchrun"):
    c, s = (json.load(open(f"/tmp/ddp/{d}/{f}.json")) for f in ("config", "status"))
    print(d, "world_size", c.get("world_size"), "state", s["state"], "images/s", s.get("images_per_second"))
for a, b in zip(one, two):
    if a["split"] != "train" or a["step"] % 100 == 0:
        print(a["step"], a["split"], "loss", round(a["loss"], 4), round(b["loss"], 4), "top1", round(a["acc_top1"], 4), round(b["acc_top1"], 4))
EOF

echo "== 2. speed benchmark  [$(left) s left]"
timeout 200 python3 benchmarks/speed.py --device cuda --dataset "$DATA" --steps 300 --variants resnet18 toy-dilated \
  vit-12x256-8x8 --sweep resnet18 --seeds 1 --jobs 1 --sweep-steps 5000
cp benchmarks/results/speed-cuda-*.json "$OUT/" 2>/dev/null

echo "== 3. all 23 variants x 2 seeds, 8 runs on the GPU at once  [$(left) s left]"
sweep_start=$(date +%s)
timeout -s TERM -k 40 $(( $(left) - 60 )) python3 -m nbkit sweep resnets learning models --seeds 2 --jobs 8 \
  --device cuda --dataset "$DATA" --runs-dir "$RUNS" --label "H200, original protocol (5,000 steps), CIFAR-10 image folder" \
  > "$OUT/sweep.log" 2>&1
echo "sweep exit $?, $(( $(date +%s) - sweep_start )) s wall; $(grep -c '^done ' "$OUT/sweep.log") runs done"
tail -n 3 "$OUT/sweep.log"
tar czf "$OUT/runs.tar.gz" --exclude='checkpoint.pt' --exclude='.lock' --exclude='train.log' "$RUNS"
echo "== end  [$(left) s left]"
