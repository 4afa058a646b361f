"""Markdown from the tables: the original's two tables (best train_200 and best test top-1 per
run), one row per variant across seeds, and findings in plain sentences."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from nbkit.analysis.measures import OVERFIT_GAP
from nbkit.analysis.tables import original_tables, per_variant
from nbkit.design.comparisons import Comparison
from nbkit.rundir.reader import read_runs
from nbkit.view.escape import md_text


def markdown_table(frame: pl.DataFrame, columns: list[str], align: str) -> str:
    def cell(v):
        return "—" if v is None else f"{v:.4g}" if isinstance(v, float) else md_text(v)

    rows = [[cell(v) for v in r] for r in frame.select(columns).iter_rows()]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    line = lambda cells: "| " + " | ".join(
        c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(cells, widths, align)) + " |"
    rule = "| " + " | ".join(("-" * (w - 1) + ":") if a == "r" else (":" + "-" * (w - 1))
                             for w, a in zip(widths, align)) + " |"
    return "\n".join([line(columns), rule, *map(line, rows)])


def of_variants(frames: tuple[pl.DataFrame, pl.DataFrame], variants) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The runs of these variants alone (None: every run), e.g. one comparison's."""
    metrics, runs = frames
    if variants is None or runs.is_empty():
        return metrics, runs
    runs = runs.filter(pl.col("variant").is_in(list(variants)))
    return (metrics.filter(pl.col("path").is_in(runs["path"].to_list())) if not metrics.is_empty() else metrics), runs


def summary_markdown(runs_dir: str | Path, dataset: str | None = None, variants=None) -> str:
    """The original's two tables; variants: only their runs (None: every run)."""
    metrics, runs = of_variants(read_runs(runs_dir, dataset), variants)
    if metrics.is_empty():
        where = f"{runs_dir}" + (f" for dataset {dataset}" if dataset else "")
        return f"No runs with metrics under {where}. Train one with: python -m nbkit train resnet18"
    train_200, test = original_tables(metrics, runs)
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


FINAL_GAP = "final-step gap"  # final train_200 - final test; the scorecard's "best-step gap" is best minus best


def variant_markdown(runs_dir: str | Path, dataset: str | None = None, variants=None) -> str:
    """Per variant across seeds: best and final test top-1 (mean +- std), the final-step gap
    (final train_200 - final test; the scorecard's is the best-step gap, best minus best),
    parameters, images/s and the precision trained in; variants: only theirs (None: every variant)."""
    metrics, runs = of_variants(read_runs(runs_dir, dataset), variants)
    table = per_variant(metrics, runs)
    if table.is_empty():
        return f"No runs with metrics under {runs_dir}."
    pm = lambda m, s: "—" if m is None else f"{m:.4f}" + (f" ± {s:.4f}" if s is not None else "")
    table = table.with_columns(
        pl.struct("best_test_mean", "best_test_std").map_elements(
            lambda r: pm(r["best_test_mean"], r["best_test_std"]), return_dtype=pl.String).alias("best test top-1"),
        pl.struct("final_test_mean", "final_test_std").map_elements(
            lambda r: pm(r["final_test_mean"], r["final_test_std"]), return_dtype=pl.String).alias("final test top-1"),
        pl.col("gap_mean").round(4).cast(pl.String).alias(FINAL_GAP),
        pl.col("seeds").cast(pl.String), pl.col("parameters").cast(pl.String),
        pl.col("images_per_second_mean").round(0).cast(pl.String).alias("img/s"))
    if "precision" not in table.columns:
        table = table.with_columns(pl.lit(None, pl.String).alias("precision"))
    table = table.with_columns(pl.col("precision").fill_null("—").replace("", "—"))
    table = table.with_columns(pl.col("group").alias("variant")) if "group" in table.columns else table
    return markdown_table(table, ["variant", "seeds", "best test top-1", "final test top-1", FINAL_GAP,
                                  "parameters", "img/s", "precision"], "lrrrrrrl")


