"""Soak: a sweep of short synthetic CPU runs with random SIGKILLs of random runs, resumed until
done; every run's metrics must equal an uninterrupted reference.

    python benchmarks/soak.py [--runs 20] [--kills 12] [--jobs 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nbkit.rundir.runlog import read_metrics
from nbkit.sweeps.sweep import plan

SETTINGS = {"dataset": "synthetic", "max_iter": 60, "eval_every": 12, "save_every": 6, "batch_size": 16,
            "log_every": 4, "tailor_num_classes": True, "constant_lr": 3e-3, "eval_batch_size": 256}


def sweep(runs_dir: Path, runs: int, jobs: int) -> subprocess.Popen:
    sets = [f"{k}={v}" for k, v in SETTINGS.items() if k not in ("dataset",)]
    return subprocess.Popen([sys.executable, "-m", "nbkit", "sweep", "toy-dilated", "--seeds", str(runs),
                             "--jobs", str(jobs), "--dataset", "synthetic", "--device", "cpu",
                             "--runs-dir", str(runs_dir), "--set", *sets],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def train_children(parent: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def metrics(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time"} for r in read_metrics(run_dir / "metrics.jsonl")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--kills", type=int, default=12)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        ref_dir, soak_dir = Path(tmp) / "reference", Path(tmp) / "soak"
        t = time.time()
        assert sweep(ref_dir, args.runs, args.jobs).wait() == 0, "reference sweep failed"
        print(f"reference: {args.runs} uninterrupted runs in {time.time() - t:.0f} s", flush=True)
        kills, rounds = [], 0
        while True:
            rounds += 1
            p = sweep(soak_dir, args.runs, args.jobs)
            while p.poll() is None:
                time.sleep(rng.uniform(0.5, 3.0))
                children = train_children(p.pid)
                if children and len(kills) < args.kills:
                    victim = rng.choice(children)
                    try:
                        os.kill(victim, signal.SIGKILL)
                        kills.append(victim)
                    except ProcessLookupError:
                        pass
            if p.returncode == 0:
                break
            assert rounds < 50, "the soak did not converge"
        jobs = plan(["toy-dilated"], args.runs, SETTINGS, soak_dir)
        refs = plan(["toy-dilated"], args.runs, SETTINGS, ref_dir)
        same = sum(metrics(a.run_dir) == metrics(b.run_dir) for a, b in zip(jobs, refs))
        states = [json.loads((j.run_dir / "status.json").read_text())["state"] for j in jobs]
        result = {"runs": args.runs, "sigkills": len(kills), "sweep_invocations": rounds,
                  "runs_done": states.count("done"), "runs_identical_to_reference": same}
        print(json.dumps(result))
        if same != args.runs or states.count("done") != args.runs:
            sys.exit(1)


if __name__ == "__main__":
    main()
