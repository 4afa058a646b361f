"""Tables and findings over run logs, as Polars frames and markdown sentences.

- the original's two tables (best train_200 and best test top-1 per run, with the step);
- per variant across seeds: final and best test top-1 (mean, std), step of the best, the
  generalisation gap, parameters, wall time, images/s; with a val split, test top-1 at the
  best validation step beside the best-on-test column;
- findings computed from those frames.
"""

from __future__ import annotations

import polars as pl

from .escape import md_text
from .runlog import best_per_run
from .summary import best_tables

OVERFIT_TRAIN_200 = 0.95  # train_200 top-1 at or above this counts as memorised


def per_run(metrics: pl.DataFrame, runs: pl.DataFrame) -> pl.DataFrame:
    """One row per run with its final and best numbers."""
    if metrics.is_empty() or "split" not in metrics.columns:
        return pl.DataFrame()
    ev = metrics.filter(pl.col("split").is_in(["train_200", "test", "val"]))
    last = (ev.sort("step").group_by("path", "split").agg(pl.col("acc_top1").last())
            .pivot(on="split", index="path", values="acc_top1"))
    last = last.rename({c: f"final_{c}" for c in last.columns if c != "path"})
    best_test = best_per_run(metrics, "test").select("path", pl.col("acc_top1").alias("best_test"),
                                                     pl.col("step").alias("best_test_step"))
    best_train = best_per_run(metrics, "train_200").select("path", pl.col("acc_top1").alias("best_train_200"))
    out = runs.select("path", "run_id", "variant", "seed", "state", "parameters", "images_per_second",
                      *([c] if (c := "wall_seconds") in runs.columns else []))
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
    """Mean and std across seeds per variant (finished and running runs alike; failed excluded)."""
    rows = per_run(metrics, runs)
    if rows.is_empty() or "final_test" not in rows.columns:
        return pl.DataFrame()
    rows = rows.filter(pl.col("state") != "failed")
    if variants is not None:
        rows = rows.filter(pl.col("variant").is_in(variants))
    has = lambda c: c in rows.columns
    aggs = [
        pl.len().alias("seeds"),
        pl.col("final_test").mean().alias("final_test_mean"), pl.col("final_test").std().alias("final_test_std"),
        pl.col("best_test").mean().alias("best_test_mean"), pl.col("best_test").std().alias("best_test_std"),
        pl.col("best_test").min().alias("best_test_min"), pl.col("best_test").max().alias("best_test_max"),
        pl.col("best_test_step").mean().alias("best_test_step_mean"),
        pl.col("best_train_200").mean().alias("best_train_200_mean"),
        (pl.col("final_train_200") - pl.col("final_test")).mean().alias("gap_mean") if has("final_train_200")
        else pl.lit(None, pl.Float64).alias("gap_mean"),
        pl.col("parameters").first(),
        pl.col("logged_seconds").mean().alias("wall_seconds_mean"),
        pl.col("images_per_second").mean().alias("images_per_second_mean"),
    ]
    if has("test_at_best_val"):
        aggs.append(pl.col("test_at_best_val").mean().alias("test_at_best_val_mean"))
    out = rows.group_by("variant").agg(aggs).sort("best_test_mean", descending=True, nulls_last=True)
    return out


def original_tables(metrics: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    return best_tables(metrics)


def display(frame: pl.DataFrame, digits: int = 4) -> pl.DataFrame:
    """Rounded floats for showing (the frames above keep full precision)."""
    if frame.is_empty():
        return frame
    return frame.with_columns(pl.col(pl.Float64, pl.Float32).round(digits))


def findings(table: pl.DataFrame, runs_per_run: pl.DataFrame, baseline: str = "resnet18") -> list[str]:
    """Plain sentences computed from the per-variant table and the per-run rows."""
    if table.is_empty():
        return []
    out = []
    best = table.row(0, named=True)
    spread = lambda r: (r["best_test_max"] - r["best_test_min"]) if r["seeds"] > 1 else None
    text = (f"**{md_text(best['variant'])}** has the best test top-1: {best['best_test_mean']:.4f} "
            f"(best step, mean of {best['seeds']} seed{'s' if best['seeds'] > 1 else ''}).")
    base = table.filter(pl.col("variant") == baseline)
    if best["variant"] != baseline and not base.is_empty():
        b = base.row(0, named=True)
        margin = best["best_test_mean"] - b["best_test_mean"]
        widest = max((s for s in (spread(best), spread(b)) if s is not None), default=None)
        if widest is None:
            verdict = "with one seed each, the seeds' spread is unknown: run more seeds to tell"
        elif margin > widest:
            verdict = f"larger than the seeds' spread ({widest:.4f}), so the lead holds across seeds"
        else:
            verdict = f"within the seeds' spread ({widest:.4f}), so it may be noise"
        text += f" Its margin over {md_text(baseline)} is {margin:+.4f}, {verdict}."
    out.append(text)
    if not runs_per_run.is_empty() and "best_train_200" in runs_per_run.columns:
        over = (runs_per_run.filter(pl.col("best_train_200") >= OVERFIT_TRAIN_200)
                .group_by("variant").agg(pl.col("best_test").mean()).sort("variant"))
        if over.height:
            names = ", ".join(f"{md_text(v)} (test {t:.3f})" for v, t in over.iter_rows())
            out.append(f"Overfitting: {names} reached train_200 top-1 of at least {OVERFIT_TRAIN_200} "
                       "while test top-1 stayed far below.")
    worst = table.row(table.height - 1, named=True)
    if table.height > 1:
        out.append(f"Lowest test top-1: **{md_text(worst['variant'])}** at {worst['best_test_mean']:.4f}.")
    if "test_at_best_val_mean" in table.columns:
        diff = (table["best_test_mean"] - table["test_at_best_val_mean"]).mean()
        out.append(f"Picking the step on the test set itself (as the original did) flatters test top-1 by "
                   f"{diff:.4f} on average over picking it on the val split.")
    return out
