"""The epochs comparison's numbers: the original's open puzzle ("Why does the loss suddenly drop
periodically (after each epoch) for ResNet? Is it because of memorization?") answered from the
run logs. Pure Polars; the charts and the notebook's sections are nbkit.view.epochs_view's.

- `aligned`: every epoch boundary of every run overlaid, x = steps since the boundary, y = the
  loss against the trend fitted just before it (the drop statistic's own fit, nbkit.analysis.drops);
- `held_out_drops`: the drop statistic on the held-out images scored near epoch ends
  (`val_dense` rows, setting boundary_eval), which were never trained on;
- `seen_series` and `seen_gap`: the loss split by how many times the examples were trained on
  before (setting seen_probe), and under replacement sampling the gap at the same weights;
- `verdicts`: each variant's drop against its placebo, seeds as the unit; `switch` (below): the
  disjoint-half control at its switch. The answer in words is nbkit.analysis.epochs_answer's.
"""

from __future__ import annotations

import math

import polars as pl

from nbkit.analysis import drops
from nbkit.analysis.significance import ALPHA, one_sample, t_quantile
from nbkit.analysis.steps import marks_near
from nbkit.rundir.schema import SEEN_GROUPS, seen_loss_column, seen_share_column

HELD_OUT = "val_dense"  # the held-out probe's rows (nbkit.training.trainer.evaluate_near_epoch_end)
ALIGNED_SCHEMA = {"path": pl.String, "variant": pl.String, "seed": pl.Int64, "split": pl.String,
                  "boundary": pl.Int64, "offset": pl.Float64, "loss": pl.Float64, "trend": pl.Float64,
                  "deviation": pl.Float64}


