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

# a stand-in for anywidget's model: get(name), on/off(event, f), send(message) (kept in window.sent
# for the Python side), and for the Relay: set(state) as a trait change, custom(message) as a message
PAGE = """async (esm) => {
  window.mod = await import(URL.createObjectURL(new Blob([esm], {type: "text/javascript"})));
  const listeners = {};
  const values = {spec: {}, key: "", revision: 0};
  window.sent = [];
  window.model = {get: (n) => values[n], on: (e, f) => (listeners[e] = listeners[e] || []).push(f),
                  off: (e, f) => { listeners[e] = (listeners[e] || []).filter((g) => g !== f); },
                  send: (m) => window.sent.push(m),
                  set: (state) => { Object.assign(values, state); (listeners["change:spec"] || []).forEach((f) => f()); },
                  custom: (m) => (listeners["msg:custom"] || []).forEach((f) => f(m))};
  window.el = document.createElement("div");
  document.body.appendChild(window.el);
  window.mod.default.render({model: window.model, el: window.el});
}"""


class Relay:
    """The widget's Python side (LiveChart) wired to the stand-in model in the page, as marimo's and
    Jupyter's comms wire them: its trait changes and messages go to the page, the page's messages
    come back; `whole` and `rows` count what travelled."""

    def __init__(self, page, monkeypatch):
        from nbkit.view.livechart import LiveChart

        self.page, self.chart, self.out, self.revision = page, LiveChart(), [], 0
        self.whole, self.rows, self.sizes, self.removed = 0, 0, [], 0
        monkeypatch.setattr(self.chart, "send", lambda content, buffers=None: self.out.append(content))

    def show(self, spec: dict, key: str) -> None:
        self.chart.show(spec, key)
        self.flush()

    def flush(self) -> None:
        import json

        for _ in range(3):  # the page may answer (a view that missed rows asks for the whole chart)
            if self.chart.revision != self.revision:
                self.revision, self.whole = self.chart.revision, self.whole + 1
                self.page.evaluate("(s) => window.model.set(s)", {"spec": self.chart.spec, "key": self.chart.key,
                                                                   "revision": self.chart.revision})
            for message in self.out:
                self.rows += message.get("type") == "rows"
                self.removed += sum(len(d["remove"]) for d in message.get("datasets", {}).values())
                self.sizes.append(len(json.dumps(message)))
                self.page.evaluate("(m) => window.model.custom(m)", message)
            self.out.clear()
            self.page.wait_for_timeout(50)
            for message in self.page.evaluate("() => window.sent.splice(0)"):
                self.chart._on_msg(self.chart, message, [])


def loss_ticks(page) -> list[str]:
    """The tick labels of the loss panel's x axis, as drawn (the first axis of the SVG that is an x axis)."""
    return page.evaluate("""() => {
      const axis = [...document.querySelectorAll('g.role-axis')].find(g => (g.getAttribute('aria-label') || '').startsWith('X-axis'));
      return [...axis.querySelectorAll('g.role-axis-label text')].map(t => t.textContent);
    }""")


def draws(page) -> int:
    return page.evaluate("() => Number(window.el.dataset.draws || 0)")


def spec_for(tmp_path, steps: int, every: int = 100):
    from nbkit.rundir.reader import read_runs
    from nbkit.view.charts import loss_chart

    runs = tmp_path / f"runs{steps}"
    write_run(runs, "toy-dilated", 0, {"test": [(s, 0.1) for s in (1000, 2000)]},
              train=[(s, 7.0 - s / 1000) for s in range(every, steps + 1, every)], steps_per_epoch=100_000)
    metrics, table = read_runs(runs)
    return loss_chart(metrics, table).to_dict()


def test_a_wheel_zoom_stays_drawn_through_new_data_and_a_redrawn_spec(browser, tmp_path, monkeypatch):  # noqa: F811
    from nbkit.view.livechart import _esm

    first, more = spec_for(tmp_path, 5000), spec_for(tmp_path, 5100)
    page = browser.new_page(viewport={"width": 1200, "height": 700})
    page.set_content("<html><body></body></html>")
    page.evaluate(PAGE, _esm())
    relay = Relay(page, monkeypatch)
    relay.show(first, "k")
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

    relay.show(more, "k")  # one new row: only the rows that changed travel, and go in place
    page.wait_for_function("(n) => Number(window.el.dataset.draws || 0) > n", arg=1)
    assert (relay.whole, relay.rows) == (1, 1)
    assert 5100 in page.evaluate("() => window.el.nbkitView.data('loss-lines').map(r => r.step)")
    assert page.evaluate("() => window.el.dataset.updates") == "1"  # in place: the chart was not drawn again
    fitted = next(p["value"] for p in more["params"] if p["name"] == "ydomain_loss")
    assert fitted != next(p["value"] for p in first["params"] if p["name"] == "ydomain_loss")
    assert page.evaluate("() => window.el.nbkitView.signal('ydomain_loss')") == fitted  # the fitted range moved with it
    assert loss_ticks(page) == zoomed

    moved = copy.deepcopy(more)  # the same chart with another title: drawn again whole
    moved["title"] = "the same chart, redrawn"
    before = draws(page)
    relay.show(moved, "k")
    page.wait_for_function("(n) => Number(window.el.dataset.draws || 0) > n", arg=before)
    assert page.get_by_text("the same chart, redrawn").count() == 1
    assert loss_ticks(page) == zoomed

    relay.show(more, "other")  # other choices: a fresh chart, unzoomed
    page.wait_for_function("(n) => Number(window.el.dataset.draws || 0) > n", arg=before + 1)
    assert loss_ticks(page)[0] == "0" and "5,000" in loss_ticks(page)


