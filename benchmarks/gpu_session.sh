#!/usr/bin/env bash
# A prepared device session (one H200), in parts, time-boxed to BUDGET seconds (default 560):
#   speed  plain loop vs nbkit with the step as a CUDA graph vs nbkit eager (300 steps each, resnet18),
#          then one full-protocol resnet18 run alone, end to end (about 2 minutes);
#   pack   two seeds as one vectorised model (--pack 2) against two processes, 1,000 steps each;
#          sets PACK for the study: 2 only if packing was faster (about 1 minute);
#   study  benchmarks/study.py: all 23 variants x 2 seeds at the original protocol on the CIFAR-10
#          image folder, JOBS runs sharing the GPU (through CUDA MPS when it starts; MPS=0 skips it),
#          PACK seeds per process, longest first, into RUNS, a fresh directory: the eager runs in
#          artifacts/runs-h200 are the accuracy reference. Stopped cleanly (SIGTERM, checkpoints)
#          at the budget. Its JSON: wall time, GPU busy share, per-run time, GPU memory, host RSS;
#   fp32   with time left, resnet18 x 2 seeds in fp32 (the original's precision);
#   epochs the epochs comparison at full scale (7 variants x 2 seeds, 50,000 images, 5,000 steps, the
#          seen-count probe and 5,000 held-out images scored densely near epoch ends), into RUNS-epochs;
#   schedule resnet18 and vitn-12x256-8x8 x 2 seeds with --set original_schedule=true (the original's
#          first step at 1e-3 and its one-step lag), into RUNS-schedule, beside the study's own;
#   tune   nbkit tune of resnet18 against vitn-12x256-8x8 over the peak learning rate and warm-up
#          (benchmarks/tune-gpu.toml), TRIALS (default 16) random trials each at the original protocol,
#          chosen on 5,000 held-out training images, JOBS at once, into RUNS-tune with its study
#          (tune.db); stopped at the budget with checkpoints, and the same call later continues it.
#          Optuna is not on the device: put its wheels in .device/wheels first (below).
# A device call runs at most 10 minutes and the session has 15 in all, machine start included:
#   call 1: PARTS="speed pack" bash benchmarks/gpu_session.sh         (prints the PACK it chose)
#   call 2: PARTS="study fp32" PACK=<1 or 2> bash benchmarks/gpu_session.sh
#   call 3 (a later session, or time left): PARTS="epochs schedule" bash benchmarks/gpu_session.sh
#   call 4 (a later session): PARTS=tune bash benchmarks/gpu_session.sh   (again to continue the study)
# (PARTS defaults to all four, for a longer budget.) SMOKE=1 runs every part on the CPU with tiny
# step counts and the synthetic dataset: a rehearsal of the script itself, before a device call.
#
# Prepare here, once (the device has torch and pyyaml; training needs nothing else):
#   mkdir -p .device && cp ../shared/data/cifar10-images.tar.xz .device/ && echo /.device/ >> .git/info/exclude
#   pip download 'optuna>=4' -d .device/wheels     # for part tune (Optuna and its dependencies, as wheels)
# Run with the device tool: carry [".device"], timeout 600. What comes back under $OUT:
# session.log, the benchmark JSONs and runs.tar.gz (run logs, no checkpoints). Then, here:
#   tar xzf runs.tar.gz   # -> artifacts/runs-h200-next
#   python benchmarks/compare_runs.py artifacts/runs-h200 artifacts/runs-h200-next --dataset cifar10
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
PARTS=${PARTS:-speed pack study fp32}
RUNS=${RUNS:-artifacts/runs-h200-next}
BUDGET=${BUDGET:-560}
JOBS=${JOBS:-8}
PACK=${PACK:-auto}
if [ "${SMOKE:-0}" = 1 ]; then  # the script's own rehearsal on a CPU
  DEVICE=cpu DATA=synthetic STEPS=10 FULL=40 SHORT=20 NAMES="toy-dilated resnet18" LABEL="a rehearsal of gpu_session.sh (SMOKE=1)"
  TUNE=tune-smoke TRIALS=${TRIALS:-2}
