"""The original's two tables: best train_200 and best test top-1 per run, as markdown."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from .escape import md_text
from .runlog import best_per_run, read_runs


def best_tables(metrics: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(train_200, test): each run's best top-1 and its step, best first, as the original sorted."""
    out = []
    for split in ("train_200", "test"):
        best = best_per_run(metrics, split)
        if not best.is_empty():
            best = best.sort(["acc_top1", "path"], descending=[True, False])
        out.append(best)
    return out[0], out[1]


def markdown_table(frame: pl.DataFrame, columns: list[str], align: str) -> str:
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else md_text(v)

    rows = [[cell(v) for v in r] for r in frame.select(columns).iter_rows()]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    line = lambda cells: "| " + " | ".join(
        c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(cells, widths, align)) + " |"
    rule = "| " + " | ".join(("-" * (w - 1) + ":") if a == "r" else (":" + "-" * (w - 1))
                             for w, a in zip(widths, align)) + " |"
    return "\n".join([line(columns), rule, *map(line, rows)])


def summary_markdown(runs_dir: str | Path, dataset: str | None = None) -> str:
    metrics, runs = read_runs(runs_dir, dataset)
    if metrics.is_empty():
        where = f"{runs_dir}" + (f" for dataset {dataset}" if dataset else "")
        return f"No runs with metrics under {where}. Train one with: python -m nbkit train resnet18"
    train_200, test = best_tables(metrics)
    root = Path(runs_dir)
    parts = []
    for title, table in (("Train Subset Results", train_200), ("Test Set Results", test)):
        if table.is_empty():
            continue
        table = table.with_columns(
            pl.col("path").map_elements(lambda p: str(Path(p).relative_to(root)) if Path(p).is_relative_to(root) else p,
                                        return_dtype=pl.String),
            pl.col("acc_top1").alias("top1_acc"))
        parts.append(f"#### {title}\n\n" + markdown_table(table, ["path", "split", "step", "top1_acc"], "llrr"))
    return "\n\n".join(parts)


def variant_markdown(runs_dir: str | Path, dataset: str | None = None) -> str:
    """Per variant across seeds: best and final test top-1 (mean +- std), train_200 - test gap."""
    from .tables import per_variant

    metrics, runs = read_runs(runs_dir, dataset)
    table = per_variant(metrics, runs)
    if table.is_empty():
        return f"No runs with metrics under {runs_dir}."
    pm = lambda m, s: f"{m:.4f}" + (f" ± {s:.4f}" if s is not None else "")
    table = table.with_columns(
        pl.struct("best_test_mean", "best_test_std").map_elements(
            lambda r: pm(r["best_test_mean"], r["best_test_std"]), return_dtype=pl.String).alias("best test top-1"),
        pl.struct("final_test_mean", "final_test_std").map_elements(
            lambda r: pm(r["final_test_mean"], r["final_test_std"]), return_dtype=pl.String).alias("final test top-1"),
        pl.col("gap_mean").round(4).cast(pl.String).alias("train_200 - test"),
        pl.col("seeds").cast(pl.String), pl.col("parameters").cast(pl.String),
        pl.col("images_per_second_mean").round(0).cast(pl.String).alias("img/s"))
    return markdown_table(table, ["variant", "seeds", "best test top-1", "final test top-1", "train_200 - test",
                                  "parameters", "img/s"], "lrrrrrr")
