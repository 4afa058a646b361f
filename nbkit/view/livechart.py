"""A chart that updates in place: an anywidget (marimo and JupyterLab alike) holding one Vega-Lite
spec. `show(spec, key)` draws it; while `key` stays the same (the same variants and settings) and
the spec differs only in its data and fitted y ranges, only the rows that changed travel (a
custom message: rows removed, rows added, ranges moved) and the drawn chart takes them in place,
keeping the user's zoom, pan and legend highlight. The `spec` trait holds the chart as last sent
whole, with its `revision`; a view that missed a change (drawn anew, reconnected) asks for the
whole chart again. Vega, Vega-Lite and Vega-Embed travel inside the widget (vl-convert's bundled
copy, as in the reports), so it renders with no network."""

from __future__ import annotations

import functools
import json

import anywidget
import traitlets

# the selections a redraw keeps: zoom and pan (interval selections bound to scales) and the
# legend highlight, i.e. their signals and the data sets that store them
_RENDER = """
const KEEP = /^highlight/;  // the legend highlight: its signals and store, put back whole
const ZOOM = /^zoom_[A-Za-z0-9]+_[A-Za-z0-9_]+$/;  // a zoom's domain per field: zoom_loss_step, zoom_top1_0_value

const FITTED = /^ydomain_/;  // a panel's fitted y range: a parameter that follows the data

// what a spec draws apart from its data and fitted y ranges (both change in place)
function withoutData(spec) {
  const {datasets, params, ...rest} = spec || {};
  return JSON.stringify([rest, (params || []).map((p) => FITTED.test(p.name) ? p.name : p)]);
}

function fitted(spec) { return ((spec && spec.params) || []).filter((p) => FITTED.test(p.name)); }

// a row by the values of its columns as sent (Vega adds fields of its own to the rows it holds)
function keyOf(row, columns) { return JSON.stringify(columns.map((c) => row[c] ?? null)); }

// the zoom of every panel as the user left it: each zoom signal's domain (what the drawn scales follow)
function zooms(view) {
  const out = {};
  for (const name of Object.keys(view.getState({signals: (n) => ZOOM.test(n), data: () => false}).signals || {})) {
    if (!name.endsWith("_tuple") && !name.endsWith("_modify") && !name.endsWith("_translate")
        && !name.endsWith("_zoom") && !name.endsWith("_fields") && !name.endsWith("_tuple_fields")) {
      const value = view.signal(name);
      if (Array.isArray(value) && value.length === 2) { out[name] = value; }
    }
  }
  return out;
}

function drawn(el, inPlace) {
  el.dataset.draws = String(Number(el.dataset.draws || 0) + 1);
  if (inPlace) { el.dataset.updates = String(Number(el.dataset.updates || 0) + 1); }
}

async function draw(model, el, last) {
  const spec = model.get("spec");
  const key = model.get("key");
  const revision = model.get("revision");
  const shape = withoutData(spec);
  last.rows = {};  // the rows' keys are taken afresh from what is drawn next
  // new data only (same chart, same choices): change the data sets in place; zoom, pan and the
  // highlight are untouched, since nothing else is redrawn
  if (last.view && last.key === key && last.shape === shape && spec && spec.datasets) {
    try {
      for (const [name, values] of Object.entries(spec.datasets)) {
        last.view.change(name, last.view.changeset().remove(() => true).insert(structuredClone(values)));
      }
      for (const p of fitted(spec)) { last.view.signal(p.name, p.value); }
      await last.view.runAsync();
      last.revision = revision;
      drawn(el, true);
      return;
    } catch (e) { el.dataset.inPlaceError = String(e); /* redrawn whole below */ }
  }
  let state = null, zoomed = {};
  if (last.view && last.key === key) {
    try {
      state = last.view.getState({signals: (n) => KEEP.test(n), data: (n) => KEEP.test(n), recurse: true});
      zoomed = zooms(last.view);
    } catch (e) { state = null; zoomed = {}; }
  }
  if (last.view) { last.view.finalize(); last.view = null; }
  el.replaceChildren();
  last.revision = revision;
  if (!spec || !Object.keys(spec).length) { return; }
  const target = document.createElement("div");
  el.appendChild(target);
  try {
    // SVG: the readout's text is in the page (searchable, and what a browser test reads)
    const result = await window.vegaEmbed(target, spec, {renderer: "svg", actions: {export: true, source: false,
                                                                                    compiled: false, editor: false}});
    last.view = result.view;
    last.key = key;
    last.shape = shape;
    el.nbkitView = result.view;  // for tests and the curious: the Vega view drawn here
    if (state) {
      try { await last.view.setState(state).runAsync(); } catch (e) { /* a selection the new spec lacks */ }
    }
    // the zoom through its domain signals, as a wheel or drag sets them (setState would put back
    // the signals' values and the selection's store, but not the scales drawn from them; and a
    // signal set again to the value it holds propagates nothing)
    for (const [name, value] of Object.entries(zoomed)) {
      try { last.view.signal(name, value); } catch (e) { /* a panel the new spec lacks */ }
    }
    if (Object.keys(zoomed).length) { await last.view.runAsync(); }
    drawn(el, false);
  } catch (e) {
    target.textContent = "The chart failed: " + e;
  }
}

// the rows of a data set as drawn, by key (taken once, then kept up to date with each change);
// null where two rows share a key (a change could not say which to remove)
function rowsOf(last, name, columns) {
  const id = JSON.stringify(columns);
  if (!last.rows[name] || last.rows[name].id !== id) {
    const tuples = last.view.data(name);
    const byKey = new Map(tuples.map((t) => [keyOf(t, columns), t]));
    last.rows[name] = byKey.size === tuples.length ? {id, byKey} : null;
  }
  return last.rows[name];
}

// the rows that changed since the revision this view draws: applied in place, or (a change missed,
// a row not found) the whole chart asked for again
async function change(model, el, last, msg) {
  if (msg.type === "redraw") {
    if (last.revision !== model.get("revision")) { await draw(model, el, last); }
    return;
  }
  if (msg.type !== "rows" || msg.revision <= last.revision) { return; }
  if (!last.view || msg.base !== last.revision || msg.key !== last.key) {
    model.send({type: "resync", revision: last.revision});
    return;
  }
  try {
    const changes = [];
    for (const [name, delta] of Object.entries(msg.datasets)) {
      const rows = rowsOf(last, name, delta.columns);
      const gone = rows ? delta.remove.map((r) => rows.byKey.get(keyOf(r, delta.columns))) : [null];
      if (gone.some((t) => t === undefined || t === null)) { throw new Error("a row to remove is not drawn"); }
      changes.push([name, rows, gone, delta]);
    }
    for (const [name, rows, gone, delta] of changes) {
      const added = structuredClone(delta.insert);
      delta.remove.forEach((r) => rows.byKey.delete(keyOf(r, delta.columns)));
      added.forEach((r) => rows.byKey.set(keyOf(r, delta.columns), r));
      last.view.change(name, last.view.changeset().remove(gone).insert(added));
    }
    for (const [name, value] of Object.entries(msg.signals || {})) { last.view.signal(name, value); }
    await last.view.runAsync();
    last.revision = msg.revision;
    drawn(el, true);
    el.dataset.rowUpdates = String(Number(el.dataset.rowUpdates || 0) + 1);
  } catch (e) {
    el.dataset.inPlaceError = String(e);
    last.rows = {};
    last.revision = -1;  // whatever comes next draws the whole chart
    model.send({type: "resync", revision: -1});  // drawn anew from the whole chart
  }
}

function render({ model, el }) {
  // wider than its output area (a narrow window, JupyterLab's file browser open): it scrolls
  // sideways rather than cutting the readout's values off at the edge
  el.style.overflowX = "auto";
  el.style.maxWidth = "100%";
  const last = {view: null, key: null, shape: null, revision: -1, rows: {}};
  let queue = Promise.resolve();
  const redraw = () => { queue = queue.then(() => draw(model, el, last)); };
  const onMessage = (msg) => { queue = queue.then(() => change(model, el, last, msg || {})); };
  model.on("change:spec", redraw);
  model.on("msg:custom", onMessage);
  redraw();
  // drawn from the chart as last sent whole: rows that changed since then are asked for
  model.send({type: "resync", revision: model.get("revision")});
  return () => {
    model.off("change:spec", redraw);
    model.off("msg:custom", onMessage);
    if (last.view) { last.view.finalize(); }
  };
}

export default { render };
"""