else
  DEVICE=cuda DATA=.device/cifar10-images.tar.xz STEPS=300 FULL=5000 SHORT=1000 NAMES="resnets learning models" LABEL="H200, original protocol (5,000 steps), CIFAR-10 image folder"
  TUNE=tune-gpu TRIALS=${TRIALS:-16}
fi
START=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
has() { [[ " $PARTS " == *" $1 "* ]]; }
touch "$OUT/.started"
newest() {  # the part's benchmark JSON, written by this session, to $OUT (a rehearsal's is not kept in the checkout)
  local f; f=$(find benchmarks/results -name "$1-$DEVICE-*.json" -newer "$OUT/.started" | sort | tail -n 1)
  [ -n "$f" ] && cp "$f" "$OUT/" && if [ "${SMOKE:-0}" = 1 ]; then rm -f "$f"; fi
}
exec > >(tee -a "$OUT/session.log") 2>&1

echo "== parts: $PARTS  [$(left) s left]"
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_mode --format=csv,noheader 2>/dev/null
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__,
  torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
python3 -c "
import time; from nbkit.training.data import load_dataset
t = time.time(); ds = load_dataset('$DATA'); print('dataset', ds.name, {k: ds.size(k) for k in ds.labels}, f'{time.time() - t:.1f} s')"

if has speed; then
  echo "== speed: plain loop, CUDA graph, eager; then one full resnet18 run alone  [$(left) s left]"
  timeout 200 python3 benchmarks/speed.py --device "$DEVICE" --dataset "$DATA" --steps "$STEPS" --repeats 1 --variants resnet18 \
    --sweep resnet18 --seeds 1 --jobs 1 --sweep-steps "$FULL"
  newest speed
fi

if has pack && [ "$PACK" = auto ]; then
  echo "== pack: resnet18 x 2 seeds, $SHORT steps, as one model (--pack 2) against two processes  [$(left) s left]"
  timed() {  # milliseconds of one sweep, or a large number when it failed
    local t0=$(date +%s%N)
    if timeout 150 python3 -m nbkit sweep resnet18 --seeds 2 --device "$DEVICE" --dataset "$DATA" --max-iter "$SHORT" \
        --runs-dir "/tmp/nbkit-pack-$1-$START" "${@:2}" > "$OUT/pack-$1.log" 2>&1; then
      echo $(( ($(date +%s%N) - t0) / 1000000 ))
    else echo 999999; fi
  }
  apart=$(timed apart --jobs 2); packed=$(timed packed --pack 2)
  PACK=$(( packed * 100 < apart * 95 ? 2 : 1 ))
  echo "two processes: $apart ms; one pack: $packed ms; PACK=$PACK"
fi
[ "$PACK" = auto ] && PACK=1

if has study; then
  echo "== study: $NAMES x 2 seeds, $JOBS runs on the device at once, $PACK per process  [$(left) s left]"
  if [ "$DEVICE" = cuda ] && [ "${MPS:-1}" = 1 ] && command -v nvidia-cuda-mps-control >/dev/null; then
    # kernels of several processes run side by side under MPS; without it the GPU time-slices them
    export CUDA_MPS_PIPE_DIRECTORY=/tmp/nbkit-mps/pipe CUDA_MPS_LOG_DIRECTORY=/tmp/nbkit-mps/log
    mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
    if nvidia-cuda-mps-control -d && timeout 60 python3 -c "import torch; torch.ones(1, device='cuda').sum().item()"; then
      echo "MPS: on"; trap 'echo quit | nvidia-cuda-mps-control' EXIT
    else
      echo quit | nvidia-cuda-mps-control 2>/dev/null; unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
      echo "MPS: off (did not start)"
    fi
  else
    echo "MPS: off"
  fi
  timeout -s TERM -k 40 $(( $(left) - 70 )) python3 benchmarks/study.py $NAMES --seeds 2 --jobs "$JOBS" \
    --pack "$PACK" --device "$DEVICE" --dataset "$DATA" --runs-dir "$RUNS" --max-iter "$FULL" \
    --label "$LABEL" > "$OUT/study.log" 2>&1
  echo "study exit $?"; tail -n 4 "$OUT/study.log"
  newest study
