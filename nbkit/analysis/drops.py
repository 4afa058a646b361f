"""The epoch-boundary drop: how much lower the training loss is just after an epoch ends than
the trend just before it predicts (the original's open puzzle: "Why does the loss suddenly drop
periodically (after each epoch) for ResNet?").

At each boundary a line is fitted to log(loss) over a window just before it and extrapolated
over a window just after it; the drop is that trend minus the loss actually logged after it, so
the steady decrease of a falling loss is not counted. The same statistic one window before each
epoch end (where nothing changes in the data order) is the placebo: what the statistic gives by
chance and by the curve's own bend. It sits there, not at mid-epoch, because a curve that drops at
each boundary falls steeply just after it and then flattens: a mid-epoch point's line is fitted on
that steep stretch and overshoots (about -10% for resnet18 on the CPU runs), while the point one
window before the end extrapolates over exactly the stretch the boundary's own trend line is
fitted on, so it carries the same bend and nothing of the previous drop. Pure Polars over the run logs.
"""

from __future__ import annotations

import math

import polars as pl

from nbkit.analysis.steps import marks_near

POINTS_SCHEMA = {"path": pl.String, "run_id": pl.String, "variant": pl.String, "seed": pl.Int64,
                 "kind": pl.String, "epoch": pl.Float64, "step": pl.Int64, "before": pl.Float64,
                 "trend": pl.Float64, "after": pl.Float64, "drop": pl.Float64, "relative": pl.Float64}
KINDS = ("boundary", "placebo")
MIN_BEFORE = 2  # logged rows a trend line needs


