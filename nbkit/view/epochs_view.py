"""The epochs comparison as sections a notebook or report shows in order: each a title, markdown
text, and a chart (nbkit.view.charts.Spec) or a table. Pure functions of the run logs; the numbers are
nbkit.analysis.epochs' and nbkit.analysis.drops'."""

from __future__ import annotations

import altair as alt
import polars as pl

from nbkit.analysis import drops, epochs, epochs_answer
from nbkit.design.comparisons import get_comparison
from nbkit.rundir.schema import SEEN_GROUPS
from nbkit.view import charts
from nbkit.view.escape import md_text
from nbkit.view.present import Section

PANEL_WIDTH, PANEL_HEIGHT, COLUMNS = 250, 150, 3
GROUP_COLOURS = ("#d62728", "#ff7f0e", "#2ca02c", "#1f77b4")  # seen 0, 1, 2, 3+ times before
SPLIT_NAMES = {"train": "training batches", epochs.HELD_OUT: "held-out images (never trained on)"}


def sections(metrics: pl.DataFrame, runs: pl.DataFrame, dataset: str, variants: list[str] | None = None,
             palette: dict[str, str] | None = None) -> list[Section]:
    """Everything the epochs comparison shows for one dataset's runs of `variants` (default: the
    comparison's), in order: the experiment, the loss with epoch ends marked, the loss by seen
    count, every boundary overlaid, the held-out images at the same steps, the drop table, findings.
    palette: the page's colours (charts.colours of the whole runs directory)."""
    order = list(variants or get_comparison("epochs").variants)
    metrics, runs = _of(metrics, runs, dataset, order)
    if metrics.is_empty() or runs.is_empty():
        return [experiment(), Section("No runs yet", f"No runs of the epochs comparison on {md_text(dataset)} yet: "
                                      "`bash benchmarks/epochs_runs.sh` makes the CPU run set.")]
    shown = [v for v in order if v in set(runs["variant"])]
    palette = palette or charts.colours(runs, order)
    out = [experiment(), Section("Training loss, epoch ends marked", LOSS_TEXT, charts.loss_chart(
        metrics, runs, shown, x="epoch", seeds="mean and min-max band", palette=palette))]
    if (by_seen := seen_chart(metrics, order)) is not None:
        out.append(Section("Loss by how often the examples were trained on", SEEN_TEXT, by_seen))
    train = epochs.without_switch(epochs.aligned(metrics, runs), runs, "boundary")
    if not train.is_empty():
        out.append(Section("Every epoch end overlaid", ALIGNED_TEXT, aligned_chart(train, order, palette)))
    held = epochs.without_switch(epochs.aligned(metrics, runs, epochs.HELD_OUT), runs, "boundary")
    if not held.is_empty():
        out.append(Section("Held-out images at the same steps", HELD_TEXT, held_out_chart(train, held, order)))
    if (switched := switch_chart(metrics, runs)) is not None:
        out.append(Section("The disjoint half: a switch to never-seen images", SWITCH_TEXT, switched))
    out.append(Section("The drop at epoch ends", TABLE_TEXT, table=drop_table(metrics, runs, order)))
    out.append(Section("Findings", "\n\n".join(f"- {line}" for line in epochs_answer.findings(metrics, runs))))
    return out


def _of(metrics, runs, dataset, order):
    """One dataset's runs of the variants in order, each variant's main group only (most seeds, then
    most steps): a variant's runs at other settings (another train_size, say) are another experiment."""
    if runs.is_empty() or metrics.is_empty():
        return metrics, runs
    runs = runs.filter((pl.col("dataset") == dataset) & pl.col("variant").is_in(order))
    if "group" in runs.columns and not runs.is_empty():
        main = (runs.group_by("variant", "group")
                .agg(pl.col("seed").n_unique().alias("seeds"), pl.col("last_step").max())
                .sort(["variant", "seeds", "last_step", "group"], descending=[False, True, True, False])
                .group_by("variant", maintain_order=True).first()["group"])
        runs = runs.filter(pl.col("group").is_in(main.implode()))
    return metrics.filter(pl.col("path").is_in(runs["path"].implode())), runs


