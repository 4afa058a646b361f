"""Curve data for charts: the run logs reshaped to (run, x, value) with smoothing, seed
aggregation, thinning for drawing, epoch marks and the fitted y range. Pure Polars, so it is
tested without drawing anything."""

from __future__ import annotations

import polars as pl

X_AXES = {"step": "step", "epoch": "epoch", "wall time": "time"}
SEED_MODES = ("each run", "mean and min-max band")
MAX_EPOCH_MARKS = 500
MIN_SPAN = 0.05  # of a bounded measure's range: a flat top-1 of 0 is not drawn on a hair-thin axis
NOT_SCALARS = {"step", "time", "epoch", "seed"}  # logged numbers that are axes or identities, not curves
SERIES_SCHEMA = {"group": pl.String, "variant": pl.String, "seed": pl.Int64, "name": pl.String, "run_id": pl.String,
                 "path": pl.String, "step": pl.Int64, "x": pl.Float64, "raw": pl.Float64, "value": pl.Float64}


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


def _who(runs: pl.DataFrame, column: str, fallback: pl.Expr) -> pl.Expr:
    """A run's group or name (nbkit.rundir.reader) by its path; the fallback for runs not in `runs`."""
    if runs.is_empty() or column not in runs.columns:
        return fallback
    mapping = dict(runs.select("path", column).iter_rows())
    return pl.col("path").replace_strict(mapping, default=fallback, return_dtype=pl.String)


def series(metrics: pl.DataFrame, runs: pl.DataFrame, split: str, value: str, x: str = "step",
           smoothing: float = 0.0) -> pl.DataFrame:
    """One split's value per run along x: columns group (the run's group of settings), variant,
    seed, name (the run as people read it), run_id, path, step, x, raw and value. value is raw
    smoothed by an exponential moving average whose weight of the past is `smoothing` (0 = raw,
    0.9 = heavy), per run in step order and debiased at the start as TensorBoard does (a weighted
    mean of the points so far)."""
    if metrics.is_empty() or value not in metrics.columns or not metrics.schema[value].is_numeric():
        return pl.DataFrame(schema=SERIES_SCHEMA)
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing expects a weight in [0, 1), got {smoothing}")
    column = X_AXES[x]
    df = with_epoch(metrics.filter((pl.col("split") == split) & pl.col(value).is_not_null()), runs)
    seed = pl.col("seed").cast(pl.String).fill_null("?")
    df = df.sort("path", "step").select(
        _who(runs, "group", pl.col("variant")).alias("group"), "variant", "seed",
        _who(runs, "name", pl.format("{} s{}", "variant", seed)).alias("name"), "run_id", "path", "step",
        pl.col(column).cast(pl.Float64).alias("x"), pl.col(value).cast(pl.Float64).alias("raw"))
    df = df.filter(pl.col("raw").is_finite() & pl.col("x").is_not_null())
    smoothed = pl.col("raw").ewm_mean(alpha=1 - smoothing, adjust=True).over("path") if smoothing > 0 else pl.col("raw")
    return df.with_columns(smoothed.alias("value"))


def aggregate_seeds(df: pl.DataFrame) -> pl.DataFrame:
    """Mean, min and max across a group's seeds at each step (two runs of one seed averaged
    first; x is the steps' mean x); the name is the group's."""
    per_seed = df.group_by("group", "variant", "seed", "step").agg(pl.col("x", "raw", "value").mean())
    return (per_seed.group_by("group", "variant", "step")
            .agg(pl.col("x").mean(), pl.col("raw").mean(), pl.col("value").mean().alias("value"),
                 pl.col("value").min().alias("low"), pl.col("value").max().alias("high"),
                 pl.col("seed").n_unique().alias("seeds"))
            .with_columns(pl.col("group").alias("name"))
            .sort("group", "step"))