FITTED = "ydomain_"
BIG = 0.5  # a change of more than this share of the rows is sent whole


@functools.cache
def _esm() -> str:
    from nbkit.view import vega

    # the bundle assigns window.vegaEmbed, window.vega and window.vegaLite when the module runs
    return vega.javascript() + "\n" + _RENDER


def _shape(spec: dict) -> str:
    """What a spec draws apart from its data and fitted y ranges (as the widget's withoutData)."""
    rest = {k: v for k, v in spec.items() if k not in ("datasets", "params")}
    return json.dumps([rest, [p["name"] if str(p.get("name", "")).startswith(FITTED) else p
                              for p in spec.get("params", [])]], sort_keys=True, default=str)


def _fitted(spec: dict) -> dict:
    return {p["name"]: p.get("value") for p in spec.get("params", []) if str(p.get("name", "")).startswith(FITTED)}


def _rows_apart(old, new) -> tuple[list[str], list[dict], list[dict]] | None:
    """(columns, rows removed, rows added) from one data set to the next (frames, or rows of the
    same columns), or None where rows cannot be told apart by their values (other columns or
    types, two equal rows, a value that is a list)."""
    import polars as pl

    if isinstance(old, pl.DataFrame) and isinstance(new, pl.DataFrame):
        if old.schema != new.schema:
            return None
        if not new.columns:
            return [], [], []
        removed = old.join(new, on=new.columns, how="anti", nulls_equal=True)
        added = new.join(old, on=new.columns, how="anti", nulls_equal=True)
        if new.height - old.height != added.height - removed.height:  # equal rows: counted apart, not by value
            return None
        return new.columns, removed.to_dicts(), added.to_dicts()
    old, new = _index(old), _index(new)
    if old is None or new is None or (old[0] != new[0] and old[1] and new[1]):
        return None
    return (new[0] or old[0], [old[1][k] for k in old[1].keys() - new[1].keys()],
            [new[1][k] for k in new[1].keys() - old[1].keys()])


