"""The live chart's zoom in Chromium, read off the drawn axis: the widget (nbkit/view/livechart.py,
the one marimo and the Jupyter panel both show) is rendered in a plain page with a stand-in for
the widget's model, the user zooms with the wheel, and new data (in place) or a redrawn spec (the
fitted y range moved) must leave the x axis's tick labels where the zoom put them."""

import copy
from pathlib import Path

import pytest

from tests.helpers import write_run
from tests.view.test_browser import CHROMIUM, browser  # noqa: F401 (the browser fixture)

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed (make test installs it where apt-get runs)")

# a stand-in for anywidget's model: get(name), on("change:spec", f), and set(spec, key) for the test
PAGE = """async (esm) => {
  const mod = await import(URL.createObjectURL(new Blob([esm], {type: "text/javascript"})));
  const listeners = [];
  const values = {spec: {}, key: ""};
  window.model = {get: (n) => values[n], on: (_, f) => listeners.push(f),
                  set: (spec, key) => { values.spec = spec; values.key = key; listeners.forEach((f) => f()); }};
  window.el = document.createElement("div");
  document.body.appendChild(window.el);
  mod.default.render({model: window.model, el: window.el});
}"""


def loss_ticks(page) -> list[str]:
    """The tick labels of the loss panel's x axis, as drawn (the first axis of the SVG that is an x axis)."""
    return page.evaluate("""() => {
      const axis = [...document.querySelectorAll('g.role-axis')].find(g => (g.getAttribute('aria-label') || '').startsWith('X-axis'));
      return [...axis.querySelectorAll('g.role-axis-label text')].map(t => t.textContent);
    }""")


def draws(page) -> int:
    return page.evaluate("() => Number(window.el.dataset.draws || 0)")


def spec_for(tmp_path, steps: int):
    from nbkit.rundir.reader import read_runs
    from nbkit.view.charts import loss_chart

    runs = tmp_path / f"runs{steps}"
    write_run(runs, "toy-dilated", 0, {"test": [(s, 0.1) for s in (1000, 2000)]},
              train=[(s, 7.0 - s / 1000) for s in range(100, steps + 1, 100)])
    metrics, table = read_runs(runs)
    return loss_chart(metrics, table).to_dict()


def test_a_wheel_zoom_stays_drawn_through_new_data_and_a_redrawn_spec(browser, tmp_path):  # noqa: F811
    from nbkit.view.livechart import _esm

    first, more = spec_for(tmp_path, 5000), spec_for(tmp_path, 5100)
    page = browser.new_page(viewport={"width": 1200, "height": 700})
    page.set_content("<html><body></body></html>")
    page.evaluate(PAGE, _esm())
    page.evaluate("(spec) => window.model.set(spec, 'k')", first)
    page.wait_for_function("() => Number(window.el.dataset.draws || 0) >= 1")
    full = loss_ticks(page)
    assert full[0] == "0" and full[-1] == "5,000", full
    box = page.locator("g.role-axis[aria-label^=X-axis]").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] - 60)  # over the loss panel's plot, above its x axis
    for _ in range(4):
        page.mouse.wheel(0, -200)  # zoom in, as a user does
        page.wait_for_timeout(100)
    zoomed = loss_ticks(page)
    assert zoomed != full and "5,000" not in zoomed, zoomed

    page.evaluate("(spec) => window.model.set(spec, 'k')", more)  # one new row: the data change in place
    page.wait_for_function("(n) => Number(window.el.dataset.draws || 0) > n", arg=1)
    assert 5100 in page.evaluate("() => window.el.nbkitView.data('loss-lines').map(r => r.step)")
    assert loss_ticks(page) == zoomed

    moved = copy.deepcopy(more)  # the same chart with another fitted y range: drawn again whole
    moved["title"] = "the same chart, redrawn"
    before = draws(page)
    page.evaluate("(spec) => window.model.set(spec, 'k')", moved)
    page.wait_for_function("(n) => Number(window.el.dataset.draws || 0) > n", arg=before)
    assert page.get_by_text("the same chart, redrawn").count() == 1
    assert loss_ticks(page) == zoomed

    page.evaluate("(spec) => window.model.set(spec, 'other')", more)  # other choices: a fresh chart, unzoomed
    page.wait_for_function("(n) => Number(window.el.dataset.draws || 0) > n", arg=before + 1)
    assert loss_ticks(page)[0] == "0" and "5,000" in loss_ticks(page)
