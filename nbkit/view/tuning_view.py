"""The tuning section of a comparison (notebook, Jupyter panel and reports alike), wherever its runs
include `nbkit tune` trials: the budget curves (Dodge et al.'s expected best val top-1 after n
trials, with a bootstrap band), the ranking at 1, 5 and all trials, the chosen trial per variant
with its test top-1 and a command to launch its settings with more seeds, the trials in parallel
coordinates, and each setting's importance. The line for the answer at the top says whether the
comparison's conclusion holds once each variant is tuned."""

from __future__ import annotations

import math

import altair as alt
import polars as pl

from nbkit.analysis import tuning
from nbkit.view import present
from nbkit.view.charts import HEIGHT, WIDTH, Spec
from nbkit.view.escape import md_text

BUDGET_TEXT = ("Per variant, the expected best validation top-1 after n trials of its search (Dodge et al., EMNLP "
               "2019, \"Show Your Work\"): the mean of the best of n trials drawn from those run, for n = 1 to the "
               "trials run; the band holds 90% of bootstrap resamples of the trials. At n = 1 it is the mean trial "
               "(an untuned guess from the space); at the end, the best found. Curves that cross mean the "
               "comparison has no winner without a budget. Pruned, failed and unfinished trials are left out.")
TRIALS_TEXT = ("Every finished trial: a line through its settings (each axis scaled to its range, log-uniform "
               "settings on a log scale) to its val top-1, coloured by val top-1. Drag across the strip above to "
               "keep only the trials in that range of val top-1.")
IMPORTANCE_TEXT = ("How much of the spread of val top-1 across a variant's finished trials each setting explains "
                   "(the share of variance between its values, or between four quantile bins of a number), "
                   "normalised to 1 per variant: a simple stand-in for Optuna's fANOVA importance.")


def trial_rows(view) -> pl.DataFrame:
    return tuning.trials(view.metrics, view.runs, present.configs(view.runs))


def _untuned_leader(view, trials: pl.DataFrame) -> tuple[str, str] | None:
    """The variant the comparison's own runs (not trials) put first, and by what."""
    rows = view.run_table
    if rows.is_empty():
        return None
    rows = rows.filter(~pl.col("path").is_in(trials["path"].to_list()))
    by = "test_at_best_val" if "test_at_best_val" in rows.columns and rows["test_at_best_val"].drop_nulls().len() \
        else "best_test"
    if rows.is_empty() or by not in rows.columns or rows[by].drop_nulls().is_empty():
        return None
    mean = rows.group_by("variant").agg(pl.col(by).mean()).drop_nulls().sort([by, "variant"], descending=[True, False])
    if mean.height < 2:
        return None
    return mean["variant"][0], "test top-1 at the best val step" if by == "test_at_best_val" else "best test top-1"


def answer_line(view) -> str | None:
    """Whether the conclusion holds once each variant is tuned: the leader at every budget, or
    where the order flips, against the leader of the comparison's untuned runs."""
    trials = trial_rows(view)
    if trials.is_empty():
        return None
    curves = tuning.budget_curves(trials)
    verdict = tuning.budget_verdict(curves)
    if not verdict:
        return None
    common = tuning.budgets(curves)[-1]
    line = f"Tuned ({common} trial{'s' if common != 1 else ''} or more each, chosen on val): {md_text(verdict)}."
    if tuning.within_noise(curves, common):
        first, second = tuning.ranking(curves, common)[:2]
        line += (f" At {common} trials {md_text(first)} and {md_text(second)} lie within each other's bootstrap "
                 "bands: a lead within the trials' noise.")
    untuned = _untuned_leader(view, trials)
    if untuned:
        first, by = untuned
        tuned_first = tuning.ranking(curves, common)[0]
        holds = "holds" if tuned_first == first and verdict.endswith(f"every budget (1 to {common} trials)") else (
            "holds at the full budget only" if tuned_first == first else "does not hold")
        line += (f" Untuned (the comparison's own runs), {md_text(first)} leads on {by}: the conclusion {holds} "
                 "once each variant is tuned.")
    return line


