#!/usr/bin/env bash
# The shipped tuning study (README, "Fair comparisons under tuning"), from the repository root, on the CPU.
# The comparison's fixed recipe first (one run per variant), then 10 random trials per variant.
set -euo pipefail
PY=${PY:-.venv/bin/python}
[ -d data/cifar10-5k ] || $PY examples/image_subset.py ../shared/data/cifar10-images.tar.xz data/cifar10-5k --train 5000 --test 2000
COMMON=(--comparisons examples/tune-study.toml --runs-dir examples/runs-tune --device cpu --jobs 2
        --dataset data/cifar10-5k --val-size 1000 --max-iter 40 --eval-every 20 --batch-size 32)
$PY -m nbkit sweep tuned "${COMMON[@]}" --set warmup_num_steps=4 --label "fixed recipe"
$PY -m nbkit tune tuned "${COMMON[@]}" --trials 10