def experiment() -> Section:
    return Section("The experiment", EXPERIMENT_TEXT)


EXPERIMENT_TEXT = """The original asked why the ResNet training loss drops at every epoch end, and whether it is
memorisation. Each variant here changes one thing around that drop:

- **resnet18**: the original's data order, a fresh permutation each epoch;
- **resnet18-fixed**: one permutation, the same every epoch: each example comes back exactly one epoch after its
  last visit;
- **resnet18-replacement**: every batch drawn with replacement: no epoch boundary in the data at all, and examples
  trained on before meet examples never trained on in the same batch;
- **resnet18-disjoint**: one half of the training set for 6 epochs, then the other half, never trained on: if the
  drop is memorisation the loss jumps up to the held-out level at the switch; if it is anything in the network
  itself (BatchNorm statistics, Adam's state, the schedule) it keeps falling;
- **resnet18-half**: the first half of the same training set: epochs half as long;
- **resnet18-aug**, **toy-dilated**, **vitn-12x256-8x8**: augmentation, a 62 k-parameter CNN and a ViT.

The drop is measured against the trend: a line fitted to log(loss) just before each epoch end, extrapolated over the
steps just after it (nbkit.analysis.drops); every number here is the loss against that trend (-30%: 30% below it),
in the charts and in the words. The placebo is the same statistic one window before each epoch end, where nothing
changes in the data and the curve bends as it does where the trend is fitted. Every test takes the seed (a run) as
its unit: a run's epoch ends are averaged first, since under one order the same batches end every epoch. Runs with
`seen_probe` also log the loss split by how many times the examples were trained on before, and runs with
`boundary_eval` score held-out images (the `val` split) densely around each epoch end."""
LOSS_TEXT = "Mean over seeds (band: min to max); dashed rules at epoch ends. x is epochs, so shorter epochs line up."
SEEN_TEXT = ("Each train row split by how many times its examples had been trained on before that step (0, 1, 2, 3 or "
             "more). With a fresh order each epoch every example of epoch k has been seen k - 1 times, so the colours "
             "follow the epochs; drawn with replacement, all groups share every window and their gap is measured at "
             "the same weights.")
ALIGNED_TEXT = ("x: steps since an epoch end; y: the training loss against the trend fitted to the steps just before "
                "it (0: on the trend; -5%: 5% below it). Thin lines: every epoch end of every run; thick: their mean.")
HELD_TEXT = ("The same view for the held-out images (never trained on) scored at the same steps, beside the training "
             "batches' mean: a drop that is memorisation shows in the training loss only.")
SWITCH_TEXT = ("Up to the switch every batch holds images of one half, trained on before; after it, images of the other "
               "half, never trained on. Memorisation says the training loss jumps up to the held-out images' level "
               "there; a change in the network itself (BatchNorm statistics, Adam's state, the schedule) says it "
               "keeps falling.")
TABLE_TEXT = ("The loss just after an epoch end against the trend (negative: below it, as in the charts), mean ± std "
              "across seeds, beside the same statistic at the placebo points and on the held-out images; beyond chance: "
              "a paired t test of each run's epoch ends against its placebo, the seed as the unit (two-sided p).")


# --- charts ----------------------------------------------------------------------------------------

def _colour(order: list[str], palette: dict[str, str]) -> alt.Scale:
    """Each variant in the colour the comparison's other charts give its main group."""
    fallback = lambda i: charts.PALETTE[i % len(charts.PALETTE)]
    return alt.Scale(domain=order, range=[palette.get(v, fallback(i)) for i, v in enumerate(order)])


def _panels(frames: dict[str, pl.DataFrame], layers, title: str) -> charts.Spec:
    """One panel per variant (in the given order), each layers(variant, its rows), COLUMNS a row;
    one y scale for all, so a drop in one panel and none in another read as such."""
    panels = [alt.layer(*layers(variant, df)).properties(title=variant, width=PANEL_WIDTH, height=PANEL_HEIGHT)
              for variant, df in frames.items()]
    chart = alt.concat(*panels, columns=COLUMNS).properties(title=title).resolve_scale(y="shared")
    return charts.Spec(chart.to_dict())


