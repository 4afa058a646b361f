"""Altair charts of run logs: training loss with epoch marks, top-1 per split, learned
temperature and any logged scalar (the gradient norm by default where runs logged it), as
panels of one linked dashboard; and each layer's learned temperature.

Every panel: a line per run (seeds told apart by dash), or a group's mean across seeds with a
min-max band; a colour per group of runs that stays the same in every notebook and report of a
runs directory (`colours`); the y range fitted to what is drawn; zoom and pan (drag, wheel;
double-click resets); the raw curve faded behind a smoothed one; and beside it a readout of every
shown run's value at the hovered point, sorted by value with its colour. Clicking a legend entry
highlights that group in every panel. Altair writes each view's encoding; the data and the
selections are added to the JSON spec here. No name from a run folder is ever written into a
Vega expression or a field name: names travel as data only. Data preparation lives in nbkit.analysis.curves.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import altair as alt
import polars as pl

from nbkit.analysis import curves
from nbkit.rundir import files
from nbkit.view.interaction import HIGHLIGHT, nodes, readout, selections

X_TITLES = {"step": "step", "epoch": "epoch", "wall time": "wall time (s)"}
WIDTH, HEIGHT = 720, 220
SPARSE = 12  # lines of at most this many points show a dot at each
# told apart on white: Tableau's 10 (the first colours go to the variants with runs), then
# Kelly's 1965 set of maximum contrast
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#222222",
           "#bcbd22", "#7f7f7f", "#a1caf1", "#882d17", "#f3c300", "#604e97", "#8db600", "#f99379", "#0067a5",
           "#b3446c", "#c2b280", "#008856", "#e25822", "#654522", "#dcd300", "#2b3d26", "#875692")
YDOMAINS = "ydomains"  # a panel's fitted y ranges until finish() makes them parameters ydomain_<key>
DASHES = ([1, 0], [6, 3], [2, 2], [8, 3, 2, 3], [1, 3])  # seeds of a group: solid, dashed, dotted, ...


class Spec:
    """A chart as its Vega-Lite JSON (`.to_dict()`): shown by marimo and Jupyter, saved as PNG or SVG.
    Its data sets may be held as frames (`frames`), made rows only when the JSON is first asked
    for: a live chart that sends only the rows that changed (nbkit.view.livechart) never makes them."""

    def __init__(self, spec: dict):
        self.spec = spec
        self._json: dict | None = None

    @property
    def frames(self) -> dict:
        """The data sets as held: a polars frame, or rows."""
        return self.spec.get("datasets") or {}

    def to_dict(self, **_) -> dict:
        if self._json is None:
            self._json = {**self.spec, "datasets": {k: v.to_dicts() if isinstance(v, pl.DataFrame) else v
                                                    for k, v in self.frames.items()}} if self.frames else self.spec
        return self._json

    def __getitem__(self, key):
        return self.to_dict()[key]

    def _mime_(self):  # marimo
        return "application/vnd.vegalite.v6+json", json.dumps(self.to_dict())

    def _repr_mimebundle_(self, *args, **kwargs):  # Jupyter, through Altair's active renderer
        return alt.renderers.get()(self.to_dict())

    def save(self, path: str | Path, scale_factor: float = 1.0) -> None:
        """A picture of the chart (PNG or SVG): the panels without their hover readouts."""
        import vl_convert as vlc

        path, spec = Path(path), static(self.to_dict())
        if path.suffix == ".png":  # a fresh temporary file written through its descriptor, then renamed
            files.write_bytes(path, vlc.vegalite_to_png(spec, scale=scale_factor), fsync=False)
        elif path.suffix == ".svg":
            files.write_text(path, vlc.vegalite_to_svg(spec), fsync=False)
        else:
            raise ValueError(f"charts save as .png or .svg, got {path.name}")


def static(spec: dict) -> dict:
    """A chart for a picture: each panel without its readout (nothing to hover), and so without
    the hover selections."""
    def strip(node):
        if isinstance(node, dict):
            parts = node.get("hconcat")
            if isinstance(parts, list) and len(parts) == 2 and str(parts[1].get("name", "")).endswith("_readout"):
                return strip({**{k: v for k, v in node.items() if k not in ("hconcat", "spacing")}, **parts[0]})
            return {k: (v if k == "datasets" else strip(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [strip(v) for v in node if not (isinstance(v, dict) and str(v.get("name", "")).endswith("_rules"))]
        return node

    out = strip(spec)
    out = json.loads(json.dumps(out).replace('"click to highlight (shift-click for more)"', '"variant"'))
    if "params" in out:
        out["params"] = [p for p in out["params"] if not p["name"].startswith("hover_")]
    return out


def colours(runs: pl.DataFrame, registry: list[str] | None = None) -> dict[str, str]:
    """A colour for every group of runs in a runs directory: the variants with runs take the
    palette's first colours in the registry's order (then any others by name), each variant's
    main group (its own name, else its largest) its variant's colour, and a variant's other
    groups the colours after those. Computed from the whole runs directory, so every notebook and
    report of it colours a group alike."""
    if runs.is_empty() or "variant" not in runs.columns:
        return {}
    groups = runs.select("variant", pl.col("group") if "group" in runs.columns else pl.col("variant").alias("group"))
    sizes = groups.group_by("variant", "group").len()
    present = set(sizes["variant"])
    order = [v for v in dict.fromkeys(registry or []) if v in present] + sorted(present - set(registry or []))
    out, extra = {}, []
    for i, variant in enumerate(order):
        mine = sizes.filter(pl.col("variant") == variant).sort([pl.col("group") != variant, pl.col("len"), "group"], descending=[False, True, False])
        names = mine["group"].to_list()
        out.setdefault(names[0], PALETTE[i % len(PALETTE)])
        extra += names[1:]
    for group in dict.fromkeys(g for g in extra if g not in out):
        out[group] = PALETTE[len(out) % len(PALETTE)]
    return out


def color(shown: list[str], palette: dict[str, str] | None = None) -> alt.Color:
    """The colour channel: each shown group in its colour (`colours`), the legend listing them in
    the palette's order."""
    return color_channel(_colour_scale(shown, palette or {}))