def findings(table: pl.DataFrame, runs_per_run: pl.DataFrame, baseline: str = "resnet18") -> list[str]:
    """Plain sentences computed from the per-variant table (a row per group of runs) and the
    per-run rows; groups whose runs have no test evaluation yet take no part, and a spread needs
    two measured seeds. The baseline is the variant's main group (tables.per_variant)."""
    if table.is_empty():
        return []
    table = table.filter(pl.col("best_test_mean").is_not_null())
    if table.is_empty():
        return ["No run has been evaluated on test yet."]
    name = lambda r: md_text(r.get("group") or r["variant"])
    out = []
    best = table.row(0, named=True)
    spread = lambda r: (r["best_test_max"] - r["best_test_min"]) if r["seeds"] > 1 else None
    text = (f"**{name(best)}** has the best test top-1: {best['best_test_mean']:.4f} "
            f"(best step, mean of {best['seeds']} seed{'s' if best['seeds'] > 1 else ''}).")
    base = table.filter(pl.col("variant") == baseline)
    if "main" in base.columns:
        base = base.filter(pl.col("main"))
    if not base.is_empty() and (best.get("group") or best["variant"]) != (base.row(0, named=True).get("group") or baseline):
        b = base.row(0, named=True)
        margin = best["best_test_mean"] - b["best_test_mean"]
        widest = max((s for s in (spread(best), spread(b)) if s is not None), default=None)
        if widest is None:
            verdict = "with one seed each, the seeds' spread is unknown: run more seeds to tell"
        elif margin > widest:
            verdict = f"larger than the seeds' spread ({widest:.4f}), so the lead holds across seeds"
        else:
            verdict = f"within the seeds' spread ({widest:.4f}), so it may be noise"
        text += f" Its margin over {name(b)} is {margin:+.4f}, {verdict}."
    out.append(text)
    out += _overfitting(runs_per_run)
    worst = table.row(table.height - 1, named=True)
    if table.height > 1:
        out.append(f"Lowest test top-1: **{name(worst)}** at {worst['best_test_mean']:.4f}.")
    held_out = table.filter(pl.col("test_at_best_val_mean").is_not_null()) if "test_at_best_val_mean" in table.columns \
        else table.clear()
    diff = (held_out["best_test_mean"] - held_out["test_at_best_val_mean"]).mean() if held_out.height else None
    if diff is not None and round(diff, 4) != 0:  # where runs held out a val split, and picking on it changed something
        out.append(f"Picking the step on the test set itself (as the original did) flatters test top-1 by "
                   f"{diff:.4f} on average over picking it on the val split ({held_out.height} of {table.height} "
                   f"variant(s) held out a val split).")
    return out


def _overfitting(runs_per_run: pl.DataFrame) -> list[str]:
    """Groups whose clean train_200 top-1 exceeds test top-1 by OVERFIT_GAP or more at the last
    evaluation (mean over seeds): the generalisation gap, not train_200 alone."""
    if runs_per_run.is_empty() or not {"final_train_200", "final_test"} <= set(runs_per_run.columns):
        return []
    key = "group" if "group" in runs_per_run.columns else "variant"
    gaps = (runs_per_run.filter(pl.col("state") != "failed")
            .with_columns((pl.col("final_train_200") - pl.col("final_test")).alias("gap"))
            .filter(pl.col("gap").is_not_null())
            .group_by(key).agg(pl.col("gap").mean(), pl.col("final_train_200").mean(), pl.col("final_test").mean())
            .sort(["gap", key], descending=[True, False]))
    over = gaps.filter(pl.col("gap") >= OVERFIT_GAP)
    if over.is_empty():
        return []
    names = ", ".join(f"{md_text(r[key])} ({r['final_train_200']:.3f} against {r['final_test']:.3f})"
                      for r in over.iter_rows(named=True))
    text = (f"Overfitting: clean train_200 top-1 exceeds test top-1 by at least {OVERFIT_GAP} for {names} "
            "(last evaluation, mean over seeds).")
    least = gaps.row(gaps.height - 1, named=True)
    if least["gap"] < OVERFIT_GAP:
        text += f" The smallest gap is {md_text(least[key])}'s ({least['gap']:.3f})."
    return [text]


def missing(table: pl.DataFrame, comparison: Comparison) -> list[str]:
    """The comparison's variants with no evaluated run in the per-variant table, said before any
    finding: where its question is about ViTs and none was run, that it cannot be answered here."""
    measured = set() if table.is_empty() else set(table.filter(pl.col("best_test_mean").is_not_null())["variant"])
    absent = [v for v in comparison.variants if v not in measured]
    if not absent:
        return []
    vits = [v for v in comparison.variants if v.startswith("vit")]
    if vits and set(vits) <= set(absent) and "ViT" in comparison.question:
        rest = [v for v in absent if v not in vits]
        return [f"**No ViT runs in this set: the question cannot be answered here** (none of its {len(vits)} ViT "
                f"variants has an evaluated run{'; nor ' + ', '.join(md_text(v) for v in rest) if rest else ''}). "
                "What follows is about the others only."]
    return [f"No evaluated runs of {', '.join(md_text(v) for v in absent)} here: the answer leaves "
            f"{'it' if len(absent) == 1 else 'them'} out."]