def sections(view) -> list:
    """The tuning sections, or none where no run of the view is a trial."""
    from nbkit.view.present import Section

    trials = trial_rows(view)
    if trials.is_empty():
        return []
    curves = tuning.budget_curves(trials)
    out = []
    if not curves.is_empty():
        out.append(Section("Tuning: expected best after n trials", BUDGET_TEXT, budget_chart(curves)))
        verdict = tuning.budget_verdict(curves)
        out.append(Section("Tuning: the ranking by budget", (md_text(verdict[0].upper() + verdict[1:]) + "."
                                                             if verdict else "One variant has trials."),
                           table=_rankings(curves)))
    best = tuning.chosen(trials)
    if not best.is_empty():
        out.append(Section("Tuning: the chosen trial per variant",
                           "Each variant's trial with the best val top-1 (test top-1 read at that trial's best val step, "
                           "never used to choose), and the command that trains its settings with more seeds: paste it, "
                           "or put the settings into the launch form's *settings* field.", table=_chosen(best, view)))
    parallel = parallel_chart(trials)
    if parallel is not None:
        out.append(Section("Tuning: the trials", TRIALS_TEXT, parallel))
    imp = tuning.importance(trials)
    if not imp.is_empty():
        table = imp.with_columns(pl.col("importance").round(2)).pivot(on="variant", index="setting", values="importance")
        out.append(Section("Tuning: each setting's importance", IMPORTANCE_TEXT,
                           table=table.with_columns(pl.exclude("setting").cast(pl.String).fill_null("—"))))
    states = trials.group_by("variant", "state").len().sort("variant", "state")
    counts = "; ".join(f"{v}: " + ", ".join(f"{n} {s}" for _, s, n in states.filter(pl.col("variant") == v).iter_rows())
                       for v in dict.fromkeys(states["variant"].to_list()))
    out[0] = Section(out[0].title, out[0].text + f" Trials: {md_text(counts)}.", out[0].chart, out[0].table) if out else None
    return [s for s in out if s is not None]


def figures(view) -> dict:
    """The tuning charts to save as pictures (report --figures): budget curves and trials."""
    trials = trial_rows(view)
    curves = tuning.budget_curves(trials) if not trials.is_empty() else pl.DataFrame()
    out = {"tuning-budget": budget_chart(curves)} if not curves.is_empty() else {}
    parallel = parallel_chart(trials) if not trials.is_empty() else None
    return out | ({"tuning-trials": parallel} if parallel is not None else {})


def presets(metrics: pl.DataFrame, runs: pl.DataFrame, configs: dict, seeds: int = 3) -> dict[str, dict]:
    """The launch form's presets, one per variant with trials: its chosen trial's settings
    ({label: {variants, settings}}), for "launch with these settings and N seeds"."""
    trials = tuning.trials(metrics, runs, configs) if not runs.is_empty() else pl.DataFrame()
    best = tuning.chosen(trials) if not trials.is_empty() else pl.DataFrame()
    return {f"{r['variant']}: trial {r['trial']} (val top-1 {r['val_top1']:.4f})":
            {"variants": [r["variant"]], "settings": " ".join(f"{k}={_value(v)}" for k, v in r["values"].items())}
            for r in (best.iter_rows(named=True) if not best.is_empty() else ())}


def _rankings(curves: pl.DataFrame) -> pl.DataFrame:
    t = tuning.rankings_table(curves)
    return t.with_columns(pl.col("trials").cast(pl.String),
                          pl.when(pl.col("same as at 1 trial")).then(pl.lit("yes")).otherwise(pl.lit("no"))
                          .alias("same as at 1 trial"))


