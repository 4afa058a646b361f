"""The live chart in Chromium, read off what is drawn. Its zoom: the widget (nbkit/view/livechart.py,
the one marimo and the Jupyter panel both show) is rendered in a plain page with a stand-in for
the widget's model, the user zooms with the wheel, and new data (in place) or a redrawn spec (the
fitted y range moved) must leave the x axis's tick labels where the zoom put them. Its hover
readout: the best runs first, for each measure."""

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
              train=[(s, 7.0 - s / 1000) for s in range(100, steps + 1, 100)], steps_per_epoch=100_000)
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
    assert page.evaluate("() => window.el.dataset.updates") == "1"  # in place: the chart was not drawn again
    fitted = next(p["value"] for p in more["params"] if p["name"] == "ydomain_loss")
    assert fitted != next(p["value"] for p in first["params"] if p["name"] == "ydomain_loss")
    assert page.evaluate("() => window.el.nbkitView.signal('ydomain_loss')") == fitted  # the fitted range moved with it
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


def readout_lines(page) -> list[str]:
    """The hover readout's names top down, as drawn (runs' names and '+ N more')."""
    return page.evaluate(r"""() => [...document.querySelectorAll('svg text')]
      .filter(t => /^(toy-dilated s\d+|\+ \d+ more)$/.test(t.textContent))
      .map(t => [t.getBoundingClientRect().top, t.textContent]).sort((a, b) => a[0] - b[0]).map(p => p[1])""")


def test_the_readout_lists_the_best_runs_first_lowest_loss_and_highest_top1(browser, tmp_path):  # noqa: F811
    """Sixteen runs, more than the readout has lines: the runs with the lowest loss head the loss
    panel's readout and those with the highest top-1 the top-1 panel's; the worst hide in '+ N more'."""
    from nbkit.rundir.reader import read_runs
    from nbkit.view import charts
    from nbkit.view.livechart import _esm

    runs = tmp_path / "runs"
    for seed in range(16):  # seed 0: the lowest loss and the lowest top-1
        write_run(runs, "toy-dilated", seed, {"test": [(s, 0.1 + seed * 0.01 + s / 1e5) for s in (100, 200, 300)]},
                  train=[(s, 2.0 + seed * 0.1 - s / 1000) for s in range(10, 301, 10)])
    metrics, table = read_runs(runs)
    spec = charts.dashboard(charts.main_charts(metrics, table, ["toy-dilated"], splits=("test",))).to_dict()
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    page.set_content("<html><body></body></html>")
    page.evaluate(PAGE, _esm())
    page.evaluate("(spec) => window.model.set(spec, 'k')", spec)
    page.wait_for_function("() => Number(window.el.dataset.draws || 0) >= 1")
    axes = page.locator("g.role-axis[aria-label^=X-axis]")
    for panel, best, worst in ((0, "toy-dilated s0", "toy-dilated s15"), (1, "toy-dilated s15", "toy-dilated s0")):
        box = axes.nth(panel).bounding_box()
        for dx in (0.8, 0.81):
            page.mouse.move(box["x"] + box["width"] * dx, box["y"] - 50)
            page.wait_for_timeout(200)
        lines = readout_lines(page)
        assert lines[0] == best and lines[-1].startswith("+ ") and worst not in lines, (panel, lines)
        numbers = [int(n.split(" s")[1]) for n in lines[:-1]]
        assert numbers == sorted(numbers, reverse=panel == 1), lines


def test_a_chart_wider_than_its_output_area_scrolls_to_its_readout(browser, tmp_path):  # noqa: F811
    """In an output area narrower than the chart (JupyterLab with its file browser open), the
    readout's values are reached by scrolling the chart sideways, not cut off."""
    from nbkit.view.livechart import _esm

    page = browser.new_page(viewport={"width": 1400, "height": 800})
    page.set_content("<html><body><div id='area' style='width: 700px; overflow: hidden'></div></body></html>")
    page.evaluate(PAGE.replace("document.body.appendChild", "document.getElementById('area').appendChild"), _esm())
    page.evaluate("(spec) => window.model.set(spec, 'k')", spec_for(tmp_path, 500))
    page.wait_for_function("() => Number(window.el.dataset.draws || 0) >= 1")
    hint = page.get_by_text("hover the chart: each run's value")
    area = page.locator("#area").bounding_box()
    assert hint.bounding_box()["x"] + 100 > area["x"] + area["width"]  # the readout starts beyond the area's edge
    page.evaluate("() => { window.el.scrollLeft = window.el.scrollWidth; }")
    box = hint.bounding_box()
    assert area["x"] <= box["x"] and box["x"] + box["width"] <= area["x"] + area["width"] + 1  # scrolled into view
