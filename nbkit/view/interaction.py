"""What a chart does under the pointer: the readout beside each panel (every shown run's value at
the hovered point, in its colour), and the selections every panel shares (the legend highlight,
each panel's zoom and pan, its hovered point), defined once at the top of a spec. Names from run
folders travel as data only: none is written into a Vega expression."""

from __future__ import annotations

import altair as alt

READOUT = 250  # the readout's width in pixels
READOUT_ROW = 15  # pixels per readout line
HIGHLIGHT = "highlight"


def readout(key: str, x_field: str, x: str, colour: alt.Color, height: int, lowest_first: bool = False) -> dict:
    """Every shown line's value at the hovered point, the best first (highest, or lowest with
    lowest_first: a loss), each in its colour, so a long list's "+ N more" hides the worst: a run's
    last point at or before the hovered x, if it lies within one of its own logging intervals
    (so a run that ended earlier, or logs elsewhere, is left out rather than shown stale)."""
    rows = max(2, (height - 24) // READOUT_ROW)
    hovered = f"isValid(hover_{key}) && isValid(hover_{key}.hx) ? hover_{key}.hx[0] : null"
    at = {"step": "'step ' + format(datum.hx, ',d')", "epoch": "'epoch ' + format(datum.hx, '.2f')",
          "wall time": "format(datum.hx, ',.1f') + ' s'"}[x]
    base = alt.Chart(alt.NamedData(f"{key}-lines")).transform_calculate(hx=hovered, px=f"datum['{x_field}']")
    nearest = (base.transform_filter("datum.hx != null")
               .transform_joinaggregate(first="min(px)", last="max(px)", points="count()", groupby=["name"])
               .transform_calculate(gap="datum.points > 1 ? (datum.last - datum.first) / (datum.points - 1) : 0")
               .transform_filter("datum.px <= datum.hx + 1e-9 && datum.hx - datum.px <= 1.01 * datum.gap + 1e-9")
               .transform_window(recent="row_number()", groupby=["name"], sort=[alt.SortField("px", order="descending")])
               .transform_filter("datum.recent == 1")
               .transform_window(pos="row_number()", sort=[alt.SortField("value", order="ascending" if lowest_first
                                                                         else "descending")])
               .transform_joinaggregate(shown="count()")
               .transform_filter(f"datum.pos <= {rows}")
               .transform_calculate(
                   ypx=f"{READOUT_ROW} + 12 + {READOUT_ROW} * (datum.pos - 1)",
                   more=f"datum.pos == {rows} && datum.shown > {rows}",
                   label=f"datum.pos == {rows} && datum.shown > {rows} ? '+ ' + (datum.shown - {rows} + 1) + ' more'"
                         " : datum.name",
                   number="datum.pos == " + str(rows) + f" && datum.shown > {rows} ? '' : format(datum.value, '.4g')"))
    y = alt.Y("ypx:Q", scale=None, axis=None)
    swatch = nearest.mark_point(shape="square", filled=True, size=60, opacity=1).encode(
        alt.X(value=6), y, colour.legend(None))
    names = nearest.mark_text(align="left", baseline="middle", fontSize=11, limit=READOUT - 70).encode(
        alt.X(value=16), y, text="label:N")
    numbers = nearest.mark_text(align="right", baseline="middle", fontSize=11, fontWeight="bold").encode(
        alt.X(value=READOUT - 4), y, text="number:N")
    header = (base.transform_filter("datum.hx != null").transform_aggregate(hx="max(hx)")
              .transform_calculate(text=at).mark_text(align="left", baseline="middle", fontSize=11, color="#555")
              .encode(alt.X(value=0), alt.Y(value=8), text="text:N"))
    hint = (alt.Chart(alt.Data(values=[{"text": "hover the chart: each run's value"}]))
            .mark_text(align="left", baseline="middle", fontSize=11, color="#999")
            .encode(alt.X(value=0), alt.Y(value=8), text="text:N",
                    opacity=alt.condition(f"isValid(hover_{key}) && isValid(hover_{key}.hx)", alt.value(0), alt.value(1))))
    return alt.layer(hint, header, swatch, names, numbers).properties(
        width=READOUT, height=height, name=f"{key}_readout", view=alt.ViewConfig(strokeWidth=0)).to_dict(validate=False)


def nodes(node):
    """Every dict in a spec, depth first (its data sets aside)."""
    if isinstance(node, dict):
        yield node
        for k, v in node.items():
            if k != "datasets":
                yield from nodes(v)
    elif isinstance(node, list):
        for v in node:
            yield from nodes(v)


def _unit_names(spec: dict) -> list[str]:
    return [n["name"] for n in nodes(spec) if isinstance(n.get("name"), str) and n["name"].endswith(("_lines", "_rules"))]


def selections(spec: dict) -> list[dict]:
    """The selections of every panel in spec, defined once at the top with the views they live
    in: the legend highlight (all panels), and per panel its zoom and its hovered point."""
    names = _unit_names(spec)
    lines = [n for n in names if n.endswith("_lines")]
    out = [{"name": HIGHLIGHT, "select": {"type": "point", "fields": ["group"]}, "bind": "legend", "views": lines}]
    out += [{"name": f"zoom_{n[:-len('_lines')]}", "select": {"type": "interval"}, "bind": "scales", "views": [n]}
            for n in lines]
    out += [{"name": f"hover_{n[:-len('_rules')]}", "views": [n], "select": {
        "type": "point", "fields": ["hx"], "nearest": True, "on": "pointerover", "clear": "pointerout"}}
        for n in names if n.endswith("_rules")]
    return out
