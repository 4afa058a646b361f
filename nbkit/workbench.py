"""The comparison view that the notebooks, the Jupyter panel and the reports share: which
datasets and variants to offer, the view itself (charts, tables, findings, protocol), and the
notebooks' widgets.

The widgets are built from a first read of the runs directory and the comparison's fixed
variant list, never from the data that auto-refresh re-reads: a refresh then updates the
charts and tables and leaves every setting as it was."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from . import charts, present, runlog, summary, tables
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
    present_ = set(runs.filter(pl.col("dataset") == dataset)["variant"]) if dataset and not runs.is_empty() else set()
    options = list(comparison.variants) + sorted(present_ - set(comparison.variants))
    default = [v for v in comparison.variants if v in present_] or [v for v in options if v in present_]
    return options, default


@dataclass
class View:
    metrics: pl.DataFrame
    runs: pl.DataFrame
    charts: dict
    variant_table: pl.DataFrame  # full precision (nbkit.tables); the *_rows below are for reading
    run_table: pl.DataFrame
    train_200_table: pl.DataFrame
    test_table: pl.DataFrame
    findings: list[str]
    has_val: bool
    variant_rows: pl.DataFrame = field(default_factory=pl.DataFrame)
    run_rows: pl.DataFrame = field(default_factory=pl.DataFrame)
    original_rows: pl.DataFrame = field(default_factory=pl.DataFrame)
    protocol: str = ""

    @property
    def dashboard(self) -> charts.Spec:
        """Every chart in one, with one legend whose click highlights a variant in all of them."""
        return charts.dashboard(self.charts)


def build_view(metrics: pl.DataFrame, runs: pl.DataFrame, dataset: str, variants: list[str],
               splits=("train_200", "test"), x: str = "step", smoothing: float = 0.0,
               seeds: str = "each run", log_scale: bool = False, scalar: str | None = None,
               order: list[str] | None = None, width: int = charts.WIDTH) -> View:
    """Everything a comparison shows, for one dataset and a set of variants; `order` fixes the
    variants' colours (the comparison's variant list)."""
    runs = runs.filter((pl.col("dataset") == dataset) & pl.col("variant").is_in(variants)) if not runs.is_empty() else runs
    paths = runs["path"].to_list() if not runs.is_empty() else []
    metrics = metrics.filter(pl.col("path").is_in(paths)) if not metrics.is_empty() else metrics
    shown = charts.main_charts(metrics, runs, variants, splits, x, smoothing, seeds, log_scale, scalar,
                               order or variants, width)
    per_run = tables.per_run(metrics, runs)
    per_variant = tables.per_variant(metrics, runs, variants)
    train_200, test = tables.original_tables(metrics, runs)
    has_val = not metrics.is_empty() and "val" in set(metrics["split"].unique())
    cfgs = present.configs(runs)
    return View(metrics, runs, shown, per_variant, per_run, train_200, test,
                summary.findings(per_variant, per_run), has_val, present.variant_table(per_variant),
                present.run_table(per_run, cfgs, runs), present.original_table(train_200, test),
                present.protocol(runs, cfgs))


def guidance(comparison: Comparison, runs_dir: str) -> str:
    """What to do when there are no runs yet (markdown)."""
    return (f"**No runs yet in {md_code(runs_dir)}.** Get some in one of three ways:\n\n"
            f"1. Use the launch form below (it starts `nbkit sweep` in the background).\n"
            f"2. From a terminal: {md_code(f'python -m nbkit sweep {comparison.name} --seeds 2 --runs-dir {runs_dir}')} "
            f"(add `--dataset cifar10` or `--dataset PATH/TO/IMAGES.tar.xz`, `--max-iter 500` for a quick look).\n"
            f"3. Point *runs directory* above at a folder that already holds runs.")


def intro(comparison: Comparison) -> str:
    return (f"# Comparison: {comparison.name}\n\n**Question.** {comparison.question}\n\n"
            f"**What the original study reported** (CIFAR-100, 5,000 steps, one run each, best step picked on "
            f"the test set): {comparison.original_findings}\n\n"
            "Every number below is computed from the run logs loaded here, with seeds and their spread where "
            "runs have several.")


def notes(view: View) -> dict[str, str]:
    """What each section of a comparison says above its chart or table (markdown), for the
    notebook, the Jupyter panel and the reports alike."""
    return {
        "curves": "Hover a step for every run's value there; drag to pan, scroll to zoom, double-click to reset; "
                  "click a legend entry to highlight a variant in every chart. Dashed rules on the loss mark epoch "
                  "ends: the original's open puzzle is the loss dropping at each one.",
        "per variant": "Best test top-1: at the best step chosen on test (its mean step in brackets), as the original "
                       "did" + ("; test top-1 at the step chosen on the val split is the honest pick." if view.has_val
                                else ".") + " ± is the standard deviation across seeds (none with one seed); the gap "
                       "is final train_200 minus final test top-1.",
        "original": "Each run's best train_200 top-1 and best test top-1, each with its step (ties go to the earlier "
                    "step), best test first.",
        "runs": "Each run's state, protocol and the settings that set it apart from the others.",
    }


def launch_defaults(runs: pl.DataFrame, dataset: str | None) -> dict:
    """The launch form's starting values, from the loaded runs of `dataset`: where their data
    came from (preferring a path that exists here), their steps, evaluation interval, seeds and
    device; the original protocol where there are none."""
    out = {"dataset": dataset if dataset in ("cifar10", "cifar100", "synthetic") else "cifar100",
           "max_iter": 5000, "eval_every": 100, "seeds": 2, "device": "auto"}
    chosen = runs.filter(pl.col("dataset") == dataset) if dataset and not runs.is_empty() else pl.DataFrame()
    if chosen.is_empty():
        return out
    cfgs = [c for c in present.configs(chosen).values() if c]
    settings = [c.get("settings") if isinstance(c.get("settings"), dict) else {} for c in cfgs]
    usual = lambda values, default: Counter(values).most_common(1)[0][0] if values else default
    sources = [x for x in dict.fromkeys((c.get("dataset") or {}).get("source") if isinstance(c.get("dataset"), dict)
                                        else None for c in cfgs) if isinstance(x, str) and x]
    if dataset not in ("cifar10", "cifar100", "synthetic") and sources:
        out["dataset"] = next((x for x in sources if Path(x).exists()), sources[0])
    ints = lambda key: [s[key] for s in settings if isinstance(s.get(key), int) and not isinstance(s.get(key), bool)
                        and s[key] >= 1]
    out["max_iter"] = usual(ints("max_iter"), out["max_iter"])
    out["eval_every"] = usual(ints("eval_every"), out["eval_every"])
    seeds = chosen.group_by("variant").len()["len"]
    out["seeds"] = max(1, min(20, int(seeds.max()))) if seeds.len() else out["seeds"]
    out["device"] = "cpu" if usual([c.get("device") for c in cfgs if c.get("device")], "auto") == "cpu" else "auto"
    return out


# --- widgets (marimo), defined once for the three notebooks -----------------------------------

def view_controls(metrics: pl.DataFrame, runs: pl.DataFrame, comparison: Comparison, dataset: str | None):
    """Variants, splits, x axis, smoothing, log scale, seed display and an extra scalar, as one
    marimo dictionary. Build it from a first read of the runs (not the refreshed one): a
    refresh must not reset what the user chose."""
    import marimo as mo

    from .curves import SEED_MODES, X_AXES, scalars

    options, default = variant_options(runs, comparison, dataset)
    if set(default) & set(comparison.variants):  # all the comparison's: runs launched later show up too
        default = list(comparison.variants)
    splits = sorted(set(metrics["split"].unique()) - {"train"}) if not metrics.is_empty() else ["train_200", "test"]
    extra = ["(none)", *scalars(metrics)]
    return mo.ui.dictionary({
        "variants": mo.ui.multiselect(options, value=default, label="variants (those without runs draw nothing)",
                                      full_width=True),
        "splits": mo.ui.multiselect(splits, value=[s for s in ("train_200", "val", "test") if s in splits],
                                    label="top-1 on"),
        "x": mo.ui.dropdown(list(X_AXES), value="step", label="x axis"),
        "smoothing": mo.ui.slider(0.0, 0.99, step=0.01, value=0.0, label="EMA smoothing", show_value=True,
                                  debounce=True),
        "log_scale": mo.ui.switch(value=False, label="log-scale loss"),
        "seeds": mo.ui.radio(list(SEED_MODES), value=SEED_MODES[0], label="seeds", inline=True),
        "scalar": mo.ui.dropdown(extra, value=default_scalar(metrics) or "(none)",
                                 label="also plot", searchable=True),
    })


def default_scalar(metrics: pl.DataFrame) -> str | None:
    """The extra scalar shown unless another is picked: the gradient norm before clipping, where
    runs logged it (the original logged it every step)."""
    from .curves import scalars

    return "train grad_norm" if "train grad_norm" in scalars(metrics) else None


def launch_controls(comparison: Comparison, runs: pl.DataFrame, dataset: str | None):
    """The launch form: variants, dataset, steps, evaluation interval, seeds, device, runs at
    once, backend; its value is background.launch_sweep's keyword arguments. Its defaults come
    from the loaded runs (launch_defaults)."""
    import marimo as mo

    d = launch_defaults(runs, dataset)
    return mo.ui.dictionary({
        "variants": mo.ui.multiselect(list(comparison.variants), value=list(comparison.variants[:2]), label="variants"),
        "dataset": mo.ui.text(value=d["dataset"], label="dataset (name or path)", full_width=True),
        "max_iter": mo.ui.number(start=1, stop=100000, value=d["max_iter"], label="steps"),
        "eval_every": mo.ui.number(start=1, stop=100000, value=d["eval_every"], label="evaluate every"),
        "seeds": mo.ui.number(start=1, stop=20, value=d["seeds"], label="seeds"),
        "device": mo.ui.dropdown(["auto", "cpu", "cuda"], value=d["device"], label="device"),
        "jobs": mo.ui.number(start=1, stop=16, value=2, label="runs per GPU"),
        "backend": mo.ui.dropdown(["local", "ray"], value="local", label="backend"),
        "address": mo.ui.text(value="", placeholder="auto or HOST:PORT (empty: a local instance)",
                              label="Ray address", full_width=True),
    })


def sweep_report(active: list[dict], launched: dict | None, md_code) -> list:
    """The sweeps on this runs directory (marimo elements): how many are running and, for the
    sweep launched from this page, its state, its runs and, if it failed, its one-line error."""
    import marimo as mo

    from .background import sweep_state

    out = [mo.md(f"**{len(active)} sweep(s) launched from a notebook are running on this runs directory.**")]
    if launched is not None:
        state = sweep_state(launched)
        out.append(mo.md(f"Launched sweep (pid {launched['pid']}, started {launched['started']}): "
                         f"**{state['state']}**; its log: {md_code(launched['log'])}"))
        if state["error"]:
            out.append(mo.callout(mo.md(f"The sweep failed: {md_code(state['error'])}"), kind="danger"))
        if state["runs"]:
            out.append(mo.ui.table(pl.DataFrame(state["runs"]), selection=None, show_data_types=False,
                                   label="its runs"))
    return out
