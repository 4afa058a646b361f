"""Time nbkit.rundir.reader.read_runs on N synthetic finished runs of the original protocol's shape.

    python benchmarks/read_runs.py [--runs 100]

Each run has 500 train rows (5,000 steps logged every 10) and 100 evaluation rows.
"""

import argparse
import tempfile
import time
from pathlib import Path

from nbkit.rundir.reader import read_runs
from nbkit.rundir.runlog import RunWriter, new_run_dir


def make_runs(root: Path, n: int) -> None:
    for i in range(n):
        run = new_run_dir(root, "cifar100", f"variant{i % 23}", f"run-s{i}")
        w = RunWriter(run)
        w.config({"variant": f"variant{i % 23}", "seed": i, "dataset": {"name": "cifar100"}})
        rows = [{"step": s, "split": "train", "time": s * 0.01, "loss": 4.6 - s / 2000, "acc_top1": s / 5000,
                 "lr": 2e-4} for s in range(10, 5001, 10)]
        rows += [{"step": s, "split": sp, "time": s * 0.01, "acc_top1": s / 6000, "loss": 3.0}
                 for s in range(100, 5001, 100) for sp in ("train_200", "test")]
        w.metrics(rows)
        w.status("done", 5000, images_per_second=1000.0)
        w.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        make_runs(Path(tmp), args.runs)
        times = []
        for _ in range(5):
            t = time.perf_counter()
            metrics, runs = read_runs(tmp)
            times.append(time.perf_counter() - t)
        print(f"read_runs: {args.runs} runs, {metrics.height:,} rows: best of 5 {min(times):.3f} s, "
              f"median {sorted(times)[2]:.3f} s")


if __name__ == "__main__":
    main()
