"""The study benchmark: the whole study (or a named subset) as one sweep, timed end to end.

    python benchmarks/study.py                                  # all 23 variants x 2 seeds, 8 at a time
    python benchmarks/study.py resnets --seeds 1 --jobs 2 --max-iter 40 --dataset synthetic --device cpu

Runs `nbkit sweep NAMES` into --runs-dir while sampling the GPU's utilisation every second, then
reads every run's status.json. Writes benchmarks/results/study-<device>-<time>.json with the wall
time, the GPU busy share (mean utilisation while the sweep ran), and per run: state, wall time,
images/s, peak GPU memory and peak host RSS. Finished runs in --runs-dir are skipped by the sweep
(their figures are reported with `skipped: true`); use a fresh directory to time everything.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

from speed import SHARED_CIFAR10, GPUSampler

from nbkit.rundir.reader import find_runs
from nbkit.rundir.runlog import read_config, read_status

ROOT = Path(__file__).resolve().parents[1]


def per_run(runs_dir: Path, before: set[Path]) -> list[dict]:
    """What each run's status.json and config.json say about its cost."""
    rows = []
    for run in find_runs(runs_dir):
        status, config = read_status(run) or {}, read_config(run) or {}
        rows.append({"variant": config.get("variant"), "seed": config.get("seed"), "state": status.get("state"),
                     "step": status.get("step"), "wall_seconds": status.get("wall_seconds"),
                     "images_per_second": status.get("images_per_second"),
                     "gpu_memory_mb": status.get("gpu_memory_mb"), "peak_rss_mb": status.get("peak_rss_mb"),
                     "precision": config.get("precision"), "cuda_graph": config.get("cuda_graph"),
                     "pack_size": config.get("pack_size", 1),  # packed runs share one process's memory
                     "skipped": run in before,
                     "path": str(run.relative_to(runs_dir))})
    return rows


def summarise(rows: list[dict]) -> dict:
    timed = [r for r in rows if not r["skipped"] and r["state"] == "done"]
    most = lambda key: max((r[key] for r in timed if r[key] is not None), default=None)
    return {"runs": len(rows), "done": sum(r["state"] == "done" for r in rows), "timed": len(timed),
            "run_seconds_max": most("wall_seconds"), "gpu_memory_mb_max": most("gpu_memory_mb"),
            "peak_rss_mb_max": most("peak_rss_mb")}


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", default=["resnets", "learning", "models"], help="comparisons or variants (default: all three)")
    ap.add_argument("--seeds", type=int, default=2, help="seeds per variant (default 2)")
    ap.add_argument("--jobs", type=int, default=8, help="runs at once per GPU or on the CPU (default 8)")
    ap.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    ap.add_argument("--dataset", default=str(SHARED_CIFAR10), help="dataset name or path (default: the CIFAR-10 folder)")
    ap.add_argument("--runs-dir", default=None, help="where the runs go (default: a new folder under /tmp)")
    ap.add_argument("--max-iter", type=int, help="training steps (default: the original's 5,000)")
    ap.add_argument("--pack", type=int, default=1, help="seeds of a variant trained as one model (nbkit sweep --pack)")
    ap.add_argument("--label", help="a note stored in every run's config.json")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="where the JSON goes")
    args = ap.parse_args(argv)

    runs_dir = Path(args.runs_dir or f"/tmp/nbkit-study-{time.strftime('%Y%m%d-%H%M%S')}")
    before = set(find_runs(runs_dir)) if runs_dir.exists() else set()
    before = {r for r in before if (read_status(r) or {}).get("state") == "done"}
    cmd = [sys.executable, "-m", "nbkit", "sweep", *args.names, "--seeds", str(args.seeds), "--jobs", str(args.jobs),
           "--device", args.device, "--dataset", args.dataset, "--runs-dir", str(runs_dir), "--pack", str(args.pack),
           *(["--max-iter", str(args.max_iter)] if args.max_iter else []), *(["--label", args.label] if args.label else [])]
    sampler = GPUSampler()
    sampler.start()
    start = time.perf_counter()
    # a time box (timeout) signals the whole group: the sweep checkpoints its runs and ends, and
    # this process waits for that and still writes what was measured
    signal.signal(signal.SIGTERM, lambda *_: print("study: stopping the sweep; its runs checkpoint", flush=True))
    rc = subprocess.run(cmd, cwd=ROOT).returncode
    wall = time.perf_counter() - start
    sampler.running = False
    rows = per_run(runs_dir, before)
    busy = sampler.samples
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "host": platform.node(), "command": cmd[1:], "exit_status": rc, "wall_seconds": round(wall, 1),
              "mps": bool(os.environ.get("CUDA_MPS_PIPE_DIRECTORY")),  # set by gpu_session.sh when MPS started
              "gpu_busy_percent_mean": round(sum(busy) / len(busy), 1) if busy else None, "gpu_busy_samples": len(busy),
              **summarise(rows), "per_run": rows}
    out = Path(args.out) / f"study-{args.device}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"study: {result['done']} of {result['runs']} runs done in {result['wall_seconds']} s wall"
          + (f", GPU busy {result['gpu_busy_percent_mean']}% (mean of {len(busy)} samples)" if busy else "")
          + f"; longest run {result['run_seconds_max']} s, peak GPU memory {result['gpu_memory_mb_max']} MiB, "
            f"peak host RSS {result['peak_rss_mb_max']} MiB per run; wrote {out}")
    return out


if __name__ == "__main__":
    main()
