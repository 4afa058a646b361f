"""Did a faster path move accuracy? Each variant's mean final test top-1 in two runs directories.

    python benchmarks/compare_runs.py artifacts/runs-h200 artifacts/runs-h200-next
    python benchmarks/compare_runs.py BASE NEW --tolerance 0.015 --dataset cifar10

Prints one markdown row per variant the two share (seeds, both means, the difference in points)
and exits 1 when any difference exceeds the tolerance (default 1.5 points, issue 11's bound).
Unfinished and failed runs are left out; variants in only one directory are listed as such.
"""

from __future__ import annotations

import argparse
import sys

import polars as pl

from nbkit.analysis.tables import per_variant
from nbkit.rundir.reader import read_runs


def final_test(runs_dir: str, dataset: str | None) -> pl.DataFrame:
    metrics, runs = read_runs(runs_dir, dataset)
    if runs.is_empty():
        return pl.DataFrame(schema={"variant": pl.String, "seeds": pl.UInt32, "final_test_mean": pl.Float64})
    table = per_variant(metrics, runs.filter(pl.col("state") == "done"))
    if table.is_empty():
        return pl.DataFrame(schema={"variant": pl.String, "seeds": pl.UInt32, "final_test_mean": pl.Float64})
    return table.select("variant", "seeds", "final_test_mean")


def compare(base: str, new: str, dataset: str | None = None) -> pl.DataFrame:
    """variant, seeds and final test top-1 in each, and new - base (null where one lacks it)."""
    a, b = final_test(base, dataset), final_test(new, dataset)
    joined = a.join(b, on="variant", how="full", coalesce=True, suffix="_new")
    return (joined.with_columns((pl.col("final_test_mean_new") - pl.col("final_test_mean")).alias("difference"))
            .sort("variant"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base", help="runs directory of the reference path (e.g. artifacts/runs-h200)")
    ap.add_argument("new", help="runs directory of the path under test")
    ap.add_argument("--tolerance", type=float, default=0.015, help="largest allowed |difference| (default 0.015)")
    ap.add_argument("--dataset", help="only runs on this dataset")
    args = ap.parse_args(argv)
    table = compare(args.base, args.new, args.dataset)
    print("| variant | seeds | base top-1 | new top-1 | difference (points) |\n|---|---|---|---|---|")
    over = []
    for r in table.iter_rows(named=True):
        pct = lambda v: "-" if v is None else f"{100 * v:.2f}"
        seeds = f"{r['seeds'] or 0} / {r['seeds_new'] or 0}"
        diff = r["difference"]
        flag = "" if diff is None or abs(diff) <= args.tolerance else " **over**"
        if flag:
            over.append(r["variant"])
        print(f"| {r['variant']} | {seeds} | {pct(r['final_test_mean'])} | {pct(r['final_test_mean_new'])} | "
              f"{'-' if diff is None else f'{100 * diff:+.2f}'}{flag} |")
    shared = table.filter(pl.col("difference").is_not_null()).height
    print(f"\n{shared} variants in both; {len(over)} differ by more than {100 * args.tolerance:.1f} points"
          + (f": {', '.join(over)}" if over else ""))
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