fi

if has fp32 && [ "$(left)" -gt 120 ]; then
  echo "== fp32: resnet18 x 2 seeds in the original's precision  [$(left) s left]"
  timeout -s TERM -k 20 $(( $(left) - 25 )) python3 -m nbkit sweep resnet18 --seeds 2 --jobs 2 --device "$DEVICE" \
    --precision fp32 --dataset "$DATA" --max-iter "$FULL" --runs-dir "$RUNS-fp32" \
    --label "$LABEL, fp32" > "$OUT/fp32.log" 2>&1
  tail -n 2 "$OUT/fp32.log"
fi
if has epochs && [ "$(left)" -gt 120 ]; then
  echo "== epochs: the epochs comparison at full scale, with its probes  [$(left) s left]"
  timeout -s TERM -k 40 $(( $(left) - 70 )) python3 -m nbkit sweep epochs --seeds 2 --jobs "$JOBS" --device "$DEVICE" \
    --dataset "$DATA" --max-iter "$FULL" --val-size "$(( FULL >= 5000 ? 5000 : 256 ))" --runs-dir "$RUNS-epochs" \
    --label "$LABEL, epochs comparison" --set seen_probe=true boundary_eval=100 > "$OUT/epochs.log" 2>&1
  tail -n 2 "$OUT/epochs.log"
fi

if has schedule && [ "$(left)" -gt 120 ]; then
  echo "== schedule: resnet18 and vitn with the original's first-step rate and one-step lag  [$(left) s left]"
  timeout -s TERM -k 20 $(( $(left) - 25 )) python3 -m nbkit sweep resnet18 vitn-12x256-8x8 --seeds 2 --jobs "$JOBS" \
    --device "$DEVICE" --dataset "$DATA" --max-iter "$FULL" --runs-dir "$RUNS-schedule" \
    --label "$LABEL, original_schedule" --set original_schedule=true > "$OUT/schedule.log" 2>&1
  tail -n 2 "$OUT/schedule.log"
fi

if has tune && [ "$(left)" -gt 120 ]; then
  echo "== tune: $TUNE, $TRIALS trials per variant, $JOBS at once  [$(left) s left]"
  python3 -c "import optuna" 2>/dev/null || python3 -m pip install -q --no-index --find-links .device/wheels 'optuna>=4' \
    || echo "tune: Optuna is not installed and .device/wheels has none (see the preparation above)"
  timeout -s TERM -k 40 $(( $(left) - 70 )) python3 -m nbkit tune "$TUNE" --comparisons benchmarks/tune-gpu.toml \
    --trials "$TRIALS" --jobs "$JOBS" --device "$DEVICE" --dataset "$DATA" --max-iter "$FULL" --runs-dir "$RUNS-tune" \
    --label "$LABEL, tuning" > "$OUT/tune.log" 2>&1
  echo "tune exit $?"; tail -n 4 "$OUT/tune.log"
fi
dirs=$(for d in "$RUNS" "$RUNS-fp32" "$RUNS-epochs" "$RUNS-schedule" "$RUNS-tune"; do [ -d "$d" ] && echo "$d"; done)
[ -n "$dirs" ] && tar czf "$OUT/runs.tar.gz" --exclude='checkpoint*.pt' --exclude='.lock' --exclude='.tune-locks' $dirs
echo "== end  [$(left) s left]"