def _value(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else ("true" if v is True else "false" if v is False else str(v))


def _chosen(best: pl.DataFrame, view) -> pl.DataFrame:
    rows = []
    for r in best.iter_rows(named=True):
        sets = " ".join(f"{k}={_value(v)}" for k, v in r["values"].items())
        rows.append({"variant": r["variant"], "trials": f"{r['trials']} finished" + (
            f", {r['pruned']} pruned" if r["pruned"] else "") + (f", {r['failed']} failed" if r["failed"] else ""),
                     "chosen": f"trial {r['trial']}", "val top-1": f"{r['val_top1']:.4f}",
                     "test top-1": "—" if r["test_top1"] is None or math.isnan(r["test_top1"]) else f"{r['test_top1']:.4f}",
                     "settings": sets, "launch with 3 seeds": launch_command(r["variant"], r["values"], r["path"], view)})
    return pl.DataFrame(rows)


def launch_command(variant: str, values: dict, path: str, view) -> str:
    """`nbkit sweep` of the variant with the chosen values, on the trial's dataset, 3 seeds."""
    config = present.configs(view.runs.filter(pl.col("path") == path)).get(path) or {}
    s = config.get("settings") if isinstance(config.get("settings"), dict) else {}
    keep = {k: s.get(k) for k in ("dataset", "max_iter", "eval_every", "batch_size", "val_size") if s.get(k) is not None}
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in keep.items())
    sets = " ".join(f"{k}={_value(v)}" for k, v in values.items())
    return f"nbkit sweep {variant} --seeds 3 {flags} --set {sets}".replace("  ", " ")