def _index(rows) -> tuple[list[str], dict] | None:
    """Rows by the values of their columns (all rows with the same columns), or None where they
    cannot be told apart that way."""
    if not isinstance(rows, list) or (rows and not isinstance(rows[0], dict)):
        return None
    if not rows:
        return [], {}
    columns = list(rows[0])
    try:
        by_key = {tuple(r.values()): r for r in rows if isinstance(r, dict) and list(r) == columns}
    except TypeError:  # an unhashable value
        return None
    return (columns, by_key) if len(by_key) == len(rows) else None


def _json(spec) -> dict:
    return spec.to_dict() if hasattr(spec, "to_dict") else spec


class LiveChart(anywidget.AnyWidget):
    """Show a chart (a Vega-Lite dict, or a charts.Spec whose data are frames); `key` names what it
    shows apart from its data."""

    spec = traitlets.Dict().tag(sync=True)
    key = traitlets.Unicode("").tag(sync=True)
    revision = traitlets.Int(0).tag(sync=True)  # of the data `spec` holds

    def __init__(self, spec: dict | None = None, key: str = "", **kwargs):
        super().__init__(_esm=_esm(), spec=spec or {}, key=key, **kwargs)
        self._shown = self.spec  # the chart the views draw now (at revision _revision), its data as held
        self._revision = 0
        self._shape = _shape(self._shown)
        self.on_msg(self._on_msg)

    def show(self, spec, key: str) -> None:
        """Draw this chart: only its changed rows where the chart and key stay, nothing where it equals what is shown."""
        held = getattr(spec, "spec", spec)  # a charts.Spec's data as held (frames)
        shape = _shape(held)
        if key == self.key and shape == self._shape and self._shown:
            delta = self._delta(held)
            if delta is not None:
                datasets, signals = delta
                self._shown = spec
                if datasets or signals:
                    self._revision += 1
                    self.send({"type": "rows", "key": key, "base": self._revision - 1, "revision": self._revision,
                               "datasets": datasets, "signals": signals})
                return
        self._shown, self._shape = spec, shape
        self._revision += 1
        with self.hold_sync():
            self.key = key
            self.spec = _json(spec)  # plain JSON types (charts build specs from JSON and Python values)
            self.revision = self._revision

    def _delta(self, held: dict) -> tuple[dict, dict] | None:
        """The rows removed and added per data set since the chart shown, and the fitted ranges
        that moved; None where the change is better sent whole."""
        shown = getattr(self._shown, "spec", self._shown)
        old_sets, new_sets = shown.get("datasets") or {}, held.get("datasets") or {}
        if set(old_sets) != set(new_sets):
            return None
        datasets, changed, total = {}, 0, 0
        for name, rows in new_sets.items():
            total += len(rows)
            if rows is old_sets[name]:
                continue
            apart = _rows_apart(old_sets[name], rows)
            if apart is None:
                return None
            columns, removed, added = apart
            if removed or added:
                changed += len(removed) + len(added)
                datasets[name] = {"columns": columns, "remove": removed, "insert": added}
        if changed > BIG * max(total, 1):
            return None
        before = _fitted(shown)
        signals = {k: v for k, v in _fitted(held).items() if before.get(k) != v}
        return datasets, signals

    def _on_msg(self, _widget, content, _buffers) -> None:
        """A view asks for what it missed: the whole chart, where the views' spec is behind."""
        if not isinstance(content, dict) or content.get("type") != "resync" or content.get("revision") == self._revision:
            return
        if self.revision != self._revision:
            with self.hold_sync():
                self.spec = _json(self._shown)
                self.revision = self._revision
        else:
            self.send({"type": "redraw"})