def drawn_rows(page, el: str, name: str, columns: list[str]) -> list:
    return sorted(page.evaluate("([el, name, columns]) => window[el].nbkitView.data(name).map("
                                "(t) => JSON.stringify(columns.map((c) => t[c] ?? null)))", [el, name, columns]))


def sent_rows(spec: dict, name: str, columns: list[str]) -> list:
    import json

    return sorted(json.dumps([r.get(c) for c in columns], separators=(",", ":")) for r in spec["datasets"][name])


def test_new_rows_travel_alone_and_every_view_draws_what_a_fresh_chart_would(browser, tmp_path, monkeypatch):  # noqa: F811
    """A run that logs on: each refresh sends only the rows that changed (far less than the chart),
    and what is drawn equals the whole new chart's data, across a change of thinning (a run's last
    point drops out as the next is logged); a view drawn later (a page reconnecting) asks for what
    it missed and draws the same."""
    from nbkit.view.livechart import _esm

    page = browser.new_page(viewport={"width": 1200, "height": 700})
    page.set_content("<html><body></body></html>")
    page.evaluate(PAGE, _esm())
    relay = Relay(page, monkeypatch)
    # 300 points and on, every other one drawn: each new point replaces the last one drawn but one
    specs = [spec_for(tmp_path, steps, every=10) for steps in (3000, 3010, 3020, 3030, 3040)]
    relay.show(specs[0], "k")
    page.wait_for_function("() => Number(window.el.dataset.draws || 0) >= 1")
    for n, spec in enumerate(specs[1:], start=1):
        relay.show(spec, "k")
        page.wait_for_function("(n) => Number(window.el.dataset.rowUpdates || 0) >= n", arg=n)
        columns = list(spec["datasets"]["loss-lines"][0])
        assert drawn_rows(page, "el", "loss-lines", columns) == sent_rows(spec, "loss-lines", columns), n
    assert (relay.whole, relay.rows) == (1, 4) and relay.removed >= 2  # a last point replaced, not only added to
    assert max(relay.sizes) * 10 < len(str(specs[-1]))  # a row or two, not the chart

    page.evaluate("() => { window.el2 = document.createElement('div'); document.body.appendChild(window.el2); "
                  "window.mod.default.render({model: window.model, el: window.el2}); }")
    relay.flush()  # its request for the rows it missed: the whole chart again
    page.wait_for_function("() => window.el2.nbkitView !== undefined && Number(window.el2.dataset.draws || 0) >= 1")
    assert relay.whole == 2
    columns = list(specs[-1]["datasets"]["loss-lines"][0])
    assert drawn_rows(page, "el2", "loss-lines", columns) == sent_rows(specs[-1], "loss-lines", columns)


def readout_lines(page) -> list[str]:
    """The hover readout's names top down, as drawn (runs' names and '+ N more')."""
    return page.evaluate(r"""() => [...document.querySelectorAll('svg text')]
      .filter(t => /^(toy-dilated s\d+|\+ \d+ more)$/.test(t.textContent))
      .map(t => [t.getBoundingClientRect().top, t.textContent]).sort((a, b) => a[0] - b[0]).map(p => p[1])""")


def test_the_readout_lists_the_best_runs_first_lowest_loss_and_highest_top1(browser, tmp_path, monkeypatch):  # noqa: F811
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
    Relay(page, monkeypatch).show(spec, "k")
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


def test_a_chart_wider_than_its_output_area_scrolls_to_its_readout(browser, tmp_path, monkeypatch):  # noqa: F811
    """In an output area narrower than the chart (JupyterLab with its file browser open), the
    readout's values are reached by scrolling the chart sideways, not cut off."""
    from nbkit.view.livechart import _esm

    page = browser.new_page(viewport={"width": 1400, "height": 800})
    page.set_content("<html><body><div id='area' style='width: 700px; overflow: hidden'></div></body></html>")
    page.evaluate(PAGE.replace("document.body.appendChild", "document.getElementById('area').appendChild"), _esm())
    Relay(page, monkeypatch).show(spec_for(tmp_path, 500), "k")
    page.wait_for_function("() => Number(window.el.dataset.draws || 0) >= 1")
    hint = page.get_by_text("hover the chart: each run's value")
    area = page.locator("#area").bounding_box()
    assert hint.bounding_box()["x"] + 100 > area["x"] + area["width"]  # the readout starts beyond the area's edge
    page.evaluate("() => { window.el.scrollLeft = window.el.scrollWidth; }")
    box = hint.bounding_box()
    assert area["x"] <= box["x"] and box["x"] + box["width"] <= area["x"] + area["width"] + 1  # scrolled into view