def budget_chart(curves: pl.DataFrame) -> Spec:
    df = curves.with_columns(pl.col(pl.Float64).round_sig_figs(6)).to_dicts()
    base = alt.Chart(alt.Data(values=df)).encode(
        alt.X("n:Q", title="trials (n)", axis=alt.Axis(tickMinStep=1)), alt.Color("variant:N", title="variant"))
    band = base.mark_area(opacity=0.18).encode(alt.Y("low:Q", title="expected best val top-1", scale=alt.Scale(zero=False)),
                                               alt.Y2("high:Q"))
    tooltip = ["variant:N", "n:Q", alt.Tooltip("expected:Q", format=".4f"), alt.Tooltip("low:Q", format=".4f"),
               alt.Tooltip("high:Q", format=".4f")]
    line = base.mark_line(point=True).encode(alt.Y("expected:Q"), tooltip=tooltip)
    return Spec(alt.layer(band, line).properties(title="Expected best val top-1 after n trials (band: 90% bootstrap)",
                                                 width=WIDTH // 2, height=HEIGHT).to_dict())


def parallel_chart(trials: pl.DataFrame) -> Spec | None:
    done = trials.filter(pl.col("state") == "complete")
    if done.is_empty():
        return None
    logs = {n for ls in done["log"].to_list() for n in (ls or [])}
    raw = [(r["variant"], r["trial"], r["val_top1"], r["values"]) for r in done.iter_rows(named=True)]
    names = list(dict.fromkeys(k for *_, values in raw for k in values))
    ranges, kinds = {}, {}
    for name in names:  # a setting of words: its values evenly spaced, in order
        words = sorted({str(values.get(name)) for *_, values in raw if _number(values.get(name), False) is None})
        kinds[name] = {w: i for i, w in enumerate(words)}
    for name in names:
        xs = [_position(values.get(name), name in logs, kinds[name]) for *_, values in raw]
        xs = [x for x in xs if x is not None]
        ranges[name] = (min(xs), max(xs)) if xs else (0.0, 1.0)
    rows = []
    for variant, trial, val, values in raw:
        who = {"variant": variant, "trial": f"{variant} trial {trial}", "val_top1": round(val, 6)}
        for i, name in enumerate(names):
            x = _position(values.get(name), name in logs, kinds[name])
            lo, hi = ranges[name]
            rows.append({**who, "axis": name, "order": i, "value": _value(values.get(name)),
                         "position": 0.5 if x is None or hi == lo else (x - lo) / (hi - lo)})
        rows.append({**who, "axis": "val top-1", "order": len(names), "value": f"{val:.4f}", "position": None})
    lo, hi = min(v for _, _, v, _ in raw), max(v for _, _, v, _ in raw)
    for r in rows:
        if r["axis"] == "val top-1":
            r["position"] = 0.5 if hi == lo else (r["val_top1"] - lo) / (hi - lo)
    brush = alt.selection_interval(encodings=["x"], name="val_brush")
    data = alt.Data(values=rows)
    colour = alt.Color("val_top1:Q", title="val top-1", scale=alt.Scale(scheme="viridis"))
    strip = alt.Chart(data).transform_filter(alt.datum.axis == "val top-1").mark_tick(thickness=2, size=14).encode(
        alt.X("val_top1:Q", title="val top-1 (drag to filter)", scale=alt.Scale(zero=False)),
        alt.Y("variant:N", title=None), colour, tooltip=["trial:N", alt.Tooltip("val_top1:Q", format=".4f")]
    ).add_params(brush).properties(width=WIDTH, height=22 * max(1, len({r[0] for r in raw})))
    lines = alt.Chart(data).transform_filter(brush).mark_line(opacity=0.7).encode(
        alt.X("axis:N", title=None, sort=[*names, "val top-1"], axis=alt.Axis(labelAngle=0, labelLimit=200)),
        alt.Y("position:Q", title="position in the range searched", scale=alt.Scale(domain=[0, 1]),
              axis=alt.Axis(format=".0%")),
        colour, alt.Detail("trial:N"), alt.StrokeDash("variant:N", title="variant"), alt.Order("order:Q"),
        tooltip=["trial:N", "axis:N", "value:N", alt.Tooltip("val_top1:Q", format=".4f")])
    return Spec(alt.vconcat(strip, lines.properties(width=WIDTH, height=HEIGHT)).properties(
        title="The trials: settings and val top-1").to_dict())


def _position(v, log: bool, words: dict):
    n = _number(v, log)
    return n if n is not None else float(words.get(str(v), 0))


def _number(v, log: bool):
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return math.log10(v) if log and v > 0 else float(v)
    return None



def tuning_markdown(runs_dir, dataset: str | None = None, variants=None) -> str:
    """`nbkit summary --tuning`: per variant the expected best val top-1 after 1, 5 and all trials
    (with the bootstrap band), the chosen trial with its test top-1 and settings; the ranking by
    budget; and the verdict, as markdown."""
    from nbkit.analysis import tables
    from nbkit.rundir.reader import read_runs
    from nbkit.view.summary import markdown_table, of_variants

    metrics, runs = of_variants(read_runs(runs_dir, dataset), variants)
    trials = tuning.trials(metrics, runs, present.configs(runs)) if not runs.is_empty() else pl.DataFrame()
    if trials.is_empty():
        return f"No tuning trials under {runs_dir} (make some with nbkit tune)."
    curves, best = tuning.budget_curves(trials), tuning.chosen(trials)
    shown = tuning.budgets(curves)
    band = lambda r: f"{r['expected']:.4f} ({r['low']:.4f}–{r['high']:.4f})"
    rows = []
    for r in best.iter_rows(named=True):
        at = {n: curves.filter((pl.col("variant") == r["variant"]) & (pl.col("n") == n)).row(0, named=True) for n in shown}
        rows.append({"variant": r["variant"], "trials": f"{r['trials']}" + (f" (+{r['pruned']} pruned)" if r["pruned"] else ""),
                     **{f"expected best after {n}": band(at[n]) for n in shown},
                     "chosen": f"trial {r['trial']}", "val top-1": r["val_top1"], "test top-1": r["test_top1"],
                     "settings": " ".join(f"{k}={_value(v)}" for k, v in r["values"].items())})
    table = pl.DataFrame(rows)
    columns = ["variant", "trials", *(f"expected best after {n}" for n in shown), "chosen", "val top-1", "test top-1",
               "settings"]
    parts = [markdown_table(table, columns, "lr" + "r" * len(shown) + "lrrl"),
             markdown_table(_rankings(curves), ["trials", "ranking", "same as at 1 trial"], "rll")]

    class _View:  # what answer_line reads
        pass
    v = _View()
    v.metrics, v.runs, v.run_table = metrics, runs, tables.per_run(metrics, runs)
    line = answer_line(v)
    return "\n\n".join(parts + ([line] if line else []))