def _by_variant(df: pl.DataFrame, order: list[str]) -> dict[str, pl.DataFrame]:
    return {v: df.filter(pl.col("variant") == v) for v in order if v in set(df["variant"])}


def _data(df: pl.DataFrame) -> alt.Data:
    return alt.Data(values=df.with_columns(pl.col(pl.Float64).round_sig_figs(5)).to_dicts())


def seen_chart(metrics: pl.DataFrame, order: list[str]) -> charts.Spec | None:
    """Per variant: the training loss of each seen group (mean over seeds), or None without the probe."""
    df = epochs.seen_series(metrics).drop_nulls("loss")
    if df.is_empty():
        return None
    mean = df.group_by("variant", "step", "group").agg(pl.col("loss").mean(), pl.col("share").mean()).sort("step")
    colour = alt.Color("group:N", title="trained on before (times)",
                       scale=alt.Scale(domain=list(SEEN_GROUPS), range=list(GROUP_COLOURS)))

    def layers(variant, rows):
        return [alt.Chart(_data(rows)).mark_line(point=alt.OverlayMarkDef(size=10), strokeWidth=1.5).encode(
            alt.X("step:Q"), alt.Y("loss:Q", title="training loss", scale=alt.Scale(zero=False)), colour,
            tooltip=["step:Q", "group:N", alt.Tooltip("loss:Q", format=".4f"), alt.Tooltip("share:Q", format=".2f")])]

    return _panels(_by_variant(mean, order), layers,
                   "Training loss by how many times the examples were trained on before (mean over seeds)")


def _zero_rules():
    return [alt.Chart(alt.Data(values=[{"x": 0}])).mark_rule(color="#999", strokeDash=[4, 3]).encode(x="x:Q"),
            alt.Chart(alt.Data(values=[{"y": 0}])).mark_rule(color="#bbb").encode(y="y:Q")]


X_OFFSET = alt.X("offset:Q", title="steps since the epoch end")
Y_DEVIATION = alt.Y("deviation:Q", title="loss against trend", axis=alt.Axis(format="+%"))


def aligned_chart(train: pl.DataFrame, order: list[str], palette: dict[str, str] | None = None) -> charts.Spec:
    """Every boundary overlaid per variant: one thin line per (run, boundary), the mean bold."""
    colour = alt.Color("variant:N", scale=_colour(order, palette or {}), legend=None)

    def layers(variant, rows):
        mean = rows.group_by("variant", "offset").agg(pl.col("deviation").mean()).sort("offset")
        return [*_zero_rules(),
                alt.Chart(_data(rows.select("variant", "seed", "boundary", "offset", "deviation"))).mark_line(
                    strokeWidth=0.7, opacity=0.35).encode(
                    X_OFFSET, Y_DEVIATION, colour, detail=["seed:N", "boundary:N"]),
                alt.Chart(_data(mean)).mark_line(strokeWidth=2.5, point=True).encode(
                    X_OFFSET, Y_DEVIATION, colour, tooltip=["offset:Q", alt.Tooltip("deviation:Q", format="+.2%")])]

    return _panels(_by_variant(train, order), layers,
                   "Training loss against the trend, every epoch end overlaid (thin: each; thick: mean)")


def held_out_chart(train: pl.DataFrame, held: pl.DataFrame, order: list[str]) -> charts.Spec:
    """Per variant: the mean deviation from trend of the training batches and of the held-out images."""
    both = (pl.concat([train, held]).filter(pl.col("variant").is_in(held["variant"].unique().to_list()))
            .group_by("variant", "split", "offset").agg(pl.col("deviation").mean())
            .with_columns(pl.col("split").replace_strict(SPLIT_NAMES).alias("scored on")).drop("split").sort("offset"))
    names = list(SPLIT_NAMES.values())

    def layers(variant, rows):
        return [*_zero_rules(), alt.Chart(_data(rows)).mark_line(strokeWidth=2, point=True).encode(
            X_OFFSET, Y_DEVIATION,
            alt.Color("scored on:N", scale=alt.Scale(domain=names, range=["#1f77b4", "#222222"]),
                      legend=alt.Legend(orient="bottom", labelLimit=0)),
            alt.StrokeDash("scored on:N", scale=alt.Scale(domain=names, range=[[1, 0], [5, 3]])),
            tooltip=["scored on:N", "offset:Q", alt.Tooltip("deviation:Q", format="+.2%")])]

    return _panels(_by_variant(both, order), layers,
                   "Loss against the trend at epoch ends: training batches and held-out images (means)")


