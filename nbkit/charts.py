"""Altair charts of run logs: training loss with epoch marks, top-1 per split, temperature,
gradient norm.

Every chart has tooltips (variant, seed, step, value) and a legend whose click highlights a
variant. Data preparation lives in nbkit.curves.
"""

from __future__ import annotations

import warnings

import altair as alt
import polars as pl

from . import curves

alt.data_transformers.disable_max_rows()
# each panel of a concatenated chart carries the same legend selection; Altair merges them
warnings.filterwarnings("ignore", message="Automatically deduplicated selection parameter")  # 5,000-step runs logged every 10 steps exceed the default cap

X_TITLES = {"step": "step", "epoch": "epoch", "wall time": "wall time (s)"}
WIDTH, HEIGHT = 420, 260


def _highlight():
    return alt.selection_point(fields=["variant"], bind="legend", name="highlight")



def curve_chart(df: pl.DataFrame, *, title: str, y_title: str, x: str = "step", seeds: str = "each run",
                log_scale: bool = False, marks: pl.DataFrame | None = None, variants: list[str] | None = None,
                width: int = WIDTH, height: int = HEIGHT, pick=None) -> alt.LayerChart:
    """Lines per run, or a variant's mean across seeds with a min-max band."""
    pick = pick if pick is not None else _highlight()
    scale = alt.Scale(type="log") if log_scale else alt.Scale(zero=False)
    domain = variants if variants else sorted(df["variant"].unique().to_list()) if not df.is_empty() else []
    color = alt.Color("variant:N", scale=alt.Scale(domain=domain),
                      legend=alt.Legend(title="variant (click to highlight)", symbolLimit=50))
    opacity = alt.when(pick).then(alt.value(1.0)).otherwise(alt.value(0.12))
    X = alt.X("x:Q", title=X_TITLES[x])
    if seeds == "each run":
        layers = [alt.Chart(df).mark_line(strokeWidth=1.5).encode(
            X, alt.Y("value:Q", title=y_title, scale=scale), color, opacity=opacity, detail="run_id:N",
            tooltip=[alt.Tooltip("variant:N"), alt.Tooltip("seed:Q"), alt.Tooltip("step:Q"),
                     alt.Tooltip("value:Q", title=y_title, format=".4f")]).add_params(pick)]
    elif seeds == "mean and min-max band":
        agg = curves.aggregate_seeds(df) if not df.is_empty() else df
        band_opacity = alt.when(pick).then(alt.value(0.18)).otherwise(alt.value(0.03))
        layers = [
            alt.Chart(agg).mark_area().encode(X, alt.Y("low:Q", title=y_title, scale=scale), alt.Y2("high:Q"),
                                             color, opacity=band_opacity),
            alt.Chart(agg).mark_line(strokeWidth=2).encode(
                X, alt.Y("value:Q", title=y_title, scale=scale), color, opacity=opacity,
                tooltip=[alt.Tooltip("variant:N"), alt.Tooltip("seeds:Q", title="seeds"), alt.Tooltip("step:Q"),
                         alt.Tooltip("value:Q", title=f"mean {y_title}", format=".4f"),
                         alt.Tooltip("low:Q", title="min", format=".4f"),
                         alt.Tooltip("high:Q", title="max", format=".4f")]).add_params(pick),
        ]
    else:
        raise ValueError(f"seeds expects one of {curves.SEED_MODES}, got {seeds!r}")
    if marks is not None and not marks.is_empty():
        layers.insert(0, alt.Chart(marks).mark_rule(color="#999", strokeDash=[3, 3], strokeWidth=0.8).encode(
            x="x:Q", tooltip=[alt.Tooltip("x:Q", title="epoch ends at")]))
    return alt.layer(*layers).properties(title=title, width=width, height=height)


def loss_chart(metrics, runs, variants=None, x="step", smoothing=0.0, seeds="each run", log_scale=False):
    df = curves.series(curves.select(metrics, variants), runs, "train", "loss", x, smoothing)
    max_step = int(df["step"].max()) if not df.is_empty() else 0
    marks = curves.epoch_marks(runs, variants, x, max_step)
    note = f", EMA {smoothing:g}" if smoothing else ""
    title = f"Training loss{note}" + (" (dashed: epoch ends)" if not marks.is_empty() else "")
    return curve_chart(df, title=title, y_title="loss", x=x, seeds=seeds,
                       log_scale=log_scale, marks=marks, variants=variants)


def accuracy_chart(metrics, runs, variants=None, splits=("train_200", "test"), x="step", seeds="each run"):
    present = set(metrics["split"].unique()) if not metrics.is_empty() else set()
    pick = _highlight()  # one legend selection, shared by the panels (Altair merges the copies)
    charts = [curve_chart(curves.series(curves.select(metrics, variants), runs, split, "acc_top1", x),
                          title=f"Top-1 on {split}", y_title="top-1", x=x, seeds=seeds, variants=variants,
                          width=320, pick=pick)
              for split in splits if split in present]
    if not charts:
        return alt.Chart(pl.DataFrame({"x": []})).mark_text().properties(title="no evaluation rows yet")
    return alt.hconcat(*charts).resolve_scale(y="shared")