def thin(df: pl.DataFrame, max_points: int = 250, budget: int = 12_000) -> pl.DataFrame:
    """At most about max_points per line for drawing, and about budget over all of a panel's lines
    (at least MIN_POINTS each): every k-th logged point, the same k for every run so their steps
    stay aligned, and each run's last point; smooth before thinning. A hundred lines of 250 points
    each cost the browser more to redraw than a 720-pixel panel shows."""
    if df.is_empty():
        return df
    key = "path" if "path" in df.columns else "name"
    counts = df.group_by(key).len()["len"]
    per_line = max(MIN_POINTS, min(max_points, budget // max(counts.len(), 1)))
    k = -(-int(counts.max()) // per_line)
    if k <= 1:
        return df
    i = pl.int_range(pl.len()).over(key)
    return df.filter((i % k == 0) | (i == pl.len().over(key) - 1))


MIN_POINTS = 60
LONG_RUN = 50  # points of a run from which its start is left out of the fitted y range


def y_domain(df: pl.DataFrame, skip_start: float = 0.0, bounds: tuple[float, float] | None = None) -> list[float] | None:
    """The y range of what is drawn, padded by 4% (at least 0.01): the lines, their bands, and
    (when skip_start > 0) without the first skip_start of each long run's steps (LONG_RUN points or
    more), where a loss starts far above where it settles; within bounds where the measure has them (top-1: 0 to 1)."""
    if df.is_empty():
        return None
    if skip_start > 0:  # per run, and only a long one's: a short run (a few dozen points) is drawn whole
        by = "path" if "path" in df.columns else None
        first, last = (pl.col("step").min(), pl.col("step").max()) if by is None else \
            (pl.col("step").min().over(by), pl.col("step").max().over(by))
        points = pl.len() if by is None else pl.len().over(by)
        later = df.filter((points < LONG_RUN) | (pl.col("step") >= first + skip_start * (last - first)))
        df = later if not later.is_empty() else df
    columns = [c for c in ("value", "low", "high") if c in df.columns]
    values = pl.concat([df[c].cast(pl.Float64) for c in columns]).drop_nulls()
    values = values.filter(values.is_finite())
    if values.is_empty():
        return None
    low, high = float(values.min()), float(values.max())
    pad = max((high - low) * 0.04, abs(high) * 0.04 if high == low else 0.0, 0.01)
    low, high = low - pad, high + pad
    if bounds is not None:  # inside the measure's range, and at least MIN_SPAN of it tall
        low, high = max(low, bounds[0]), min(high, bounds[1])
        span = min(MIN_SPAN * (bounds[1] - bounds[0]), bounds[1] - bounds[0])
        if high - low < span:
            low = max(bounds[0], min(low, bounds[1] - span))
            high = low + span
    return [low, high]


def scalars(metrics: pl.DataFrame) -> dict[str, tuple[str, str]]:
    """Every logged scalar by split: {"test loss": ("test", "loss"), "train lr": ("train", "lr"), ...};
    any numeric column of the logs that some row of that split holds."""
    if metrics.is_empty() or "split" not in metrics.columns:
        return {}
    columns = [c for c, t in metrics.schema.items() if t.is_numeric() and c not in NOT_SCALARS]
    if not columns:
        return {}
    counts = metrics.group_by("split").agg(pl.col(c).is_not_null().sum() for c in columns).sort("split")
    out = {}
    for row in counts.iter_rows(named=True):
        for c in columns:
            if row[c]:
                out[f"{row['split']} {c}"] = (row["split"], c)
    return out


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


def layer_temperatures(metrics: pl.DataFrame) -> pl.DataFrame:
    """Each run's learned tau per layer at its last logged step (columns tau/<layer>): run_id,
    variant, seed, step, layer, tau. Empty when no run logged them."""
    columns = sorted((c for c in metrics.columns if c.startswith("tau/") and c[4:].isdigit()), key=lambda c: int(c[4:]))
    if not columns:
        return pl.DataFrame()
    last = (metrics.filter((pl.col("split") == "train") & pl.col(columns[0]).is_not_null())
            .sort("step").group_by("path", maintain_order=True).last())
    return (last.unpivot(columns, index=["run_id", "variant", "seed", "step", "path"], variable_name="layer",
                         value_name="tau")
            .with_columns(pl.col("layer").str.slice(4).cast(pl.Int64)).drop_nulls("tau"))