def default_window(steps_per_epoch: int, log_every: int) -> int:
    """Steps on each side of a point: a quarter of an epoch, at least three log rows, and at
    most half an epoch so a placebo's windows never cross a boundary."""
    return max(1, min(max(3 * log_every, steps_per_epoch // 4), steps_per_epoch // 2))


def _points(steps_per_epoch: int, steps: list[int], window: int, reach: int) -> list[tuple[str, int, float]]:
    """(kind, step, epoch) of every boundary and, in every epoch after the first that ends by the
    last step, the placebo one window before its end (its after-window ends at the boundary); only
    those within reach of a logged step, so the work is bounded by the rows (nbkit.analysis.steps)."""
    spe, last_step = steps_per_epoch, steps[-1]
    out = [("boundary", b, b / spe) for b in marks_near(steps, spe, reach)]
    if spe >= 2 * window:
        out += [("placebo", p, p / spe) for p in marks_near(steps, spe, reach, offset=spe - window)
                if p + window <= last_step]
    return sorted(out, key=lambda p: p[1])


def _fit_line(xs: list[float], ys: list[float]) -> tuple[float, float] | None:
    """Least-squares (slope, intercept); None when the xs do not spread."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx <= 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return slope, my - slope * mx


def _run_drops(steps: list[int], losses: list[float], spe: int, window: int | None) -> list[dict]:
    """The drop at every point of one run. A train row at step s is the mean over the steps
    s - L .. s - 1 (L the log interval), so it lies wholly before a point b when s <= b and wholly
    after it when s - L >= b; a row across the point is left out."""
    if len(steps) < 2 or spe < 2:
        return []
    gaps = sorted(b - a for a, b in zip(steps, steps[1:]) if b > a)
    if not gaps:
        return []
    log_every = gaps[len(gaps) // 2]
    w = window or default_window(spe, log_every)
    mid = [(s - (log_every - 1) / 2, s, y) for s, y in zip(steps, losses)]  # x: the row's centre
    out = []
    for kind, b, epoch in _points(spe, steps, w, w + log_every):
        before = [(x, y) for x, s, y in mid if b - w < s - log_every + 1 and s <= b]
        after = [(x, y) for x, s, y in mid if s - log_every >= b and s <= b + w]
        if len(before) < MIN_BEFORE or not after:
            continue
        line = _fit_line([x for x, _ in before], [math.log(y) for _, y in before])
        if line is None:
            continue
        slope, intercept = line
        trend = sum(math.exp(slope * x + intercept) for x, _ in after) / len(after)
        actual = sum(y for _, y in after) / len(after)
        out.append({"kind": kind, "epoch": epoch, "step": b, "before": sum(y for _, y in before) / len(before),
                    "trend": trend, "after": actual, "drop": trend - actual, "relative": (trend - actual) / trend})
    return out


def boundary_drops(metrics: pl.DataFrame, runs: pl.DataFrame, window: int | None = None) -> pl.DataFrame:
    """One row per run and point (every epoch boundary, and the placebo point one window before
    each later epoch end): the mean training loss before, the trend's prediction after, the loss after, the drop
    (trend - after; positive: below the trend) and the relative drop (drop / trend). window: steps
    on each side (default: a quarter of an epoch, see default_window)."""
    empty = pl.DataFrame(schema=POINTS_SCHEMA)
    if (metrics.is_empty() or runs.is_empty() or not {"split", "loss", "step"} <= set(metrics.columns)
            or "steps_per_epoch" not in runs.columns):
        return empty
    if window is not None and window < 1:
        raise ValueError(f"window expects a positive number of steps, got {window}")
    spe = dict(runs.select("path", "steps_per_epoch").iter_rows())
    train = (metrics.filter((pl.col("split") == "train") & pl.col("loss").is_not_null() & (pl.col("loss") > 0))
             .select("path", "run_id", "variant", "seed", "step", "loss").sort("path", "step"))
    rows = []
    for (path,), run in train.group_by("path", maintain_order=True):
        per_epoch = spe.get(path)
        if not isinstance(per_epoch, int) or per_epoch < 1:
            continue
        run = run.unique("step", keep="last", maintain_order=True)
        who = run.row(0, named=True)
        for point in _run_drops(run["step"].to_list(), run["loss"].to_list(), per_epoch, window):
            rows.append({"path": path, "run_id": who["run_id"], "variant": who["variant"], "seed": who["seed"], **point})
    return pl.DataFrame(rows, schema=POINTS_SCHEMA) if rows else empty


def drop_per_run(drops: pl.DataFrame) -> pl.DataFrame:
    """Per run: the mean relative drop at boundaries and at placebo points, the spread of the
    placebo ones, and how many points each has."""
    keys = ["path", "run_id", "variant", "seed"]
    if drops.is_empty():
        return pl.DataFrame(schema={**{k: POINTS_SCHEMA[k] for k in keys}, "boundary_drop": pl.Float64,
                                    "placebo_drop": pl.Float64, "placebo_std": pl.Float64,
                                    "boundaries": pl.UInt32, "placebos": pl.UInt32})
    at = lambda kind: pl.col("relative").filter(pl.col("kind") == kind)
    return (drops.group_by(keys, maintain_order=True)
            .agg(at("boundary").mean().alias("boundary_drop"), at("placebo").mean().alias("placebo_drop"),
                 at("placebo").std().alias("placebo_std"), at("boundary").len().alias("boundaries"),
                 at("placebo").len().alias("placebos")))


def drop_per_variant(drops: pl.DataFrame, by: str = "variant") -> pl.DataFrame:
    """Per variant (or any column of drop_per_run's): the mean and std across runs (seeds) of the
    per-run relative drop at boundaries and at placebo points, and how many runs that is."""
    per_run = drop_per_run(drops)
    if per_run.is_empty():
        return pl.DataFrame(schema={by: pl.String, "seeds": pl.UInt32, "boundary_drop_mean": pl.Float64,
                                    "boundary_drop_std": pl.Float64, "placebo_drop_mean": pl.Float64,
                                    "placebo_drop_std": pl.Float64, "boundaries": pl.Int64})
    return (per_run.group_by(by, maintain_order=True)
            .agg(pl.col("boundary_drop").drop_nulls().len().alias("seeds"),
                 pl.col("boundary_drop").mean().alias("boundary_drop_mean"),
                 pl.col("boundary_drop").std().alias("boundary_drop_std"),
                 pl.col("placebo_drop").mean().alias("placebo_drop_mean"),
                 pl.col("placebo_drop").std().alias("placebo_drop_std"),
                 pl.col("boundaries").cast(pl.Int64).sum().alias("boundaries"))
            .sort(by))