def temperature_chart(metrics, runs, variants=None, x="step"):
    """Learned attention temperature tau: each run's mean across layers, band = +- std across layers."""
    sel = curves.select(metrics, variants)
    mean = curves.series(sel, runs, "train", "tau_mean", x)
    if mean.is_empty():
        return None
    std = curves.series(sel, runs, "train", "tau_std", x).select("path", "step", pl.col("value").alias("std"))
    df = mean.join(std, on=["path", "step"]).with_columns(
        (pl.col("value") - pl.col("std")).alias("low"), (pl.col("value") + pl.col("std")).alias("high"))
    pick = _highlight()
    color = alt.Color("variant:N", legend=alt.Legend(title="variant (click to highlight)"))
    opacity = alt.when(pick).then(alt.value(1.0)).otherwise(alt.value(0.12))
    X = alt.X("x:Q", title=X_TITLES[x])
    band = alt.Chart(df).mark_area(opacity=0.15).encode(X, alt.Y("low:Q", title="tau"), alt.Y2("high:Q"), color,
                                                        detail="run_id:N")
    line = alt.Chart(df).mark_line().encode(
        X, alt.Y("value:Q", title="tau", scale=alt.Scale(zero=False)), color, opacity=opacity, detail="run_id:N",
        tooltip=["variant:N", "seed:Q", "step:Q", alt.Tooltip("value:Q", title="tau mean", format=".4f"),
                 alt.Tooltip("std:Q", title="tau std across layers", format=".4f")]).add_params(pick)
    return alt.layer(band, line).properties(title="Learned attention temperature (mean, +-std across layers)",
                                            width=WIDTH, height=HEIGHT)


def main_charts(metrics, runs, variants=None, splits=("train_200", "test"), x="step", smoothing=0.0,
                seeds="each run", log_scale=False) -> dict[str, alt.TopLevelMixin]:
    """The charts a comparison shows: loss, accuracy, and temperature where runs learned one."""
    charts = {"loss": loss_chart(metrics, runs, variants, x, smoothing, seeds, log_scale),
              "accuracy": accuracy_chart(metrics, runs, variants, splits, x, seeds)}
    tau = temperature_chart(metrics, runs, variants, x)
    if tau is not None:
        charts["temperature"] = tau
    grad = gradient_norm_chart(metrics, runs, variants, x, seeds)
    if grad is not None:
        charts["gradient norm"] = grad
    return charts


def gradient_norm_chart(metrics, runs, variants=None, x="step", seeds="each run"):
    """The gradient norm before clipping (train rows' grad_norm), log scale; None where no run logged it."""
    if metrics.is_empty() or "grad_norm" not in metrics.columns:
        return None
    df = curves.series(curves.select(metrics, variants), runs, "train", "grad_norm", x).filter(pl.col("value") > 0)
    if df.is_empty():
        return None
    return curve_chart(df, title="Gradient norm before clipping", y_title="gradient norm", x=x, seeds=seeds,
                       log_scale=True, variants=variants)


def layer_temperatures(metrics: pl.DataFrame) -> pl.DataFrame:
    """Each run's learned tau per layer at its last logged step (columns tau/<layer>): run_id,
    variant, seed, step, layer, tau. Empty when no run logged them."""
    columns = sorted((c for c in metrics.columns if c.startswith("tau/") and c[4:].isdigit()), key=lambda c: int(c[4:]))
    if not columns:
        return pl.DataFrame()
    last = (metrics.filter((pl.col("split") == "train") & pl.col(columns[0]).is_not_null())
            .sort("step").group_by("path", maintain_order=True).last())
    return (last.unpivot(columns, index=["run_id", "variant", "seed", "step"], variable_name="layer", value_name="tau")
            .with_columns(pl.col("layer").str.slice(4).cast(pl.Int64)).drop_nulls("tau"))


def layer_temperature_chart(metrics: pl.DataFrame, variants=None) -> alt.LayerChart | None:
    """Learned attention temperature of every layer at the run's last logged step (as the original's
    get_all_taus.py read them from a checkpoint); None when no run logged them."""
    df = layer_temperatures(curves.select(metrics, variants))
    if df.is_empty():
        return None
    pick = _highlight()
    color = alt.Color("variant:N", legend=alt.Legend(title="variant (click to highlight)"))
    opacity = alt.when(pick).then(alt.value(1.0)).otherwise(alt.value(0.12))
    base = alt.Chart(df).encode(alt.X("layer:O", title="layer"), alt.Y("tau:Q", title="tau", scale=alt.Scale(zero=False)),
                                color, opacity=opacity, detail="run_id:N")
    tooltip = ["variant:N", "seed:Q", "step:Q", "layer:O", alt.Tooltip("tau:Q", format=".4f")]
    return alt.layer(base.mark_line(), base.mark_point(filled=True).encode(tooltip=tooltip).add_params(pick)).properties(
        title="Learned attention temperature per layer (last logged step)", width=WIDTH, height=HEIGHT)