def _rows(df: pl.DataFrame) -> pl.DataFrame:
    """A data set as drawn: six significant digits (the rows themselves are made when the JSON is, Spec.to_dict)."""
    return df.with_columns(pl.col(pl.Float64).round_sig_figs(6))


def panel_spec(df: pl.DataFrame, *, key: str, title: str, y_title: str, x: str = "step", seeds: str = "each run",
               log_scale: bool = False, marks: pl.DataFrame | None = None, palette: dict | None = None,
               width: int = WIDTH, height: int = HEIGHT, smoothed: bool = False, skip_start: float = 0.0,
               bounds: tuple[float, float] | None = None) -> dict:
    """One panel and its readout: lines per run (seeds dashed apart) or each group's mean across
    seeds with a min-max band; df is a curves.series frame, optionally with a band (low, high).
    Returns the spec without selections (`finish` adds them)."""
    if seeds not in curves.SEED_MODES:
        raise ValueError(f"seeds expects one of {curves.SEED_MODES}, got {seeds!r}")
    each_run = seeds == "each run"
    if not each_run and not df.is_empty():
        df = curves.aggregate_seeds(df)
    shown = sorted(df["group"].unique().to_list()) if not df.is_empty() else []
    # on the step axis x is the step: not sent twice
    keep = ["group", "name", "seed" if each_run else "seeds", "step", *([] if x == "step" else ["x"]), "value",
            *(["raw"] if smoothed else []), *(["low", "high"] if "low" in df.columns else [])]
    lines = curves.thin(df).select([c for c in keep if c in df.columns])  # no paths: a report carries none
    datasets = {f"{key}-lines": _rows(lines)}
    has_marks = marks is not None and not marks.is_empty()
    if has_marks:
        datasets[f"{key}-marks"] = _rows(marks)
    scale = _colour_scale(shown, palette or {})
    key_column = "name" if "name" in lines.columns else "group"
    sparse = not lines.is_empty() and int(lines.group_by(key_column).len()["len"].max()) <= SPARSE
    spec = json.loads(_template(key, title, y_title, x, each_run, log_scale, has_marks, "low" in lines.columns,
                                smoothed, width, height, scale, sparse))
    domain = None if log_scale else curves.y_domain(df, skip_start, bounds)
    for layer in spec["hconcat"][0]["layer"]:  # the fitted y range: the one part that follows the data
        y_scale = layer.get("encoding", {}).get("y", {}).get("scale")
        if isinstance(y_scale, dict) and domain and y_scale.get("type") != "log":
            y_scale["domain"] = {"expr": f"ydomain_{key}"}
    # a parameter, like the data: new rows that move it change the drawn chart in place (livechart)
    return {**spec, "datasets": datasets, **({YDOMAINS: {f"ydomain_{key}": domain}} if domain else {})}


