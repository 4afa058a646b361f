"""Curve data for charts: the run logs reshaped to (run, x, value) with smoothing, seed
aggregation and epoch marks. Pure Polars, so it is tested without drawing anything."""

from __future__ import annotations

import polars as pl

X_AXES = {"step": "step", "epoch": "epoch", "wall time": "time"}
SEED_MODES = ("each run", "mean and min-max band")
MAX_EPOCH_MARKS = 500


def select(metrics: pl.DataFrame, variants: list[str] | None = None) -> pl.DataFrame:
    if metrics.is_empty():
        return metrics
    return metrics.filter(pl.col("variant").is_in(variants)) if variants is not None else metrics


def with_epoch(metrics: pl.DataFrame, runs: pl.DataFrame) -> pl.DataFrame:
    """Adds `epoch` = step / steps_per_epoch of each run."""
    if "steps_per_epoch" not in runs.columns:
        return metrics.with_columns(pl.lit(None, pl.Float64).alias("epoch"))
    spe = runs.select("path", "steps_per_epoch")
    return metrics.join(spe, on="path", how="left").with_columns(
        (pl.col("step") / pl.col("steps_per_epoch")).alias("epoch")).drop("steps_per_epoch")


def series(metrics: pl.DataFrame, runs: pl.DataFrame, split: str, value: str, x: str = "step",
           smoothing: float = 0.0) -> pl.DataFrame:
    """One split's value per run along x: columns variant, seed, run_id, path, step, x, value.
    smoothing is the EMA weight of the past (0 = raw, 0.9 = heavy), applied per run in step order."""
    if metrics.is_empty() or value not in metrics.columns:
        return pl.DataFrame(schema={"variant": pl.String, "seed": pl.Int64, "run_id": pl.String, "path": pl.String,
                                    "step": pl.Int64, "x": pl.Float64, "value": pl.Float64})
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing expects a weight in [0, 1), got {smoothing}")
    column = X_AXES[x]
    df = with_epoch(metrics.filter((pl.col("split") == split) & pl.col(value).is_not_null()), runs)
    df = df.sort("path", "step").select(
        "variant", "seed", "run_id", "path", "step",
        pl.col(column).cast(pl.Float64).alias("x"), pl.col(value).cast(pl.Float64).alias("value"))
    if smoothing > 0:
        df = df.with_columns(pl.col("value").ewm_mean(alpha=1 - smoothing, adjust=False).over("path"))
    return df


def aggregate_seeds(df: pl.DataFrame) -> pl.DataFrame:
    """Mean, min and max across a variant's seeds at each step (x is the steps' mean x)."""
    return (df.group_by("variant", "step")
            .agg(pl.col("x").mean(), pl.col("value").mean().alias("value"),
                 pl.col("value").min().alias("low"), pl.col("value").max().alias("high"),
                 pl.col("seed").n_unique().alias("seeds"))
            .sort("variant", "step"))


def epoch_marks(runs: pl.DataFrame, variants: list[str] | None, x: str, max_step: int) -> pl.DataFrame:
    """Where epochs end on the x axis: multiples of steps_per_epoch (step axis) or integers
    (epoch axis); none for wall time, where each run's epochs end at different times, and none
    when there would be more than MAX_EPOCH_MARKS (a chart full of rules shows nothing)."""
    if runs.is_empty() or x == "wall time" or "steps_per_epoch" not in runs.columns:
        return pl.DataFrame(schema={"x": pl.Float64})
    chosen = runs.filter(pl.col("variant").is_in(variants)) if variants is not None else runs
    spes = sorted({int(s) for s in chosen["steps_per_epoch"].drop_nulls() if s >= 1})
    if not spes or sum(max_step // s for s in spes) > MAX_EPOCH_MARKS:
        return pl.DataFrame(schema={"x": pl.Float64})
    if x == "epoch":
        last = max_step / min(spes)
        return pl.DataFrame({"x": [float(e) for e in range(1, int(last) + 1)]})
    return pl.DataFrame({"x": sorted({float(k * s) for s in spes for k in range(1, max_step // s + 1)})})
