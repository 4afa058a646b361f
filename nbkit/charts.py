"""Altair charts of run logs: training loss with epoch marks, top-1 per split, learned
temperature and any logged scalar (the gradient norm by default where runs logged it), as
panels of one linked dashboard; and each layer's learned temperature.

Every panel: one colour per variant from a 23-colour palette (seeds by dash), the y range
fitted to what is drawn, zoom and pan (drag, wheel; double-click resets), a readout of every
line's value at the hovered step, and the raw curve faded behind a smoothed one. Clicking a
legend entry highlights that variant in every panel. Altair writes each panel's encoding; the
data and the selections are added to the JSON spec here (Altair's own handling of thousands of
rows and of a selection shared by nested layers is slow, and the latter invalid in Vega).
Data preparation lives in nbkit.curves.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import altair as alt
import polars as pl

from . import curves

X_TITLES = {"step": "step", "epoch": "epoch", "wall time": "wall time (s)"}
WIDTH, HEIGHT = 900, 260
HIGHLIGHT = "highlight"
# 23 colours told apart on white (Tableau's 10 strongest first, then Kelly's 1965 set of maximum contrast)
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#222222",
           "#bcbd22", "#7f7f7f", "#a1caf1", "#882d17", "#f3c300", "#604e97", "#8db600", "#f99379", "#0067a5",
           "#b3446c", "#c2b280", "#008856", "#e25822", "#654522")
DASHES = ([1, 0], [6, 3], [2, 2], [8, 3, 2, 3], [1, 3])  # seeds of a variant: solid, dashed, dotted, ...


class Spec:
    """A chart as its Vega-Lite JSON (`.to_dict()`): shown by marimo and Jupyter, saved as PNG or SVG."""

    def __init__(self, spec: dict):
        self.spec = spec

    def to_dict(self, **_) -> dict:
        return self.spec

    def __getitem__(self, key):
        return self.spec[key]

    def _mime_(self):  # marimo
        return "application/vnd.vegalite.v6+json", json.dumps(self.spec)

    def _repr_mimebundle_(self, *args, **kwargs):  # Jupyter, through Altair's active renderer
        return alt.renderers.get()(self.spec)

    def save(self, path: str | Path, scale_factor: float = 1.0) -> None:
        import vl_convert as vlc

        path = Path(path)
        if path.suffix == ".png":
            path.write_bytes(vlc.vegalite_to_png(self.spec, scale=scale_factor))
        elif path.suffix == ".svg":
            path.write_text(vlc.vegalite_to_svg(self.spec))
        else:
            raise ValueError(f"charts save as .png or .svg, got {path.name}")


def color(shown: list[str], order: list[str] | None = None) -> alt.Color:
    """A variant keeps its colour whatever else is shown: colours follow `order` (the
    comparison's variant list), the legend lists only what is shown."""
    domain = list(dict.fromkeys([*(order or []), *shown]))
    palette = [PALETTE[i % len(PALETTE)] for i in range(len(domain))]
    return alt.Color("variant:N", scale=alt.Scale(domain=domain, range=palette),
                     legend=alt.Legend(values=shown, title="variant (click to highlight, shift-click for more)",
                                       columns=min(4, max(1, len(shown))), symbolStrokeWidth=3, symbolOpacity=1,
                                       labelLimit=220, titleLimit=600))


def _field(label: str) -> str:
    """A name as a Vega field: every character Vega's access paths read (. [ ] quotes \\) escaped."""
    return "".join("\\" + c if c in "\\.[]'\"" else c for c in label)


def _rows(df: pl.DataFrame) -> list[dict]:
    return df.with_columns(pl.col(pl.Float64).round_sig_figs(6)).to_dicts()


def panel_spec(df: pl.DataFrame, *, key: str, title: str, y_title: str, x: str = "step", seeds: str = "each run",
               log_scale: bool = False, marks: pl.DataFrame | None = None, order: list[str] | None = None,
               width: int = WIDTH, height: int = HEIGHT, smoothed: bool = False, skip_start: float = 0.0) -> dict:
    """One chart: lines per run (seeds dashed apart) or each variant's mean across seeds with a
    min-max band; df is a curves.series frame, optionally with a band (low, high) per run.
    Returns the spec without selections (`finish` adds them)."""
    if seeds not in curves.SEED_MODES:
        raise ValueError(f"seeds expects one of {curves.SEED_MODES}, got {seeds!r}")
    each_run = seeds == "each run"
    if not each_run and not df.is_empty():
        df = curves.aggregate_seeds(df)
    shown = sorted(df["variant"].unique().to_list()) if not df.is_empty() else []
    domain = None if log_scale else curves.y_domain(df, skip_start)
    scale = alt.Scale(type="log") if log_scale else alt.Scale(zero=False, nice=False,
                                                              **({"domain": domain} if domain else {}))
    x_field = "step" if x == "step" else "x"  # on the step axis x is the step: not sent twice
    X, Y = alt.X(f"{x_field}:Q", title=X_TITLES[x]), alt.Y("value:Q", title=y_title, scale=scale)
    colour, pick = color(shown, order), alt.param(name=HIGHLIGHT)
    by_seed = [alt.StrokeDash("seed:N", scale=alt.Scale(range=list(DASHES)), legend=alt.Legend(
        title="seed"))] if each_run else []
    detail = "seed:N" if each_run else "variant:N"
    keep = ["variant", "seed" if each_run else "seeds", "step", *([] if x == "step" else ["x"]), "value",
            *(["raw"] if smoothed else []), *(["low", "high"] if "low" in df.columns else [])]
    lines = curves.thin(df).select([c for c in keep if c in df.columns])  # no paths: a report carries none
    datasets = {f"{key}-lines": _rows(lines)}
    base, layers = alt.Chart(alt.NamedData(f"{key}-lines")), []
    if marks is not None and not marks.is_empty():
        datasets[f"{key}-marks"] = _rows(marks)
        layers.append(alt.Chart(alt.NamedData(f"{key}-marks")).mark_rule(
            color="#bbb", strokeDash=[3, 3], strokeWidth=0.8).encode(
            x="x:Q", tooltip=[alt.Tooltip("x:Q", title="epoch ends at")]))
    if "low" in lines.columns:
        layers.append(base.mark_area(clip=True).encode(
            X, alt.Y("low:Q", scale=scale, title=y_title), alt.Y2("high:Q"), colour, detail=detail,
            opacity=alt.when(pick).then(alt.value(0.15)).otherwise(alt.value(0.03))))
    if smoothed:
        layers.append(base.mark_line(strokeWidth=1, clip=True).encode(
            X, alt.Y("raw:Q", scale=scale, title=y_title), colour, *by_seed, detail=detail,
            opacity=alt.when(pick).then(alt.value(0.22)).otherwise(alt.value(0.04))))
    layers.append(base.mark_line(strokeWidth=1.8, clip=True).encode(
        X, Y, colour, *by_seed, detail=detail,
        opacity=alt.when(pick).then(alt.value(1.0)).otherwise(alt.value(0.1))).properties(name=f"{key}_lines"))
    labels = sorted(df["label"].unique().to_list()) if not df.is_empty() else []
    layers.append(_readout(key, labels, each_run, x_field, X_TITLES[x], base))
    spec = alt.layer(*layers).properties(title=title, width=width, height=height).to_dict(validate=False)
    spec["datasets"] = datasets
    return spec


def _readout(key: str, labels: list[str], each_run: bool, x_field: str, x_title: str, base) -> alt.Chart:
    """A rule at the hovered step whose tooltip lists every line's value there (pivoted in the
    browser from the lines' own data)."""
    hover = alt.param(name=f"hover_{key}", empty=False)
    tooltip = [alt.Tooltip("step:Q"), *[alt.Tooltip(f"{_field(l)}:Q", title=l, format=".4f") for l in labels]]
    label = "datum.variant + ' s' + (datum.seed == null ? '?' : datum.seed)" if each_run else "datum.variant"
    return (base.transform_calculate(label=label)
            .transform_joinaggregate(at=f"mean({x_field})", groupby=["step"])
            .transform_pivot("label", value="value", groupby=["step", "at"])
            .mark_rule(color="#888", strokeWidth=1).encode(
                x=alt.X("at:Q", title=x_title), opacity=alt.when(hover).then(alt.value(0.6)).otherwise(alt.value(0)),
                tooltip=tooltip).properties(name=f"{key}_readout"))


def _unit_names(node, found: list[str]) -> list[str]:
    if isinstance(node, dict):
        if isinstance(node.get("name"), str) and node["name"].endswith(("_lines", "_readout")):
            found.append(node["name"])
        for k, v in node.items():
            if k != "datasets":
                _unit_names(v, found)
    elif isinstance(node, list):
        for v in node:
            _unit_names(v, found)
    return found


def selections(spec: dict) -> list[dict]:
    """The selections of every panel in spec, defined once at the top with the views they live
    in: the legend highlight (all panels), and per panel its zoom and its hover readout."""
    names = _unit_names(spec, [])
    lines = [n for n in names if n.endswith("_lines")]
    out = [{"name": HIGHLIGHT, "select": {"type": "point", "fields": ["variant"]}, "bind": "legend", "views": lines}]
    out += [{"name": f"zoom_{n[:-len('_lines')]}", "select": {"type": "interval"}, "bind": "scales", "views": [n]}
            for n in lines]
    out += [{"name": f"hover_{n[:-len('_readout')]}", "views": [n], "select": {
        "type": "point", "fields": ["step"], "nearest": True, "on": "pointerover", "clear": "pointerout"}}
        for n in names if n.endswith("_readout")]
    return out


def finish(parts: list[dict], how: str | None = None, **extra) -> Spec:
    """One chart from panel specs (alone, or side by side / stacked), selections at the top."""
    datasets = {}
    for part in parts:
        datasets.update(part.pop("datasets", {}))
        for k in ("params", "$schema", "config"):
            part.pop(k, None)
    spec = dict(parts[0]) if how is None else {how: parts, **extra}
    return Spec({"$schema": alt.SCHEMA_URL, **spec, "datasets": datasets, "params": selections(spec),
                 "config": {"legend": {"orient": "top"}, "view": {"strokeWidth": 0}}})


def loss_chart(metrics, runs, variants=None, x="step", smoothing=0.0, seeds="each run", log_scale=False,
               order=None, width=WIDTH) -> Spec:
    return finish([loss_spec(metrics, runs, variants, x, smoothing, seeds, log_scale, order, width)])


def loss_spec(metrics, runs, variants, x, smoothing, seeds, log_scale, order, width) -> dict:
    df = curves.series(curves.select(metrics, variants), runs, "train", "loss", x, smoothing)
    max_step = int(df["step"].max()) if not df.is_empty() else 0
    marks = curves.epoch_marks(runs, variants, x, max_step)
    note = f", smoothed (EMA {smoothing:g}) over the faded raw curve" if smoothing else ""
    title = f"Training loss{note}" + (" (dashed rules: epoch ends)" if not marks.is_empty() else "")
    return panel_spec(df, key="loss", title=title, y_title="loss", x=x, seeds=seeds, log_scale=log_scale,
                      marks=marks, order=order or variants, width=width, smoothed=smoothing > 0, skip_start=0.1)


def accuracy_chart(metrics, runs, variants=None, splits=("train_200", "test"), x="step", seeds="each run",
                   smoothing=0.0, order=None, width=WIDTH) -> Spec:
    """Top-1 per split, side by side, each with its own fitted y range."""
    return finish([accuracy_spec(metrics, runs, variants, splits, x, seeds, smoothing, order, width)])


def accuracy_spec(metrics, runs, variants, splits, x, seeds, smoothing, order, width) -> dict:
    present = set(metrics["split"].unique()) if not metrics.is_empty() else set()
    shown = [s for s in splits if s in present]
    if not shown:
        return alt.Chart(alt.Data(values=[])).mark_text().properties(title="no evaluation rows yet").to_dict()
    each = (width - 50 * (len(shown) - 1)) // len(shown)
    parts = [panel_spec(curves.series(curves.select(metrics, variants), runs, split, "acc_top1", x, smoothing),
                        key=f"top1_{split}", title=f"Top-1 on {split}", y_title="top-1", x=x, seeds=seeds,
                        order=order or variants, width=each, smoothed=smoothing > 0) for split in shown]
    datasets = {k: v for p in parts for k, v in p.pop("datasets").items()}
    return {"hconcat": parts, "resolve": {"scale": {"y": "independent"}}, "datasets": datasets}


def scalar_chart(metrics, runs, scalar: str, variants=None, x="step", smoothing=0.0, seeds="each run",
                 log_scale=False, order=None, width=WIDTH) -> Spec:
    """Any logged scalar, named as curves.scalars() names it ("test loss", "train lr", ...)."""
    options = curves.scalars(metrics)
    if scalar not in options:
        raise ValueError(f"no logged scalar {scalar!r}; the logs hold {', '.join(options) or 'none'}")
    split, column = options[scalar]
    df = curves.series(curves.select(metrics, variants), runs, split, column, x, smoothing)
    return finish([panel_spec(df, key="scalar", title=f"{column} on {split}", y_title=column, x=x, seeds=seeds,
                              log_scale=log_scale, order=order or variants, width=width, smoothed=smoothing > 0)])


def temperature_chart(metrics, runs, variants=None, x="step", seeds="each run", order=None,
                      width=WIDTH) -> Spec | None:
    """Learned attention temperature tau: each run's mean across layers, band = +- std across layers."""
    sel = curves.select(metrics, variants)
    mean = curves.series(sel, runs, "train", "tau_mean", x)
    if mean.is_empty():
        return None
    std = curves.series(sel, runs, "train", "tau_std", x).select("path", "step", pl.col("value").alias("std"))
    df = mean.join(std, on=["path", "step"], how="left").with_columns(
        (pl.col("value") - pl.col("std")).alias("low"), (pl.col("value") + pl.col("std")).alias("high"))
    return finish([panel_spec(df, key="tau", y_title="tau", x=x, seeds=seeds, order=order or variants, width=width,
                              title="Learned attention temperature (mean across layers, band: +-std across layers)")])


def main_charts(metrics, runs, variants=None, splits=("train_200", "test"), x="step", smoothing=0.0,
                seeds="each run", log_scale=False, scalar=None, order=None, width=WIDTH) -> dict[str, Spec]:
    """The charts a comparison shows: loss, accuracy, temperature where runs learned one, and
    the chosen scalar (`dashboard` stacks them with one linked legend)."""
    common = dict(x=x, seeds=seeds, order=order, width=width)
    charts = {"loss": loss_chart(metrics, runs, variants, smoothing=smoothing, log_scale=log_scale, **common),
              "accuracy": accuracy_chart(metrics, runs, variants, splits, smoothing=smoothing, **common)}
    tau = temperature_chart(metrics, runs, variants, **common)
    if tau is not None:
        charts["temperature"] = tau
    if scalar and scalar in curves.scalars(metrics):
        charts["scalar"] = scalar_chart(metrics, runs, scalar, variants, smoothing=smoothing, **common)
    return charts


def dashboard(charts: dict[str, Spec]) -> Spec:
    """The panels stacked in one chart: one legend, and a click on it highlights in every panel."""
    parts = [copy.deepcopy({k: v for k, v in c.to_dict().items() if k != "datasets"}) | {"datasets": dict(c["datasets"])}
             for c in charts.values()]
    legends = _colour_legends(parts, [])  # Vega-Lite shows one panel's: each lists what any panel draws
    shown = sorted({v for legend in legends for v in legend.get("values") or []})
    for legend in legends:
        legend["values"] = shown
    return finish(parts, "vconcat", spacing=30, resolve={"scale": {"color": "shared", "strokeDash": "shared"}})


def _colour_legends(node, found: list[dict]) -> list[dict]:
    if isinstance(node, dict):
        legend = (node.get("encoding") or {}).get("color", {}).get("legend")
        if isinstance(legend, dict):
            found.append(legend)
        for k, v in node.items():
            if k != "datasets":
                _colour_legends(v, found)
    elif isinstance(node, list):
        for v in node:
            _colour_legends(v, found)
    return found


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


def layer_temperature_chart(metrics: pl.DataFrame, variants=None, order=None) -> Spec | None:
    """Learned attention temperature of every layer at the run's last logged step (as the original's
    get_all_taus.py read them from a checkpoint); None when no run logged them."""
    df = layer_temperatures(curves.select(metrics, variants))
    if df.is_empty():
        return None
    shown = sorted(df["variant"].unique().to_list())
    base = alt.Chart(df).encode(alt.X("layer:O", title="layer"), alt.Y("tau:Q", title="tau", scale=alt.Scale(zero=False)),
                                color(shown, order), detail="run_id:N")
    tooltip = ["variant:N", "seed:Q", "step:Q", "layer:O", alt.Tooltip("tau:Q", format=".4f")]
    chart = alt.layer(base.mark_line(), base.mark_point(filled=True, size=40).encode(tooltip=tooltip)).properties(
        title="Learned attention temperature per layer (last logged step)", width=WIDTH // 2, height=HEIGHT)
    return Spec(chart.to_dict())
