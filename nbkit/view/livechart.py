"""A chart that updates in place: an anywidget (marimo and JupyterLab alike) holding one Vega-Lite
spec. Setting `spec` redraws it; while `key` stays the same (the same variants and settings,
new data only) the user's zoom, pan and legend highlight are carried over to the redrawn chart.
Vega, Vega-Lite and Vega-Embed travel inside the widget (vl-convert's bundled copy, as in the
reports), so it renders with no network."""

from __future__ import annotations

import functools
import json

import anywidget
import traitlets

# the selections a redraw keeps: zoom and pan (interval selections bound to scales) and the
# legend highlight, i.e. their signals and the data sets that store them
_RENDER = """
const KEEP = /^(zoom_|highlight)/;

async function draw(model, el, last) {
  const spec = model.get("spec");
  const key = model.get("key");
  let state = null;
  if (last.view && last.key === key) {
    try {
      state = last.view.getState({signals: (n) => KEEP.test(n), data: (n) => KEEP.test(n), recurse: true});
    } catch (e) { state = null; }
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
    el.nbkitView = result.view;  // for tests and the curious: the Vega view drawn here
    el.dataset.draws = String(Number(el.dataset.draws || 0) + 1);
    if (state) {
      try { await last.view.setState(state).runAsync(); } catch (e) { /* a selection the new spec lacks */ }
    }
  } catch (e) {
    target.textContent = "The chart failed: " + e;
  }
}

function render({ model, el }) {
  const last = {view: null, key: null};
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
        if spec != self.spec or key != self.key:
            with self.hold_sync():
                self.key = key
                self.spec = json.loads(json.dumps(spec))  # plain JSON types: what the comm carries
