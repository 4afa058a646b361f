"""The comparison view that the notebooks, the Jupyter panel and the reports share: what a runs
directory offers (its catalogue), the view itself (charts, tables, findings, the answer, the
protocol), and the notebooks' widgets.

The widgets are rebuilt only when the catalogue changes (a new dataset, variant, split or
scalar appears), and then from what the user chose before (`Choices`): a refresh that only
brings new rows redraws the charts and tables and leaves every control as it was."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from nbkit.analysis.curves import scalars
from nbkit.design.comparisons import Comparison
from nbkit.rundir import runlog
from nbkit.view import charts, present, summary
from nbkit.view.comparison_view import View, build_view, registry_order
from nbkit.view.escape import md_code, md_text


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
    """(options, default): the comparison's variants and any others with runs (in the registry's
    order, then by name); default = those with runs."""
    present_ = set(runs.filter(pl.col("dataset") == dataset)["variant"]) if dataset and not runs.is_empty() else set()
    registry = {v: i for i, v in enumerate(registry_order())}
    others = sorted(present_ - set(comparison.variants), key=lambda v: (registry.get(v, len(registry)), v))
    options = list(comparison.variants) + others
    default = [v for v in comparison.variants if v in present_] or [v for v in options if v in present_]
    return options, default


@dataclass(frozen=True)
class Catalogue:
    """What a runs directory offers the controls: its datasets (most relevant first), per
    dataset the variants to pick from, and the splits and scalars the logs hold."""
    datasets: tuple[str, ...] = ()
    variants: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (dataset, options)
    splits: tuple[str, ...] = ()
    scalars: tuple[str, ...] = ()

    def options(self, dataset: str | None) -> list[str]:
        return list(dict(self.variants).get(dataset, ()))


def catalogue(metrics: pl.DataFrame, runs: pl.DataFrame, comparison: Comparison) -> Catalogue:
    names = tuple(datasets(runs, comparison))
    splits = tuple(sorted(set(metrics["split"].unique()) - {"train"})) if not metrics.is_empty() else ()
    return Catalogue(names, tuple((d, tuple(variant_options(runs, comparison, d)[0])) for d in names), splits,
                     tuple(scalars(metrics)))


@dataclass
class Choices:
    """What the user chose in the controls, kept while they are rebuilt: a choice stays as long
    as it is still offered; variants the comparison gains later join the selection."""
    dataset: str | None = None
    settings: dict = field(default_factory=dict)  # control name -> value
    offered: set = field(default_factory=set)  # variants offered when the user last chose

    def remember(self, dataset: str | None, values: dict, offered: list[str]) -> None:
        self.dataset, self.settings, self.offered = dataset, dict(values), set(offered)

    def variants(self, options: list[str], comparison: Comparison) -> list[str]:
        members = set(comparison.variants) or set(options)  # "all runs" has no fixed members: every one
        default = [v for v in options if v in members] or options
        if "variants" not in self.settings:
            return default
        new = [v for v in options if v not in self.offered and v in members]
        return [v for v in options if v in self.settings["variants"] or v in new]


def guidance(comparison: Comparison, runs_dir: str) -> str:
    """What to do when there are no runs yet (markdown)."""
    return (f"**No runs yet in {md_code(runs_dir)}.** Get some in one of three ways:\n\n"
            f"1. Use the launch form at the bottom of this page (it starts `nbkit sweep` in the background).\n"
            f"2. From a terminal: {md_code(f'python -m nbkit sweep {comparison.name} --seeds 2 --runs-dir {runs_dir}')} "
            f"(add `--dataset cifar10` or `--dataset PATH/TO/IMAGES.tar.xz`, `--max-iter 500` for a quick look).\n"
            f"3. Point *runs directory* below at a folder that already holds runs.\n\n"
            "New runs show up on the next refresh (turn on auto-refresh).")


def intro(comparison: Comparison) -> str:
    return f"# Comparison: {md_text(comparison.name)}\n\n**Question.** {md_text(comparison.question)}"


def original(comparison: Comparison) -> str:
    """What the comparison is measured against: the original study's report, or what the user
    expected (a comparisons file's), or nothing (every run of a runs directory)."""
    if comparison.source is None:
        return (f"**What the original study reported** (CIFAR-100, 5,000 steps, one run each, best step picked on "
                f"the test set): {md_text(comparison.original_findings)}")
    if comparison.expected:
        return f"**What you expected** ({md_code(Path(str(comparison.source)).name)}): {md_text(comparison.expected)}"
    return ""


ALL_RUNS = "all runs"


def all_runs() -> Comparison:
    """Every run of a runs directory, by variant, whether or not a comparison lists it."""
    return Comparison(ALL_RUNS, "What do the runs in this runs directory show, variant by variant?", (),
                      "", baseline="resnet18", source="(the runs directory)")


def has_claims(comparison: Comparison) -> bool:
    """Whether the original's scorecard applies: nbkit's own comparisons only."""
    return comparison.source is None


def answer(view: View, verdicts: dict[str, int] | None, dataset: str, first: list[str] = ()) -> str:
    """The short answer at the top of a comparison (markdown): what the comparison itself
    concludes (first: answer_lines), the findings computed from the runs shown, and the
    scorecard's verdicts in one line."""
    runs = view.runs.height
    head = f"**The answer from these runs** ({md_text(dataset)}, {runs} run{'s' if runs != 1 else ''}):"
    lines = [f"- {f}" for f in [*first, *view.findings]] or ["- No run has been evaluated yet."]
    if verdicts:
        counts = ", ".join(f"{k} {v}" for k, v in verdicts.items())
        lines.append(f"- The original's claims for this comparison, checked on these runs: {counts} "
                     "(the replication scorecard below says which and why).")
    return head + "\n\n" + "\n".join(lines)


CURVES_BASE = ("A line per run (seeds by dash), coloured by variant; runs of a variant at other settings are named "
               "apart. Hover a chart for every run's value at that point, best first (lowest loss, highest top-1); "
               "drag to pan, scroll to zoom, double-click to reset; click a legend entry to highlight it in every "
               "chart. nbkit's own architectures (resnet*, toy-dilated, the ViTs; -tnc aside) keep the original's "
               "1000-way head whatever the dataset, so their loss starts near ln 1000 = 6.9 and reads high beside a "
               "fair top-1: the head's unused logits, not a bug. Dashed rules on the loss, where its title says so, "
               "mark epoch ends")
CURVES_NOTE = CURVES_BASE + ": the original's open puzzle is the loss dropping at each one."


def curves_note(comparison: Comparison | None = None) -> str:
    """What the Curves section says: the original's puzzle only on nbkit's own comparisons."""
    return CURVES_NOTE if comparison is None or has_claims(comparison) else CURVES_BASE + "."


def notes(view: View, sortable: bool = True) -> dict[str, str]:
    """What each section of a comparison says above its chart or table (markdown), for the
    notebook, the Jupyter panel and the reports alike; sortable: whether its tables sort (the
    notebook's do; a report's and the panel's HTML tables do not)."""
    return {
        "per variant": "A row per variant (and per set of settings where a variant has runs at several). Best test "
                       "top-1: at the best step chosen on test (its mean step beside it), as the original did"
                       + ("; test top-1 at the step chosen on the val split is the honest pick." if view.has_val
                          else ".") + " ± is the standard deviation across seeds (none with one seed); two runs of "
                       "one seed count once. The gap is final train_200 minus final test top-1." + (" Columns sort." if sortable else ""),
        "original": "Each run's best train_200 top-1 and best test top-1, each with its step (ties go to the earlier "
                    "step), best test first.",
        "runs": "Each run's state, progress, protocol and the settings that set it apart from the others.",
    }


# --- the live notebook's state ------------------------------------------------------------------

def study_of(path: str | None):
    """(study, error): nbkit's variants and comparisons plus a comparisons file's (nbkit.design.comparisons_file); a
    file that cannot be used leaves nbkit's alone and says why in one line."""
    from nbkit.design.comparisons_file import builtin, load_study

    try:
        return load_study((path or "").strip() or None), None
    except (ValueError, OSError) as e:
        return builtin(), str(e)


def comparison_names(study) -> list[str]:
    """What the notebook's comparison picker offers: nbkit's, a file's, and every run."""
    return [*study.comparisons, ALL_RUNS]


def comparison_for(cli_args: dict, notebook: str | None, study=None) -> str:
    """The comparison a notebook opens on: `-- --comparison NAME`, else the one its file is named
    after (notebooks/resnets.py), else models."""
    from nbkit.design.comparisons_file import builtin

    names = comparison_names(study or builtin())
    stem = Path(notebook).stem if notebook else None
    asked = cli_args.get("comparison") or (stem if stem in names else "models")
    if asked not in names:
        from nbkit.errors import UnknownVariantError, closest

        raise UnknownVariantError(f"unknown comparison '{asked}'{closest(asked, names)} expected one of {', '.join(names)}")
    return asked


def comparison_of(name: str, study) -> Comparison:
    from nbkit.design.comparisons import get_comparison

    return all_runs() if name == ALL_RUNS else get_comparison(name, study)


@dataclass(frozen=True, eq=False)
class Snapshot:
    """A runs directory as one poll left it: its frames, configs, catalogue and colours."""
    root: Path | None
    version: int
    metrics: pl.DataFrame
    runs: pl.DataFrame
    configs: dict
    catalogue: Catalogue
    palette: dict
    comparison: Comparison

    @property
    def dataset(self) -> str | None:
        return self.catalogue.datasets[0] if self.catalogue.datasets else None

    @property
    def default_scalar(self) -> str | None:
        return default_scalar(self.metrics)


def snapshot(store, comparison: Comparison) -> Snapshot:
    """The store's frames now (nbkit.rundir.reader.RunStore), with what the controls offer and the colours."""
    metrics, runs = store.frames()
    return Snapshot(store.root, store.version, metrics, runs, store.configs(), catalogue(metrics, runs, comparison),
                    palette(runs), comparison)


def palette(runs: pl.DataFrame) -> dict[str, str]:
    """charts.colours of a runs frame: worked out again only when its variants or groups change (read only)."""
    if runs.is_empty() or "variant" not in runs.columns:
        return {}
    return _palette(tuple(runs.select("variant", "group" if "group" in runs.columns else "variant").iter_rows()))


@functools.lru_cache(maxsize=8)
def _palette(pairs: tuple) -> dict[str, str]:
    return charts.colours(pl.DataFrame(pairs, schema=["variant", "group"], orient="row"), registry_order())


def view_of(snap: Snapshot, dataset: str | None, controls: dict) -> View | None:
    """The view for the notebook's controls, or None while there is nothing to show."""
    if snap.runs.is_empty() or snap.metrics.is_empty() or not controls.get("variants") or dataset not in snap.catalogue.datasets:
        return None
    scalar = controls.get("scalar")
    return build_view(snap.metrics, snap.runs, dataset, controls["variants"], splits=controls["splits"],
                      x=controls["x"], smoothing=controls["smoothing"], seeds=controls["seeds"],
                      log_scale=controls["log_scale"], scalar=None if scalar in (None, "(none)") else scalar,
                      palette=snap.palette, cfgs=snap.configs, baseline=snap.comparison.baseline,
                      own=not has_claims(snap.comparison))


def chart_key(dataset: str | None, controls: dict) -> str:
    """What a chart shows apart from its data and smoothing: while it stays, a redraw keeps zoom and pan."""
    return repr((dataset, *(controls.get(k) for k in ("variants", "splits", "x", "seeds", "log_scale", "scalar"))))


def verdicts(snap: Snapshot, comparison: Comparison, dataset: str | None) -> dict[str, int]:
    """How many of the original's claims for this comparison hold, do not, and so on, on these runs."""
    if not has_claims(comparison):
        return {}
    from nbkit.analysis import scorecard as claims
    from nbkit.analysis.measures import measured

    metrics, runs = claims.of_dataset(snap.metrics, snap.runs, dataset)
    if metrics.is_empty() or runs.is_empty():
        return {}
    from nbkit.view.scorecard import verdict_counts

    return verdict_counts(claims.scorecard(measured(metrics, runs), comparison.name))


Section = present.Section


def sections(view: View, comparison: Comparison | None = None, dataset: str | None = None) -> list[Section]:
    """The sections a view adds after its scorecard: the epochs experiment's, for its comparison;
    each layer's learned temperature where runs logged it; the tuning section where runs are
    `nbkit tune` trials (nbkit.view.tuning_view)."""
    out = []
    if comparison is not None and comparison.name == "epochs" and comparison.source is None and dataset:
        from nbkit.view import epochs_view

        out += epochs_view.sections(view.metrics, view.runs, dataset, list(comparison.variants), view.palette)
    layers = charts.layer_temperature_chart(view.metrics, runs=view.runs, palette=view.palette)
    if layers is not None:
        out.append(Section("Learned temperature per layer", "Each layer's tau at the run's last logged step.", layers))
    from nbkit.view import tuning_view

    return out + tuning_view.sections(view)


def answer_lines(view: View, comparison: Comparison) -> list[str]:
    """What a comparison adds to the answer at the top: what its runs leave out, the epochs
    experiment's verdict, and whether the conclusion holds once each variant is tuned, where its
    runs include tuning trials."""
    from nbkit.view import tuning_view

    out = summary.missing(view.variant_table, comparison)
    if comparison.name == "epochs" and comparison.source is None:
        from nbkit.analysis import epochs_answer

        out += epochs_answer.findings(view.metrics, view.runs)[-1:]
    tuned = tuning_view.answer_line(view)
    return out + ([tuned] if tuned else [])


def default_scalar(metrics: pl.DataFrame) -> str | None:
    """The extra scalar shown unless another is picked: the gradient norm before clipping, where
    runs logged it (the original logged it every step)."""
    return "train grad_norm" if "train grad_norm" in scalars(metrics) else None


