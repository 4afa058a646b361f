"""How many seeds the epochs verdict's tests need: from a run set's per-run numbers (by default
the first 2 seeds, as shipped before the seed-level tests), each test's effect and seed-to-seed
spread, and the power of a two-sided t test at 0.05 for 2..10 seeds, at the measured effect and
at half of it (2 seeds estimate a spread poorly, so the plan must survive a smaller effect).

    python benchmarks/epochs_power.py [RUNS_DIR] [--seeds 2]

Power by the usual approximation: P(T_df > t_crit - effect / se), se from the measured spread.
"""

from __future__ import annotations

import argparse
import math

from nbkit.analysis import drops, epochs
from nbkit.analysis.significance import ALPHA, t_cdf, t_quantile
from nbkit.rundir.reader import read_runs


def power(effect: float, sd: float, n: int, paired: bool) -> float:
    se = sd * math.sqrt((1 if paired else 2) / n)
    df = n - 1 if paired else 2 * n - 2
    shift = abs(effect) / se - t_quantile(1 - ALPHA / 2, df)
    return t_cdf(shift, df) if shift >= 0 else 1 - t_cdf(-shift, df)


def sd(xs: list[float]) -> float:
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs_dir", nargs="?", default="artifacts/runs-epochs")
    ap.add_argument("--seeds", type=int, default=2, help="use seeds below this (the 2-seed runs)")
    a = ap.parse_args()
    metrics, runs = read_runs(a.runs_dir)
    runs = runs.filter(runs["seed"] < a.seeds)
    metrics = metrics.filter(metrics["path"].is_in(runs["path"].implode()))
    points, held = drops.boundary_drops(metrics, runs), epochs.held_out_drops(metrics, runs)
    base = epochs.run_values(points, "resnet18")
    tests = {
        "drop against placebo (paired)": ([b - p for b, p in zip(base, epochs.run_values(points, "resnet18",
                                                                                       "placebo_drop"))], None),
        "training against held-out (paired)": (epochs.paired_runs(points, held, "resnet18"), None),
        "epochs against replacement (Welch)": (base, epochs.run_values(points, "resnet18-replacement")),
        "fixed order against placebo (paired)": ([b - p for b, p in zip(
            epochs.run_values(points, "resnet18-fixed"), epochs.run_values(points, "resnet18-fixed", "placebo_drop"))],
            None),
    }
    print(f"{'test':40} {'effect':>7} {'sd':>6}  power at n = 2..10 seeds (measured effect | half of it)")
    for name, (a_, b_) in tests.items():
        if len(a_) < 2 or (b_ is not None and len(b_) < 2):
            print(f"{name:40} too few runs")
            continue
        paired = b_ is None
        effect = sum(a_) / len(a_) - (0 if paired else sum(b_) / len(b_))
        spread = sd(a_) if paired else math.sqrt((sd(a_) ** 2 + sd(b_) ** 2) / 2)
        full = " ".join(f"{power(effect, spread, n, paired):.2f}" for n in range(2, 11))
        half = " ".join(f"{power(effect / 2, spread, n, paired):.2f}" for n in range(2, 11))
        print(f"{name:40} {effect:+7.3f} {spread:6.3f}  {full} | {half}")


if __name__ == "__main__":
    main()
