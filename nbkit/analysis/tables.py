"""Every table over run logs, as Polars frames (rendered as markdown by nbkit.view.summary, formatted
for the notebooks and reports by nbkit.view.present):

- each run's best top-1 on a split and its step, and the original's two tables built from it
  (best train_200 and best test top-1 per run; an augmented run's train_200 scored on augmented
  images, as the original scored it);
- per run: final and best numbers; per group of runs (a variant at one set of settings) across
  seeds: final and best test top-1 (mean, std), step of the best, the generalisation gap,
  parameters, wall time, images/s; with a val split, test top-1 at the best validation step
  beside the best-on-test column.
"""

from __future__ import annotations

import polars as pl

from nbkit.rundir.reader import ID_COLUMNS


def best_per_run(metrics: pl.DataFrame, split: str, by: str = "acc_top1") -> pl.DataFrame:
    """Each run's best `by` on `split` and its step; ties go to the earlier step. A row without a
    measured value (NaN, out of range: read as missing) never wins."""
    if metrics.is_empty() or "split" not in metrics.columns or by not in metrics.columns:
        return pl.DataFrame()
    return (metrics.filter((pl.col("split") == split) & pl.col(by).is_not_null())
            .sort(["path", by, "step"], descending=[False, True, False])
            .group_by("path", maintain_order=True).first()
            .select(*ID_COLUMNS, "path", "split", "step", by))


def per_run(metrics: pl.DataFrame, runs: pl.DataFrame) -> pl.DataFrame:
    """One row per run with its final and best numbers."""
    if metrics.is_empty() or "split" not in metrics.columns:
        return pl.DataFrame()
    if "acc_top1" not in metrics.columns:  # every value of it was damaged
        metrics = metrics.with_columns(pl.lit(None, pl.Float64).alias("acc_top1"))
    ev = metrics.filter(pl.col("split").is_in(["train_200", "test", "val"]) & pl.col("acc_top1").is_not_null())
    last = (ev.sort("step").group_by("path", "split").agg(pl.col("acc_top1").last())
            .pivot(on="split", index="path", values="acc_top1"))
    last = last.rename({c: f"final_{c}" for c in last.columns if c != "path"})
    best_test = best_per_run(metrics, "test").select("path", pl.col("acc_top1").alias("best_test"),
                                                     pl.col("step").alias("best_test_step"))
    best_train = best_per_run(metrics, "train_200").select("path", pl.col("acc_top1").alias("best_train_200"))
    out = runs.select("path", "run_id", "variant", "seed", "state", "parameters", "images_per_second",
                      *(c for c in ("group", "name", "wall_seconds", "precision") if c in runs.columns))
    if "group" not in out.columns:  # a runs frame not from nbkit.rundir.reader: each variant one group
        out = out.with_columns(pl.col("variant").alias("group"), pl.format("{} s{}", "variant", "seed").alias("name"))
    out = out.join(last, on="path", how="left").join(best_test, on="path", how="left").join(best_train, on="path", how="left")
    if "val" in set(ev["split"].unique()):
        best_val = best_per_run(metrics, "val").select("path", pl.col("step").alias("best_val_step"))
        at_val = best_val.join(ev.filter(pl.col("split") == "test").select("path", pl.col("step").alias("best_val_step"),
                                                                          pl.col("acc_top1").alias("test_at_best_val")),
                               on=["path", "best_val_step"], how="left")
        out = out.join(at_val, on="path", how="left")
    wall = metrics.group_by("path").agg(pl.col("time").max().alias("logged_seconds"))
    return out.join(wall, on="path", how="left")


