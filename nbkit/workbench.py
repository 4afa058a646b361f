"""The comparison view that the notebooks and the Jupyter panel share: which datasets and
variants to offer, the view itself (charts, tables, findings), and the notebooks' widgets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from . import charts, runlog, summary, tables
from .comparisons import Comparison
from .escape import md_code


def default_runs_dir(cli_args: dict | None = None) -> str:
    """--runs-dir after `--` on the marimo command line, else runlog.runs_dir()'s default."""
    return str(runlog.runs_dir((cli_args or {}).get("runs-dir")))


def datasets(runs: pl.DataFrame, comparison: Comparison) -> list[str]:
    """Datasets with runs, those with most runs of this comparison first."""
    if runs.is_empty():
        return []
    counts = runs.with_columns(pl.col("variant").is_in(comparison.variants).alias("member")).group_by(
        "dataset").agg(pl.col("member").sum(), pl.len()).sort(["member", "len", "dataset"], descending=[True, True, False])
    return counts["dataset"].to_list()


def variant_options(runs: pl.DataFrame, comparison: Comparison, dataset: str | None) -> tuple[list[str], list[str]]:
    """(options, default): the comparison's variants and any others with runs; default = those with runs."""
    present = set(runs.filter(pl.col("dataset") == dataset)["variant"]) if dataset and not runs.is_empty() else set()
    options = list(comparison.variants) + sorted(present - set(comparison.variants))
    default = [v for v in comparison.variants if v in present] or [v for v in options if v in present]
    return options, default


@dataclass
class View:
    metrics: pl.DataFrame
    runs: pl.DataFrame
    charts: dict
    variant_table: pl.DataFrame
    run_table: pl.DataFrame
    train_200_table: pl.DataFrame
    test_table: pl.DataFrame
    findings: list[str]
    has_val: bool


def build_view(metrics: pl.DataFrame, runs: pl.DataFrame, dataset: str, variants: list[str],
               splits=("train_200", "test"), x: str = "step", smoothing: float = 0.0,
               seeds: str = "each run", log_scale: bool = False) -> View:
    """Everything a comparison shows, for one dataset and a set of variants."""
    runs = runs.filter((pl.col("dataset") == dataset) & pl.col("variant").is_in(variants))
    metrics = metrics.filter(pl.col("path").is_in(runs["path"].to_list())) if not metrics.is_empty() else metrics
    shown = charts.main_charts(metrics, runs, variants, splits, x, smoothing, seeds, log_scale)
    per_run = tables.per_run(metrics, runs)
    per_variant = tables.per_variant(metrics, runs, variants)
    train_200, test = tables.original_tables(metrics, runs)
    has_val = not metrics.is_empty() and "val" in set(metrics["split"].unique())
    return View(metrics, runs, shown, per_variant, per_run, train_200, test,
                summary.findings(per_variant, per_run), has_val)


def guidance(comparison: Comparison, runs_dir: str) -> str:
    """What to do when there are no runs yet (markdown)."""
    return (f"**No runs yet in {md_code(runs_dir)}.** Get some in one of three ways:\n\n"
            f"1. Use the launch form below (it starts `nbkit sweep` in the background).\n"
            f"2. From a terminal: {md_code(f'python -m nbkit sweep {comparison.name} --seeds 2 --runs-dir {runs_dir}')} "
            f"(add `--dataset cifar10` or `--dataset PATH/TO/IMAGES.tar.xz`, `--max-iter 500` for a quick look).\n"
            f"3. Point *runs directory* above at a folder that already holds runs.")


# --- widgets (marimo), defined once for the three notebooks -----------------------------------

def intro(comparison: Comparison) -> str:
    return (f"# Comparison: {comparison.name}\n\n**Question.** {comparison.question}\n\n"
            f"**What the original study reported** (CIFAR-100, 5,000 steps, one run each, best step picked on "
            f"the test set): {comparison.original_findings}\n\n"
            "Every number below is computed from the run logs loaded here, with seeds and their spread where "
            "runs have several.")


def view_controls(metrics: pl.DataFrame, runs: pl.DataFrame, comparison: Comparison, dataset: str | None):
    """Variants, splits, x axis, smoothing, log scale and seed display, as one marimo dictionary."""
    import marimo as mo

    from .curves import SEED_MODES, X_AXES

    options, default = variant_options(runs, comparison, dataset)
    present = sorted(set(metrics["split"].unique()) - {"train"}) if not metrics.is_empty() else ["train_200", "test"]
    return mo.ui.dictionary({
        "variants": mo.ui.multiselect(options, value=default, label="variants", full_width=True),
        "splits": mo.ui.multiselect(present, value=[s for s in ("train_200", "val", "test") if s in present],
                                    label="splits"),
        "x": mo.ui.dropdown(list(X_AXES), value="step", label="x axis"),
        "smoothing": mo.ui.slider(0.0, 0.95, step=0.05, value=0.0, label="loss EMA smoothing", show_value=True),
        "log_scale": mo.ui.switch(value=False, label="log-scale loss"),
        "seeds": mo.ui.radio(list(SEED_MODES), value=SEED_MODES[0], label="seeds", inline=True),
    })


def launch_controls(comparison: Comparison, runs: pl.DataFrame, dataset: str | None):
    """The launch form: variants, dataset, steps, seeds, device, runs at once, backend; its
    value is background.launch_sweep's keyword arguments."""
    import marimo as mo

    source = "cifar100"
    if dataset in ("cifar10", "cifar100", "synthetic"):
        source = dataset
    elif dataset and not runs.is_empty():  # an image folder: where its runs read it, preferring a path that exists here
        sources = []
        for path in runs.filter(pl.col("dataset") == dataset)["path"]:
            config = runlog.read_config(path) or {}
            sources.append((config.get("dataset") or {}).get("source"))
        sources = [x for x in dict.fromkeys(sources) if x]
        source = next((x for x in sources if Path(x).exists()), sources[0] if sources else source)
    return mo.ui.dictionary({
        "variants": mo.ui.multiselect(list(comparison.variants), value=list(comparison.variants[:2]), label="variants"),
        "dataset": mo.ui.text(value=source or "cifar100", label="dataset (name or path)", full_width=True),
        "max_iter": mo.ui.number(start=1, stop=100000, value=5000, label="steps"),
        "seeds": mo.ui.number(start=1, stop=20, value=2, label="seeds"),
        "device": mo.ui.dropdown(["auto", "cpu", "cuda"], value="auto", label="device"),
        "jobs": mo.ui.number(start=1, stop=16, value=2, label="runs per GPU"),
        "backend": mo.ui.dropdown(["local", "ray"], value="local", label="backend"),
        "address": mo.ui.text(value="", placeholder="auto or HOST:PORT (empty: a local instance)",
                              label="Ray address", full_width=True),
    })