def _colour_scale(shown: list[str], palette: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """(group, colour) of each shown group, in the palette's order (a group it lacks: the next free colour)."""
    ranked = sorted(shown, key=lambda g: (list(palette).index(g) if g in palette else len(palette), g))
    fill = {g: PALETTE[(len(palette) + i) % len(PALETTE)] for i, g in enumerate(g for g in ranked if g not in palette)}
    return tuple((g, palette.get(g) or fill[g]) for g in ranked)


@functools.lru_cache(maxsize=256)
def _template(key: str, title: str, y_title: str, x: str, each_run: bool, log_scale: bool, marks: bool, band: bool,
              smoothed: bool, width: int, height: int, scale: tuple, sparse: bool = False) -> str:
    """A panel's spec without its data (JSON): what Altair writes for these choices, built once
    and reused while only the data change (a live refresh). sparse: lines of a few points each
    get a dot at every point (a line of one point draws nothing)."""
    x_field = "step" if x == "step" else "x"
    y_scale = alt.Scale(type="log") if log_scale else alt.Scale(zero=False, nice=False)
    x_axis = alt.Axis(tickMinStep=1, format=",d") if x == "step" else alt.Axis()  # whole steps: no 10.5 on a short run
    X, Y = alt.X(f"{x_field}:Q", title=X_TITLES[x], axis=x_axis), alt.Y("value:Q", title=y_title, scale=y_scale)
    colour, pick = color_channel(scale), alt.param(name=HIGHLIGHT)
    by_seed = [alt.StrokeDash("seed:N", scale=alt.Scale(range=list(DASHES)), legend=alt.Legend(
        title="seed"))] if each_run else []
    detail = "name:N"
    base, layers = alt.Chart(alt.NamedData(f"{key}-lines")), []
    if marks:
        layers.append(alt.Chart(alt.NamedData(f"{key}-marks")).mark_rule(
            color="#bbb", strokeDash=[3, 3], strokeWidth=0.8).encode(
            x="x:Q", tooltip=[alt.Tooltip("x:Q", title="epoch ends at")]))
    if band:
        layers.append(base.mark_area(clip=True).encode(
            X, alt.Y("low:Q", scale=y_scale, title=y_title), alt.Y2("high:Q"), colour, detail=detail,
            opacity=alt.when(pick).then(alt.value(0.15)).otherwise(alt.value(0.03))))
    if smoothed:
        layers.append(base.mark_line(strokeWidth=1, clip=True).encode(
            X, alt.Y("raw:Q", scale=y_scale, title=y_title), colour, *by_seed, detail=detail,
            opacity=alt.when(pick).then(alt.value(0.22)).otherwise(alt.value(0.04))))
    dots = {"point": alt.OverlayMarkDef(filled=True, size=30)} if sparse else {}
    layers.append(base.mark_line(strokeWidth=1.8, clip=True, **dots).encode(
        X, Y, colour, *by_seed, detail=detail,
        opacity=alt.when(pick).then(alt.value(1.0)).otherwise(alt.value(0.1))).properties(name=f"{key}_lines"))
    layers.append(base.transform_aggregate(n="count()", groupby=[x_field]).transform_calculate(hx=f"datum['{x_field}']")
                  .mark_rule(color="#888", strokeWidth=1).encode(
                      x=alt.X(f"{x_field}:Q", title=X_TITLES[x], axis=x_axis),
                      opacity=alt.when(alt.param(name=f"hover_{key}", empty=False)).then(alt.value(0.6))
                      .otherwise(alt.value(0))).properties(name=f"{key}_rules"))
    plot = alt.layer(*layers).properties(title=title, width=width, height=height).to_dict(validate=False)
    lower_better = y_title == "loss" or y_title.endswith("loss")  # the readout lists the best first
    return json.dumps({"hconcat": [plot, readout(key, x_field, x, colour, height, lower_better)], "spacing": 6})


def color_channel(scale: tuple) -> alt.Color:
    """The colour channel of (group, colour) pairs: the legend lists them in that order."""
    groups = [g for g, _ in scale]
    return alt.Color("group:N", scale=alt.Scale(domain=groups, range=[c for _, c in scale]),
                     legend=alt.Legend(values=groups, title="click to highlight (shift-click for more)",
                                       columns=min(4, max(1, len(groups))), symbolStrokeWidth=3, symbolOpacity=1,
                                       labelLimit=260, titleLimit=600))


def finish(parts: list[dict], how: str | None = None, **extra) -> Spec:
    """One chart from panel specs (alone, or stacked), selections at the top."""
    datasets, ranges = {}, {}
    for part in parts:
        datasets.update(part.pop("datasets", {}))
        ranges.update(part.pop(YDOMAINS, {}))
        for k in ("params", "$schema", "config"):
            part.pop(k, None)
    spec = dict(parts[0]) if how is None else {how: parts, **extra}
    fitted = [{"name": name, "value": value} for name, value in ranges.items()]
    return Spec({"$schema": alt.SCHEMA_URL, **spec, "datasets": datasets, "params": fitted + selections(spec),
                 "resolve": {"scale": {"color": "shared", "strokeDash": "shared"}},
                 "config": {"legend": {"orient": "top"}, "view": {"strokeWidth": 0}}})


def loss_chart(metrics, runs, variants=None, x="step", smoothing=0.0, seeds="each run", log_scale=False,
               palette=None, width=WIDTH) -> Spec:
    return finish([loss_spec(metrics, runs, variants, x, smoothing, seeds, log_scale, palette, width)])


def loss_spec(metrics, runs, variants, x, smoothing, seeds, log_scale, palette, width) -> dict:
    df = curves.series(curves.select(metrics, variants), runs, "train", "loss", x, smoothing)
    max_step = int(df["step"].max()) if not df.is_empty() else 0
    marks = curves.epoch_marks(runs, variants, x, max_step)
    note = f", smoothed (EMA {smoothing:g}) over the faded raw curve" if smoothing else ""
    title = f"Training loss{note}" + (" (dashed rules: epoch ends)" if not marks.is_empty() else "")
    return panel_spec(df, key="loss", title=title, y_title="loss", x=x, seeds=seeds, log_scale=log_scale,
                      marks=marks, palette=palette, width=width, smoothed=smoothing > 0, skip_start=0.1)


def accuracy_chart(metrics, runs, variants=None, splits=("train_200", "test"), x="step", seeds="each run",
                   smoothing=0.0, palette=None, width=WIDTH) -> Spec:
    """Top-1 per split, one panel each (stacked), each with its own fitted y range."""
    return finish(accuracy_specs(metrics, runs, variants, splits, x, seeds, smoothing, palette, width), "vconcat",
                  spacing=24)


_ACCURACY: dict = {}  # the last accuracy panels by their inputs: a new training row leaves them as they were


def accuracy_specs(metrics, runs, variants, splits, x, seeds, smoothing, palette, width) -> list[dict]:
    """The top-1 panels, built again only when their inputs (the evaluations, the runs, the choices) change."""
    key = (_inputs(curves.select(metrics, variants), splits), _inputs(runs), tuple(variants or ()), tuple(splits), x,
           seeds, smoothing, tuple(sorted((palette or {}).items())), width)
    if key not in _ACCURACY:
        if len(_ACCURACY) >= 8:
            _ACCURACY.pop(next(iter(_ACCURACY)))
        _ACCURACY[key] = _accuracy_specs(metrics, runs, variants, splits, x, seeds, smoothing, palette, width)
    return [dict(part) for part in _ACCURACY[key]]  # a copy each: finish() takes its data sets out


def _inputs(df: pl.DataFrame, splits=None) -> tuple:
    """What a frame holds, as a key: its evaluations of these splits (or its every row), hashed."""
    if df.is_empty():
        return (0,)
    if splits is not None:
        df = df.filter(pl.col("split").is_in(list(splits)))
        df = df.select([c for c in ("path", "split", "step", "time", "acc_top1") if c in df.columns])
    return df.height, tuple(df.columns), int(df.hash_rows().sum()) if df.height else 0


def _accuracy_specs(metrics, runs, variants, splits, x, seeds, smoothing, palette, width) -> list[dict]:
    present = set(metrics["split"].unique()) if not metrics.is_empty() else set()
    series = {s: curves.series(curves.select(metrics, variants), runs, s, "acc_top1", x, smoothing)
              for s in splits if s in present}
    # a panel where no run has two evaluations draws a dot per run, no curve: left out (the tables hold the numbers)
    shown = [s for s, df in series.items() if not df.is_empty() and int(df.group_by("path").len()["len"].max()) > 1]
    if not shown:
        title = ("top-1: one evaluation per run so far (its numbers are in the tables)" if series
                 else "no evaluation rows yet")
        return [{**alt.Chart(alt.Data(values=[])).mark_text().properties(title=title).to_dict()}]
    # a panel's key names its selections in Vega expressions: a number, never a split's name from the logs
    return [panel_spec(series[split], key=f"top1_{i}", title=f"Top-1 on {split}", y_title="top-1", x=x, seeds=seeds,
                       palette=palette, width=width, smoothed=smoothing > 0, bounds=(0.0, 1.0))
            for i, split in enumerate(shown)]


def scalar_chart(metrics, runs, scalar: str, variants=None, x="step", smoothing=0.0, seeds="each run",
                 log_scale=False, palette=None, width=WIDTH) -> Spec:
    """Any logged scalar, named as curves.scalars() names it ("test loss", "train lr", ...)."""
    options = curves.scalars(metrics)
    if scalar not in options:
        raise ValueError(f"no logged scalar {scalar!r}; the logs hold {', '.join(options) or 'none'}")
    split, column = options[scalar]
    df = curves.series(curves.select(metrics, variants), runs, split, column, x, smoothing)
    return finish([panel_spec(df, key="scalar", title=f"{column} on {split}", y_title=column, x=x, seeds=seeds,
                              log_scale=log_scale, palette=palette, width=width, smoothed=smoothing > 0)])


def temperature_chart(metrics, runs, variants=None, x="step", seeds="each run", palette=None,
                      width=WIDTH) -> Spec | None:
    """Learned attention temperature tau: each run's mean across layers, band = +- std across layers."""
    sel = curves.select(metrics, variants)
    mean = curves.series(sel, runs, "train", "tau_mean", x)
    if mean.is_empty():
        return None
    std = curves.series(sel, runs, "train", "tau_std", x).select("path", "step", pl.col("value").alias("std"))
    df = mean.join(std, on=["path", "step"], how="left").with_columns(
        (pl.col("value") - pl.col("std")).alias("low"), (pl.col("value") + pl.col("std")).alias("high"))
    return finish([panel_spec(df, key="tau", y_title="tau", x=x, seeds=seeds, palette=palette, width=width,
                              title="Learned attention temperature (mean across layers, band: +-std across layers)")])


def main_charts(metrics, runs, variants=None, splits=("train_200", "test"), x="step", smoothing=0.0,
                seeds="each run", log_scale=False, scalar=None, palette=None, width=WIDTH) -> dict[str, Spec]:
    """The charts a comparison shows: loss, accuracy, temperature where runs learned one, and
    the chosen scalar (`dashboard` stacks them with one linked legend)."""
    common = dict(x=x, seeds=seeds, palette=palette, width=width)
    charts = {"loss": loss_chart(metrics, runs, variants, smoothing=smoothing, log_scale=log_scale, **common),
              "accuracy": accuracy_chart(metrics, runs, variants, splits, smoothing=smoothing, **common)}
    tau = temperature_chart(metrics, runs, variants, **common)
    if tau is not None:
        charts["temperature"] = tau
    if scalar and scalar in curves.scalars(metrics):
        charts["scalar"] = scalar_chart(metrics, runs, scalar, variants, smoothing=smoothing, **common)
    return charts


def _panels(spec: dict) -> list[dict]:
    """A chart's panels (each an hconcat of plot and readout), unstacked."""
    return [p for part in spec["vconcat"] for p in _panels(part)] if "vconcat" in spec else [spec]


def dashboard(charts: dict[str, Spec]) -> Spec:
    """The panels stacked in one chart: one legend, and a click on it highlights in every panel."""
    parts = []
    for c in charts.values():
        spec = c.spec  # its data sets as held (frames): made rows once, by the dashboard's to_dict
        panels = copy.deepcopy([{k: v for k, v in p.items() if k not in ("params", "$schema", "config", "resolve",
                                                                          "datasets")} for p in _panels(spec)])
        # the data are not copied (they are only read from here on): a copy of every run's rows cost more than the rest
        panels[0] = {**panels[0], "datasets": dict(spec["datasets"]),
                     YDOMAINS: {p["name"]: p["value"] for p in spec.get("params", []) if p["name"].startswith("ydomain_")}}
        parts += panels
    # one colour scale for every panel (Vega-Lite shares one legend and one range): the union of theirs
    colours = _colour_encodings(parts)
    pairs = dict(pair for c in colours for pair in zip(c["scale"]["domain"], c["scale"]["range"]))
    rank = lambda g: PALETTE.index(pairs[g]) if pairs[g] in PALETTE else len(PALETTE)  # the palette's order
    pairs = {g: pairs[g] for g in sorted(pairs, key=rank)}
    for c in colours:
        c["scale"] = {"domain": list(pairs), "range": list(pairs.values())}
        if isinstance(c.get("legend"), dict):
            c["legend"]["values"] = list(pairs)
    return finish(parts, "vconcat", spacing=28)


def _colour_encodings(spec) -> list[dict]:
    """Every colour encoding with an explicit scale in a spec."""
    colours = [(n.get("encoding") or {}).get("color") for n in nodes(spec)]
    return [c for c in colours if isinstance(c, dict) and isinstance(c.get("scale"), dict) and "domain" in c["scale"]]


def layer_temperature_chart(metrics: pl.DataFrame, variants=None, runs: pl.DataFrame | None = None,
                            palette: dict | None = None) -> Spec | None:
    """Learned attention temperature of every layer at the run's last logged step (as the original's
    get_all_taus.py read them from a checkpoint); None when no run logged them."""
    df = curves.layer_temperatures(curves.select(metrics, variants))
    if df.is_empty():
        return None
    runs = runs if runs is not None else pl.DataFrame()
    seed = pl.col("seed").cast(pl.String).fill_null("?")
    df = df.with_columns(curves._who(runs, "group", pl.col("variant")).alias("group"),
                         curves._who(runs, "name", pl.format("{} s{}", "variant", seed)).alias("name")).drop("path")
    shown = sorted(df["group"].unique().to_list())
    base = alt.Chart(df).encode(alt.X("layer:O", title="layer"), alt.Y("tau:Q", title="tau", scale=alt.Scale(zero=False)),
                                color(shown, palette), detail="name:N")
    tooltip = [alt.Tooltip("name:N", title="run"), "step:Q", "layer:O", alt.Tooltip("tau:Q", format=".4f")]
    chart = alt.layer(base.mark_line(), base.mark_point(filled=True, size=40).encode(tooltip=tooltip)).properties(
        title="Learned attention temperature per layer (last logged step)", width=WIDTH // 2, height=HEIGHT)
    return Spec(chart.to_dict())
