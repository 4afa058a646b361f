"""What one auto-refresh of the live notebook costs, on generated runs directories of the
original protocol's shape (500 train rows and 100 evaluation rows per run, the study's 23
variants in turn, seeds counting up):

- no change: a poll that finds nothing written (the notebook then redraws nothing);
- one new row per run: what the live notebook then does for the *resnets* comparison: the poll
  that reads it, the new snapshot, the view's charts, the keys of its tables (which stay, so no
  table is built), the Runs table (its step column moves) and the chart's changed rows
  (nbkit.view.livechart; sending them aside).

    python benchmarks/refresh.py [--runs 24 100 500] [--repeats 5]

Prints a table and writes benchmarks/results/refresh-<time>.json. Goal (issue 20): at 100 runs,
under 0.2 s with no change and under 1 s with a new row per run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from nbkit.design.comparisons import COMPARISONS
from nbkit.design.variants import VARIANTS
from nbkit.rundir.reader import RunStore
from nbkit.rundir.runlog import RunWriter, new_run_dir
from nbkit.view import pagekey
from nbkit.view.livechart import LiveChart
from nbkit.view.workbench import snapshot, view_of

RESULTS = Path(__file__).parent / "results"


def make_runs(root: Path, n: int) -> list[Path]:
    names, out = list(VARIANTS), []
    for i in range(n):
        variant, seed = names[i % len(names)], i // len(names)
        run = new_run_dir(root, "cifar100", variant, f"bench-s{seed}")
        w = RunWriter(run)
        w.config({"variant": variant, "seed": seed, "dataset": {"name": "cifar100"}, "steps_per_epoch": 390,
                  "parameters": 11_000_000, "settings": {"max_iter": 5000, "batch_size": 128, "eval_every": 100}})
        rows = [{"step": s, "split": "train", "time": s * 0.01, "loss": 4.6 - s / 2000 - seed * 0.01,
                 "acc_top1": s / 5000, "lr": 2e-4, "grad_norm": 3.0} for s in range(10, 5001, 10)]
        rows += [{"step": s, "split": sp, "time": s * 0.01, "acc_top1": s / 6000 + seed * 0.001, "loss": 3.0}
                 for s in range(100, 5001, 100) for sp in ("train_200", "test")]
        w.metrics(rows)
        w.status("running", 5000, images_per_second=1000.0)
        w.close()
        out.append(run)
    return out


def append_row(runs: list[Path], step: int) -> None:
    for run in runs:
        with open(run / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": step, "split": "train", "time": step * 0.01, "loss": 1.0, "acc_top1": 0.9,
                                "lr": 1e-6, "grad_norm": 1.0}) + "\n")


def controls() -> dict:
    return {"variants": list(COMPARISONS["resnets"].variants), "splits": ["train_200", "test"], "x": "step",
            "smoothing": 0.0, "seeds": "each run", "log_scale": False, "scalar": "train grad_norm"}


def measure(n: int, repeats: int) -> dict:
    comparison = COMPARISONS["resnets"]
    with tempfile.TemporaryDirectory() as tmp:
        runs = make_runs(Path(tmp), n)
        store = RunStore(tmp)
        t = time.perf_counter()
        store.poll()
        view = view_of(snapshot(store, comparison), "cifar100", controls())
        chart = LiveChart()
        chart.send = lambda *_, **__: None  # no page here: what would be sent is worked out, not sent
        chart.show(view.dashboard, "k")  # the whole chart, made JSON
        key = pagekey.numbers_key(view, "cifar100", "resnets")
        view.variant_rows, view.run_rows, view.original_rows, view.findings  # and every table, once
        first = time.perf_counter() - t
        idle, poll, full = [], [], []
        for r in range(repeats):
            t = time.perf_counter()
            assert not store.poll()
            idle.append(time.perf_counter() - t)
            append_row(runs, 5001 + r)
            t = time.perf_counter()
            assert store.poll()
            poll.append(time.perf_counter() - t)
            snap = snapshot(store, comparison)
            view = view_of(snap, "cifar100", controls())
            assert pagekey.numbers_key(view, "cifar100", "resnets") == key  # the tables stay as they were
            pagekey.runs_key(view)
            view.run_rows
            chart.show(view.dashboard, "k")  # the rows that changed, worked out
            full.append(time.perf_counter() - t)
        rows = snap.metrics.height
    med = lambda xs: round(statistics.median(xs), 4)
    return {"runs": n, "rows": rows, "first_read_and_view_s": round(first, 3), "no_change_s": med(idle),
            "new_row_poll_s": med(poll), "new_row_refresh_s": med(full), "repeats": repeats}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, nargs="+", default=[24, 100, 500])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    results = [measure(n, args.repeats) for n in args.runs]
    print("| runs | rows | first read + view | no change | new row: poll | new row: poll + view + chart rows |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['runs']} | {r['rows']:,} | {r['first_read_and_view_s']:.2f} s | {r['no_change_s'] * 1000:.1f} ms | "
              f"{r['new_row_poll_s'] * 1000:.0f} ms | {r['new_row_refresh_s']:.2f} s |")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"refresh-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"results": results, "note": "medians; the resnets comparison's view"}, indent=1))
    print(path)


if __name__ == "__main__":
    main()