def per_variant(metrics: pl.DataFrame, runs: pl.DataFrame, variants: list[str] | None = None) -> pl.DataFrame:
    """Mean and std across seeds per group: the runs of a variant whose settings are the same
    apart from the seed (nbkit.rundir.reader's `group`; a variant with runs of other settings has a row
    per setting). Finished and running runs count alike, failed ones not. Two runs of one seed
    are averaged first, so `seeds` counts distinct seeds evaluated on test and a spread is
    across seeds. `main` marks each variant's group with the most seeds (then the most steps):
    the one that speaks for the variant where one row must."""
    rows = per_run(metrics, runs)
    if rows.is_empty() or "final_test" not in rows.columns:
        return pl.DataFrame()
    rows = rows.filter(pl.col("state") != "failed")
    if variants is not None:
        rows = rows.filter(pl.col("variant").is_in(variants))
    if rows.is_empty():
        return pl.DataFrame()
    has = lambda c: c in rows.columns
    numbers = ["final_test", "best_test", "best_test_step", "best_train_200", "logged_seconds", "images_per_second",
               *(["final_train_200"] if has("final_train_200") else []),
               *(["test_at_best_val"] if has("test_at_best_val") else [])]
    seeds = rows.group_by("group", "variant", "seed").agg(pl.col("best_test").is_not_null().any().alias("evaluated"),
        *(pl.col(c).cast(pl.Float64).mean() for c in numbers), pl.col("parameters").first(),
        *([pl.col("precision").drop_nulls().unique().sort().str.join("+")] if has("precision") else []))
    aggs = [
        pl.col("seed").filter(pl.col("evaluated")).n_unique().alias("seeds"),
        pl.col("final_test").mean().alias("final_test_mean"), pl.col("final_test").std().alias("final_test_std"),
        pl.col("best_test").mean().alias("best_test_mean"), pl.col("best_test").std().alias("best_test_std"),
        pl.col("best_test").min().alias("best_test_min"), pl.col("best_test").max().alias("best_test_max"),
        pl.col("best_test_step").mean().alias("best_test_step_mean"),
        pl.col("best_train_200").mean().alias("best_train_200_mean"),
        (pl.col("final_train_200") - pl.col("final_test")).mean().alias("gap_mean") if has("final_train_200")
        else pl.lit(None, pl.Float64).alias("gap_mean"),
        (pl.col("final_train_200") - pl.col("final_test")).std().alias("gap_std") if has("final_train_200")
        else pl.lit(None, pl.Float64).alias("gap_std"),
        pl.col("parameters").first(),
        pl.col("logged_seconds").mean().alias("wall_seconds_mean"),
        pl.col("images_per_second").mean().alias("images_per_second_mean"),
    ]
    if has("precision"):  # which precision the seeds trained in ("bf16+fp32" when they differ)
        aggs.append(pl.col("precision").filter(pl.col("precision") != "").unique().sort().str.join("+").alias("precision"))
    if has("test_at_best_val"):
        aggs.append(pl.col("test_at_best_val").mean().alias("test_at_best_val_mean"))
    table = seeds.group_by("group", "variant").agg(aggs)
    main = set(main_groups(rows))
    return (table.with_columns(pl.col("group").is_in(list(main)).alias("main"))
            .sort(["best_test_mean", "group"], descending=[True, False], nulls_last=True))


def main_groups(rows: pl.DataFrame) -> list[str]:
    """Each variant's main group among per_run rows: the one with most seeds evaluated on test,
    then the most steps, then by name. What speaks for a variant where one number must (the
    scorecard); a variant's runs at other settings have rows of their own in per_variant."""
    if rows.is_empty() or "group" not in rows.columns:
        return []
    ranked = (rows.group_by("variant", "group")
              .agg(pl.col("seed").filter(pl.col("best_test").is_not_null()).n_unique().alias("seeds"),
                   pl.col("best_test_step").max().fill_null(-1).alias("steps"))
              .sort(["variant", "seeds", "steps", "group"], descending=[False, True, True, False]))
    return ranked.group_by("variant", maintain_order=True).first()["group"].to_list()


def original_tables(metrics: pl.DataFrame, runs: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(train_200, test): each run's best top-1 and its step, best first, as the original sorted.

    The original scored train_200 through its training pipeline, so an augmented run's images
    were freshly augmented: such runs show `train_200_aug`. An augmented run logged before nbkit
    kept that probe shows its clean score, labelled `train_200 (clean)` (runs: to know which)."""
    train, aug = best_per_run(metrics, "train_200"), best_per_run(metrics, "train_200_aug")
    if not aug.is_empty():
        train = pl.concat([train.filter(~pl.col("path").is_in(aug["path"].implode())), aug])
    if runs is not None and not train.is_empty() and "use_augmentation" in runs.columns:
        augmented = runs.filter(pl.col("use_augmentation").fill_null(False))["path"].implode()
        train = train.with_columns(pl.when(pl.col("path").is_in(augmented) & (pl.col("split") == "train_200"))
                                   .then(pl.lit("train_200 (clean)")).otherwise(pl.col("split")).alias("split"))
    test = best_per_run(metrics, "test")
    return tuple(t.sort(["acc_top1", "path"], descending=[True, False]) if not t.is_empty() else t
                 for t in (train, test))