def _log_every(steps: list[int]) -> int:
    """The log interval, as nbkit.analysis.drops reads it: the median gap between logged steps."""
    gaps = sorted(b - a for a, b in zip(steps, steps[1:]) if b > a)
    return gaps[len(gaps) // 2] if gaps else 1


def _run_aligned(steps: list[int], losses: list[float], spe: int, window: int | None, means: bool) -> list[dict]:
    """One run's rows within a window of each boundary, against the line fitted to log(loss)
    before it. means: rows are means over the log interval (train), else point evaluations."""
    L = _log_every(steps)
    w = window or drops.default_window(spe, L)
    width = L if means else 1
    points = [(s - (width - 1) / 2, s, y) for s, y in zip(steps, losses) if y > 0]  # (x: the row's centre, step, loss)
    out = []
    for b in marks_near(steps, spe, w + width):  # the boundaries near a logged row: bounded by the rows
        near = [(x, s, y) for x, s, y in points if b - w < s - width + 1 and s <= b + w]
        before = [(x, math.log(y)) for x, s, y in near if s <= b]
        line = drops._fit_line(*zip(*before)) if len(before) >= drops.MIN_BEFORE else None
        if line is None:
            continue
        for x, s, y in near:
            trend = math.exp(line[0] * x + line[1])
            out.append({"boundary": b, "offset": x - b, "loss": y, "trend": trend, "deviation": y / trend - 1})
    return out


def aligned(metrics: pl.DataFrame, runs: pl.DataFrame, split: str = "train", window: int | None = None) -> pl.DataFrame:
    """Every boundary of every run overlaid: offset (steps since the boundary, a train row at its
    steps' centre), the loss, the trend extrapolated from the window before the boundary, and
    deviation = loss / trend - 1 (about 0 before; below 0 after it where the loss drops)."""
    if metrics.is_empty() or "steps_per_epoch" not in runs.columns or split not in metrics["split"].unique():
        return pl.DataFrame(schema=ALIGNED_SCHEMA)
    spe = dict(runs.select("path", "steps_per_epoch").iter_rows())
    rows = []
    frame = metrics.filter((pl.col("split") == split) & pl.col("loss").is_not_null()).sort("path", "step")
    for (path,), run in frame.group_by("path", maintain_order=True):
        per_epoch, who = spe.get(path), run.row(0, named=True)
        if isinstance(per_epoch, int) and per_epoch >= 2 and run.height >= 2:
            rows += [{"path": path, "variant": who["variant"], "seed": who["seed"], "split": split, **r}
                     for r in _run_aligned(run["step"].to_list(), run["loss"].to_list(), per_epoch, window,
                                           means=split == "train")]
    return pl.DataFrame(rows, schema=ALIGNED_SCHEMA) if rows else pl.DataFrame(schema=ALIGNED_SCHEMA)


def held_out_drops(metrics: pl.DataFrame, runs: pl.DataFrame, window: int | None = None) -> pl.DataFrame:
    """nbkit.analysis.drops.boundary_drops on the held-out probe's rows: how the loss of images never
    trained on moves at the same boundaries (their rows are point evaluations, not window means:
    the statistic reads them as rows of one step's width less, which moves no boundary)."""
    if metrics.is_empty() or HELD_OUT not in metrics["split"].unique():
        return drops.boundary_drops(pl.DataFrame(), runs)
    held = metrics.filter(pl.col("split") == HELD_OUT).with_columns(pl.lit("train").alias("split"))
    return drops.boundary_drops(held, runs, window).filter(pl.col("kind") == "boundary")


def seen_series(metrics: pl.DataFrame) -> pl.DataFrame:
    """The seen-count probe's columns as rows: variant, seed, path, step, group ("0", "1", "2",
    "3+" times trained on before), loss (null where the window had none of the group) and share."""
    groups = [g for g in SEEN_GROUPS if seen_share_column(g) in metrics.columns]
    if metrics.is_empty() or not groups:
        return pl.DataFrame(schema={"variant": pl.String, "seed": pl.Int64, "path": pl.String, "step": pl.Int64,
                                    "group": pl.String, "loss": pl.Float64, "share": pl.Float64})
    train = metrics.filter((pl.col("split") == "train") & pl.col(seen_share_column(groups[0])).is_not_null())
    return pl.concat([train.select("variant", "seed", "path", "step", pl.lit(g).alias("group"),
                                   (pl.col(seen_loss_column(g)) if seen_loss_column(g) in train.columns
                                    else pl.lit(None)).cast(pl.Float64).alias("loss"),
                                   pl.col(seen_share_column(g)).cast(pl.Float64).alias("share"))
                      for g in groups]).sort("path", "step", "group")


def _second_half(df: pl.DataFrame) -> pl.DataFrame:
    return df.filter(pl.col("step") > pl.col("step").max().over("path") / 2)


def seen_gap(metrics: pl.DataFrame) -> pl.DataFrame:
    """Per variant, over the second half of each run (memorisation has had time to set in) and the
    rows where examples trained on before and never trained on share the window (replacement
    sampling), so both are scored at the same weights: their mean losses, the gap (1 - seen /
    unseen) and, beside them, the held-out images' mean loss over the same half (`held`, where
    scored). Each row counts by share_unseen x share_seen, the same weight for both means, so the
    loss falling over training biases neither."""
    df = _second_half(seen_series(metrics).drop_nulls("loss"))
    schema = {"variant": pl.String, "rows": pl.UInt32, "unseen": pl.Float64, "seen": pl.Float64, "gap": pl.Float64,
              "held": pl.Float64}
    if df.is_empty():
        return pl.DataFrame(schema=schema)
    who = pl.when(pl.col("group") == "0").then(pl.lit("unseen")).otherwise(pl.lit("seen"))
    rows = (df.group_by("variant", "path", "step", who.alias("who"))
            .agg((pl.col("loss") * pl.col("share")).sum().alias("weighted"), pl.col("share").sum())
            .group_by("variant", "path", "step")
            .agg(*(pl.col(c).filter(pl.col("who") == w).first().alias(f"{w}_{c}") for w in ("seen", "unseen")
                   for c in ("weighted", "share")))
            .drop_nulls()
            .with_columns((pl.col("seen_share") * pl.col("unseen_share")).alias("w")))
    if rows.is_empty():
        return pl.DataFrame(schema=schema)
    mean = lambda w: (pl.col("w") * pl.col(f"{w}_weighted") / pl.col(f"{w}_share")).sum() / pl.col("w").sum()
    gap = (rows.group_by("variant")
           .agg(pl.len().alias("rows"), mean("unseen").alias("unseen"), mean("seen").alias("seen"))
           .with_columns((1 - pl.col("seen") / pl.col("unseen")).alias("gap")))
    held = (_second_half(metrics.filter(pl.col("split") == HELD_OUT))
            .group_by("variant").agg(pl.col("loss").mean().alias("held")))
    return gap.join(held, on="variant", how="left").sort("variant").select(list(schema)).cast(schema)


def seen_by_count(metrics: pl.DataFrame) -> pl.DataFrame:
    """Per variant and group ("1", "2", "3+" times trained on before), over the second half of each
    run and the rows where the group and the never-trained-on examples share the window (so at the
    same weights): the group's mean loss, the unseen examples' mean loss under the same weights
    (share_unseen x share_group per row) and their ratio."""
    schema = {"variant": pl.String, "group": pl.String, "rows": pl.UInt32, "unseen": pl.Float64,
              "loss": pl.Float64, "ratio": pl.Float64}
    df = _second_half(seen_series(metrics).drop_nulls("loss"))
    if df.is_empty():
        return pl.DataFrame(schema=schema)
    unseen = df.filter(pl.col("group") == "0").select("path", "step", pl.col("loss").alias("unseen_loss"),
                                                        pl.col("share").alias("unseen_share"))
    w = pl.col("share") * pl.col("unseen_share")
    out = (df.filter(pl.col("group") != "0").join(unseen, on=["path", "step"])
           .filter(w > 0)
           .group_by("variant", "group")
           .agg(pl.len().alias("rows"), ((w * pl.col("unseen_loss")).sum() / w.sum()).alias("unseen"),
                ((w * pl.col("loss")).sum() / w.sum()).alias("loss"))
           .with_columns((pl.col("loss") / pl.col("unseen")).alias("ratio"))
           .sort("variant", "group"))
    return out.select(list(schema)).cast(schema)


def verdicts(points: pl.DataFrame) -> pl.DataFrame:
    """Per variant: drop_per_variant's numbers and whether the boundary drop stands out from the
    placebo with the seed as the unit: each run's mean drop at its epoch ends minus its mean placebo
    (one number a run), a paired t test over the runs (two-sided p), `chance` the half-width of its
    95% interval and `mde` the smallest difference these seeds would find (four times in five);
    null with fewer than two runs. Boundaries are never counted as independent points: under one
    data order the same batches end every epoch, so a run's ends share its luck."""
    per = drops.drop_per_variant(points)
    extra = {"p": pl.Float64, "chance": pl.Float64, "mde": pl.Float64, "stands_out": pl.Boolean}
    if per.is_empty():
        return per.with_columns(*(pl.lit(None, t).alias(c) for c, t in extra.items()))
    runs = drops.drop_per_run(points)
    rows = []
    for variant in per["variant"]:
        mine = runs.filter(pl.col("variant") == variant).drop_nulls(["boundary_drop", "placebo_drop"])
        test = one_sample([a - b for a, b in zip(mine["boundary_drop"], mine["placebo_drop"])])
        rows.append({"variant": variant, "p": None if test is None else test.p,
                     "chance": None if test is None else test.se * t_quantile(1 - ALPHA / 2, test.df),
                     "mde": None if test is None else test.mde,
                     "stands_out": None if test is None else bool(test.p < ALPHA and test.mean > 0)})
    return per.join(pl.DataFrame(rows, schema={"variant": pl.String, **extra}), on="variant", how="left")


def run_values(points: pl.DataFrame, variant: str, column: str = "boundary_drop") -> list[float]:
    """One number per run of a variant (drop_per_run's column): what a seed-level test counts."""
    if points.is_empty():
        return []
    return drops.drop_per_run(points).filter(pl.col("variant") == variant)[column].drop_nulls().to_list()


def paired_runs(train: pl.DataFrame, held: pl.DataFrame, variant: str) -> list[float]:
    """Per run of a variant: its training drop at epoch ends minus its held-out images' drop there."""
    a = drops.drop_per_run(train).filter(pl.col("variant") == variant).select("path", "boundary_drop")
    b = drops.drop_per_run(held).filter(pl.col("variant") == variant).select("path", pl.col("boundary_drop").alias("h"))
    both = a.join(b, on="path").drop_nulls()
    return [x - y for x, y in zip(both["boundary_drop"], both["h"])]


SWITCH_SCHEMA = {"path": pl.String, "variant": pl.String, "seed": pl.Int64, "step": pl.Int64, "before": pl.Float64,
                 "trend": pl.Float64, "after": pl.Float64, "relative": pl.Float64, "held": pl.Float64}


def switch(metrics: pl.DataFrame, runs: pl.DataFrame) -> pl.DataFrame:
    """The disjoint-half control (sampling disjoint), one row per run: at its switch (the end of
    epoch switch_epoch, after which every batch holds images never trained on) the training loss
    before, the trend's prediction after, the loss after, the relative drop (negative: the loss
    rose above its trend) and the held-out images' loss over the same steps after it (`held`).
    Memorisation predicts a rise to about the held-out level; a change in the network itself
    (BatchNorm statistics, Adam's state, the schedule) predicts no rise."""
    if runs.is_empty() or "switch_epoch" not in runs.columns or "steps_per_epoch" not in runs.columns:
        return pl.DataFrame(schema=SWITCH_SCHEMA)
    at = (runs.filter(pl.col("switch_epoch").is_not_null() & (pl.col("switch_epoch") > 0))
          .select("path", (pl.col("switch_epoch") * pl.col("steps_per_epoch")).alias("step")))
    if at.is_empty():
        return pl.DataFrame(schema=SWITCH_SCHEMA)
    mine = metrics.filter(pl.col("path").is_in(at["path"].implode()))
    train = drops.boundary_drops(mine, runs).join(at, on=["path", "step"])
    held = held_out_drops(mine, runs).join(at, on=["path", "step"]).select("path", pl.col("after").alias("held"))
    out = train.join(held, on="path", how="left")
    return out.select(list(SWITCH_SCHEMA)).cast(SWITCH_SCHEMA).sort("variant", "seed")


def without_switch(frame: pl.DataFrame, runs: pl.DataFrame, column: str = "step") -> pl.DataFrame:
    """Rows of boundary_drops (column step) or aligned (column boundary) without the disjoint runs'
    switch, which is no epoch end like the others (the data change there): it is `switch`'s."""
    if frame.is_empty() or "switch_epoch" not in runs.columns:
        return frame
    at = (runs.filter(pl.col("switch_epoch").is_not_null() & (pl.col("switch_epoch") > 0))
          .select("path", (pl.col("switch_epoch") * pl.col("steps_per_epoch")).cast(pl.Int64).alias(column)))
    return frame.join(at, on=["path", column], how="anti") if not at.is_empty() else frame


def around_end(metrics: pl.DataFrame, runs: pl.DataFrame, variant: str, epoch: int, steps: int) -> tuple | None:
    """The mean training loss over the `steps` steps before and the `steps` after the end of
    `epoch`, train rows wholly on one side (mean over a variant's runs, each run's rows first), or
    None where no run of it has rows on both sides."""
    spe = dict(runs.filter(pl.col("variant") == variant).select("path", "steps_per_epoch").iter_rows())
    sides = []
    for path, per_epoch in spe.items():
        if not isinstance(per_epoch, int):
            continue
        end = epoch * per_epoch
        rows = metrics.filter((pl.col("path") == path) & (pl.col("split") == "train") & pl.col("loss").is_not_null())
        every = _log_every(rows["step"].sort().to_list())
        before = rows.filter((pl.col("step") <= end) & (pl.col("step") - every >= end - steps))["loss"]
        after = rows.filter((pl.col("step") - every >= end) & (pl.col("step") <= end + steps))["loss"]
        if len(before) and len(after):
            sides.append((before.mean(), after.mean()))
    if not sides:
        return None
    return sum(b for b, _ in sides) / len(sides), sum(a for _, a in sides) / len(sides)


def dose_response(metrics: pl.DataFrame, runs: pl.DataFrame) -> tuple[pl.DataFrame, object]:
    """Per variant with epoch ends: its mean relative drop at them (mean over runs) and its
    best-step gap (best clean train_200 - best test, nbkit.analysis.measures), and Kendall's tau
    between the two with its exact permutation test (None under three variants): whether the more
    a variant overfits, the larger its drop."""
    from nbkit.analysis.measures import run_measures
    from nbkit.analysis.significance import kendall_test

    per_run = drops.drop_per_run(without_switch(drops.boundary_drops(metrics, runs), runs)).drop_nulls("boundary_drop")
    gaps = run_measures(metrics, runs)
    if per_run.is_empty() or gaps.is_empty():
        return pl.DataFrame(schema={"variant": pl.String, "drop": pl.Float64, "gap": pl.Float64}), None
    both = (per_run.join(gaps.select("path", "gap"), on="path").drop_nulls("gap")
            .group_by("variant").agg(pl.col("boundary_drop").mean().alias("drop"), pl.col("gap").mean())
            .sort("variant"))
    test = kendall_test(both["gap"].to_list(), both["drop"].to_list()) if both.height >= 3 else None
    return both, test


def predicted_drops(metrics: pl.DataFrame, points: pl.DataFrame, variant: str, source: str) -> list[dict]:
    """The seen-count probe's prediction of the drop at the first epoch ends: measured under
    `source` (replacement sampling) an example trained on k times has `ratio_k` of the loss of one
    never trained on in the same windows, so at the end of epoch k, where every example goes from
    k - 1 to k visits, the loss should fall by 1 - ratio_k / ratio_(k-1). Beside it, `variant`'s
    measured mean relative drop at that end (over its runs)."""
    ratios = {r["group"]: r["ratio"] for r in seen_by_count(metrics).iter_rows(named=True) if r["variant"] == source}
    out, before = [], 1.0
    for k, group in enumerate(("1", "2"), start=1):
        if group not in ratios or points.is_empty():
            break
        at = points.filter((pl.col("variant") == variant) & (pl.col("kind") == "boundary") & (pl.col("epoch") == k))
        per_run = at.group_by("path").agg(pl.col("relative").mean())["relative"]
        out.append({"epoch": k, "predicted": 1 - ratios[group] / before,
                    "measured": per_run.mean() if len(per_run) else None})
        before = ratios[group]
    return out