# --- the table ---------------------------------------------------------------------------------------

def drop_table(metrics: pl.DataFrame, runs: pl.DataFrame, order: list[str]) -> pl.DataFrame:
    """Per variant: seeds, epoch length, epoch ends measured, the loss against the trend at epoch
    ends (mean ± std over seeds), at the placebo, whether the drop is beyond chance with the seed
    as the unit (and its p), and the held-out images at the same ends."""
    v = epochs.verdicts(epochs.without_switch(drops.boundary_drops(metrics, runs), runs))
    held = drops.drop_per_variant(epochs.without_switch(epochs.held_out_drops(metrics, runs), runs)).select(
        "variant", pl.col("boundary_drop_mean").alias("held"))
    spe = runs.group_by("variant").agg(pl.col("steps_per_epoch").min().alias("spe"))
    rows = []
    for r in v.join(held, on="variant", how="left").join(spe, on="variant", how="left").iter_rows(named=True):
        std = "" if r["boundary_drop_std"] is None else f" ± {r['boundary_drop_std'] * 100:.1f}%"
        rows.append({"variant": r["variant"], "seeds": r["seeds"], "steps per epoch": r["spe"],
                     "epoch ends": r["boundaries"],
                     "at epoch ends (against trend)": epochs_answer.against(r["boundary_drop_mean"]) + std,
                     "placebo": epochs_answer.against(r["placebo_drop_mean"]),
                     "beyond chance": _beyond(r), "held-out images": epochs_answer.against(r["held"])})
    rank = {v: i for i, v in enumerate(order)}
    return pl.DataFrame(sorted(rows, key=lambda r: rank.get(r["variant"], len(rank)))) if rows else pl.DataFrame()


def _beyond(r: dict) -> str:
    """yes / no with the seed-level p; a large drop that is not beyond chance says both."""
    if r["stands_out"] is None:
        return "— (one seed)"
    if r["stands_out"]:
        return f"yes (p = {r['p']:.2g})"
    large = abs(r["boundary_drop_mean"] or 0) >= epochs_answer.LARGE
    return f"no (p = {r['p']:.2g}){': large, seeds disagree' if large else ''}"


def switch_chart(metrics: pl.DataFrame, runs: pl.DataFrame) -> charts.Spec | None:
    """The disjoint runs: the training loss and the held-out images' loss by step (means over
    seeds), a rule at the switch; None without such runs."""
    rows = epochs.switch(metrics, runs)
    if rows.is_empty():
        return None
    at = int(rows["step"].min())
    both = (metrics.filter(pl.col("path").is_in(rows["path"].implode())
                           & pl.col("split").is_in(list(SPLIT_NAMES)) & pl.col("loss").is_not_null())
            .group_by("split", "step").agg(pl.col("loss").mean()).sort("step")
            .with_columns(pl.col("split").replace_strict(SPLIT_NAMES).alias("scored on")).drop("split"))
    names = list(SPLIT_NAMES.values())
    line = alt.Chart(_data(both)).mark_line(strokeWidth=2, point=alt.OverlayMarkDef(size=12)).encode(
        alt.X("step:Q", title="step"), alt.Y("loss:Q", title="loss"),
        alt.Color("scored on:N", scale=alt.Scale(domain=names, range=["#1f77b4", "#222222"]),
                  legend=alt.Legend(orient="bottom", labelLimit=0)),
        tooltip=["scored on:N", "step:Q", alt.Tooltip("loss:Q", format=".3f")])
    rule = alt.Chart(alt.Data(values=[{"x": at}])).mark_rule(color="#999", strokeDash=[4, 3]).encode(x="x:Q")
    title = f"{epochs_answer.DISJOINT}: the switch to never-seen images at step {at} (means over seeds)"
    return charts.Spec(alt.layer(line, rule).properties(title=title, width=3 * PANEL_WIDTH, height=PANEL_HEIGHT)
                       .to_dict())
