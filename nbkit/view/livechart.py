"""A chart that updates in place: an anywidget (marimo and JupyterLab alike) holding one Vega-Lite
spec. Setting `spec` redraws it; while `key` stays the same (the same variants and settings,
new data only) the user's zoom, pan and legend highlight are carried over to the redrawn chart.
Vega, Vega-Lite and Vega-Embed travel inside the widget (vl-convert's bundled copy, as in the
reports), so it renders with no network."""

from __future__ import annotations

import functools

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

async function draw(model, el, last) {
  const spec = model.get("spec");
  const key = model.get("key");
  const shape = withoutData(spec);
  // new data only (same chart, same choices): change the data sets in place; zoom, pan and the
  // highlight are untouched, since nothing else is redrawn
  if (last.view && last.key === key && last.shape === shape && spec && spec.datasets) {
    try {
      for (const [name, values] of Object.entries(spec.datasets)) {
        const text = JSON.stringify(values);
        if (last.data[name] === text) { continue; }
        last.view.change(name, last.view.changeset().remove(() => true).insert(structuredClone(values)));
        last.data[name] = text;
      }
      for (const p of fitted(spec)) { last.view.signal(p.name, p.value); }
      await last.view.runAsync();
      el.dataset.draws = String(Number(el.dataset.draws || 0) + 1);
      el.dataset.updates = String(Number(el.dataset.updates || 0) + 1);
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
    last.data = Object.fromEntries(Object.entries(spec.datasets || {}).map(([n, v]) => [n, JSON.stringify(v)]));
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
    el.dataset.draws = String(Number(el.dataset.draws || 0) + 1);
  } catch (e) {
    target.textContent = "The chart failed: " + e;
  }
}

function render({ model, el }) {
  // wider than its output area (a narrow window, JupyterLab's file browser open): it scrolls
  // sideways rather than cutting the readout's values off at the edge
  el.style.overflowX = "auto";
  el.style.maxWidth = "100%";
  const last = {view: null, key: null, shape: null, data: {}};
  let queue = Promise.resolve();
  const redraw = () => { queue = queue.then(() => draw(model, el, last)); };
  model.on("change:spec", redraw);
  redraw();
  return () => { if (last.view) { last.view.finalize(); } };
}

export default { render };
"""


@functools.cache
def _esm() -> str:
    import vl_convert as vlc

    # the bundle assigns window.vegaEmbed, window.vega and window.vegaLite when the module runs
    return vlc.javascript_bundle() + "\n" + _RENDER


class LiveChart(anywidget.AnyWidget):
    """Show `spec` (a Vega-Lite dict); set `key` to what the chart shows apart from its data."""

    spec = traitlets.Dict().tag(sync=True)
    key = traitlets.Unicode("").tag(sync=True)

    def __init__(self, spec: dict | None = None, key: str = "", **kwargs):
        super().__init__(_esm=_esm(), spec=spec or {}, key=key, **kwargs)

    def show(self, spec: dict, key: str) -> None:
        """Redraw with this spec; a spec equal to the one shown sends nothing."""
        if key != self.key or spec != self.spec:
            with self.hold_sync():
                self.key = key
                self.spec = spec  # plain JSON types already (charts build specs from JSON and Python values)
