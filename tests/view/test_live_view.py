"""The live view in a real browser (Debian's Chromium, driven by Playwright): one line per run,
a refresh that finds nothing costs no redraw, new rows keep the zoom, new runs appear in an
empty runs directory, and what the launch form shows after a reload is what the sweep gets."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.helpers import write_run
from tests.view.test_browser import CHROMIUM, browser, free_port, wait_for_port  # noqa: F401, F811 (the browser fixture)

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed (make test installs it where apt-get runs)")


def shown(page, text: str) -> bool:
    """Whether the page shows text anywhere (marimo's widgets live in shadow roots; this pierces them)."""
    return page.get_by_text(text).count() > 0


def serve(mode: str, runs: Path, log: Path, notebook: str = "models"):
    """`marimo run|edit notebooks/<notebook>.py` on runs, until the port answers; the process."""
    port = free_port()
    out = open(log, "w")
    server = subprocess.Popen([sys.executable, "-m", "marimo", mode, str(REPO / "notebooks" / f"{notebook}.py"),
                               "--headless", "--host", "127.0.0.1", "--port", str(port), "--no-token", "--",
                               "--runs-dir", str(runs)], stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    wait_for_port(port)
    return server, f"http://127.0.0.1:{port}"


def draws(page) -> int:
    """How many times the live chart has drawn itself."""
    return page.evaluate("() => Math.max(0, ...[...document.querySelectorAll('*')].flatMap(e => e.shadowRoot ? "
                         "[...e.shadowRoot.querySelectorAll('[data-draws]')] : []).concat([...document.querySelectorAll("
                         "'[data-draws]')]).map(e => Number(e.dataset.draws)))")


def chart_call(page, script: str):
    """Evaluate script with `view`, the live chart's Vega view."""
    return page.evaluate("(script) => { const all = [...document.querySelectorAll('*')].flatMap(e => e.shadowRoot ? "
                         "[...e.shadowRoot.querySelectorAll('[data-draws]')] : []).concat([...document.querySelectorAll("
                         "'[data-draws]')]); const view = all[0].nbkitView; return eval(script); }", script)


X_TICKS = ("[...[...all[0].querySelectorAll('g.role-axis')].find(g => (g.getAttribute('aria-label') || '')"
           ".startsWith('X-axis')).querySelectorAll('g.role-axis-label text')].map(t => t.textContent)")


def wait_for(predicate, seconds: float, what: str):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"waited {seconds} s for {what}")


def test_one_line_per_run_cheap_refresh_and_zoom_that_survives_new_rows(browser, tmp_path):  # noqa: F811
    """Three toy-dilated seed-0 runs of other lengths are three lines, three readout entries and
    three table rows; with auto-refresh on, ticks that find nothing redraw nothing; a new row is
    drawn without losing the user's zoom or settings."""
    runs = tmp_path / "runs"
    for steps in (30, 400, 1500):
        write_run(runs, "toy-dilated", 0, {"test": [(s, 0.1 + s / 10_000) for s in (10, 20, 30)]},
                  train=[(s, 7.0 - s / 100) for s in (10, 20, 30)], settings={"max_iter": steps})
    server, url = serve("run", runs, tmp_path / "marimo.log")
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(url)
        wait_for(lambda: draws(page) >= 1, 90, "the chart")
        for name in ("toy-dilated · max_iter=30", "toy-dilated · max_iter=400", "toy-dilated · max_iter=1500"):
            assert page.get_by_text(name, exact=True).count() >= 1  # the per-variant table: three groups, not one
        drawn = chart_call(page, "view.data('loss-lines').map(r => r.name)")
        assert sorted(set(drawn)) == ["toy-dilated · max_iter=1500 s0", "toy-dilated · max_iter=30 s0",
                                      "toy-dilated · max_iter=400 s0"]
        chart = page.locator("[data-draws]").first
        chart.scroll_into_view_if_needed()
        box = chart.bounding_box()
        for dx in (300, 320):  # the pointer over the loss panel
            page.mouse.move(box["x"] + dx, box["y"] + 150)
            page.wait_for_timeout(300)
        readout = page.locator("svg text").all_text_contents()
        at = min(readout.index(n) for n in drawn if n in readout)  # the readout: a line per run, then the values
        assert sorted(readout[at:at + 3]) == sorted(set(drawn)), readout
        assert readout[at + 3:at + 6] == ["6.900"] * 3  # each run's own loss there (not their sum)
        x_axis = page.locator("select").filter(has_text="wall time").first
        x_axis.select_option("epoch")
        wait_for(lambda: draws(page) >= 2, 30, "the redraw on the epoch axis")
        page.locator("select").filter(has_text="30s").first.select_option("2s")  # auto-refresh
        page.wait_for_timeout(1000)
        before = draws(page)
        page.wait_for_timeout(6000)  # three ticks that find nothing
        assert draws(page) == before
        ticks = lambda: [float(t) for t in chart_call(page, X_TICKS)]  # the loss panel's x axis, as drawn
        assert max(ticks()) > 2.5
        chart_call(page, "view.signal('zoom_loss_x', [0.5, 2.5]).runAsync().then(() => true)")  # the user zooms
        wait_for(lambda: ticks() and 0.5 <= min(ticks()) and max(ticks()) <= 2.5, 10, "the zoom drawn")
        run = next(runs.glob("synthetic/toy-dilated/*"))
        with open(run / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": 40, "split": "train", "time": 4.0, "loss": 6.5}) + "\n")
        wait_for(lambda: draws(page) > before, 20, "the new row")
        assert chart_call(page, "view.signal('zoom_loss_x')") == [0.5, 2.5]
        assert ticks() and 0.5 <= min(ticks()) and max(ticks()) <= 2.5, ticks()  # still zoomed where it is drawn
        assert x_axis.input_value() == "epoch"
        assert 40 in chart_call(page, "view.data('loss-lines').map(r => r.step)")
        assert chart_call(page, "Number(all[0].dataset.rowUpdates || 0)") >= 1  # the new rows alone travelled
        fill_form(page, [], str(tmp_path / "missing.tar.xz"), 4, 2, 1, "cpu")  # a sweep that fails at once
        launch_form(page).get_by_role("button", name="Launch runs").click()
        page.get_by_text("The sweep failed: nbkit sweep: error:").first.wait_for(timeout=60_000)
        errors = [l for l in (tmp_path / "marimo.log").read_text().splitlines() if re.match(r"\[E ", l) or "Traceback" in l]
        assert not errors, errors
    finally:
        server.terminate()
        server.wait(timeout=30)


def launch_form(page):
    return page.locator("form").filter(has=page.get_by_role("button", name="Launch runs"))


def form_shows(page) -> dict:
    """What the launch form shows: the variants ticked, the dataset, steps, evaluation interval,
    seeds and device, as a user reads them off the page."""
    form = launch_form(page)
    texts = form.locator("input[type=text]")
    number = lambda i: int(texts.nth(i).input_value().replace(",", ""))
    chips = form.locator("button[aria-haspopup=dialog] span.font-mono").all_text_contents()
    return {"variants": chips, "dataset": texts.nth(0).input_value(), "max_iter": number(1), "eval_every": number(2),
            "warmup": number(3), "seeds": number(4), "device": form.locator("select").first.input_value()}


def fill_form(page, variants_off: list[str], dataset: str, steps: int, every: int, seeds: int, device: str,
              warmup: int = 0) -> None:
    form = launch_form(page)
    for name in variants_off:
        form.locator("button[aria-haspopup=dialog]").first.click()
        page.locator("[role=dialog]").get_by_role("option", name=name, exact=True).click()
        page.keyboard.press("Escape")
    texts = form.locator("input[type=text]")
    for i, value in enumerate((dataset, steps, every, warmup, seeds)):
        texts.nth(i).fill(str(value))
        texts.nth(i).press("Tab")
    form.locator("select").first.select_option(device)


def test_a_launch_after_a_reload_starts_what_the_page_shows_and_its_runs_appear(browser, tmp_path):  # noqa: F811
    """On a runs directory empty when the page opened: edit the form, move the runs directory
    away and back, reload the page, launch; the sweep gets exactly the form on screen, its status
    moves by itself, and its run shows within two refreshes of logging."""
    runs, other = tmp_path / "runs", tmp_path / "other"
    runs.mkdir()
    server, url = serve("edit", runs, tmp_path / "marimo.log")
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(url)
        page.get_by_text("No runs yet").first.wait_for(timeout=90_000)
        assert page.get_by_text(f"python -m nbkit sweep models --seeds 2 --runs-dir {runs}").count()  # how to get some
        fill_form(page, ["resnet18"], "synthetic", 7, 7, 3, "cpu")  # edited, never launched
        field = page.get_by_label("runs directory")
        for where in (other, runs):
            field.fill(str(where))
            field.press("Tab")
            page.wait_for_timeout(1500)
        page.reload()
        page.get_by_text("No runs yet").first.wait_for(timeout=60_000)
        page.wait_for_timeout(2000)
        assert form_shows(page)["max_iter"] == 7  # the edits survived the runs directory and the reload
        fill_form(page, [], "synthetic", 4, 2, 1, "cpu", warmup=500)  # a warm-up longer than the run: refused
        launch_form(page).get_by_role("button", name="Launch runs").click()
        page.get_by_text("The warm-up (500 steps) is not shorter than the run (4 steps)").first.wait_for(timeout=30_000)
        assert not list((runs / ".sweeps").glob("*.json"))
        fill_form(page, [], "synthetic", 4, 2, 1, "cpu")  # what a user sets before pressing Launch
        shown = form_shows(page)
        launch_form(page).get_by_role("button", name="Launch runs").click()
        wait_for(lambda: list((runs / ".sweeps").glob("*.json")), 30, "the sweep's registry entry")
        entry = json.loads(next((runs / ".sweeps").glob("*.json")).read_text())
        request = entry["request"]
        assert {k: request[k] for k in ("variants", "dataset", "max_iter", "eval_every", "warmup", "seeds")} == {
            k: shown[k] for k in ("variants", "dataset", "max_iter", "eval_every", "warmup", "seeds")}, (shown, request)
        assert f"--device={shown['device']}" in entry["args"]
        page.get_by_text("Launched sweep (pid").first.wait_for(timeout=30_000)
        logged = lambda: [p for p in runs.glob("synthetic/*/*/metrics.jsonl") if p.stat().st_size > 0]
        wait_for(logged, 240, "the launched run's first rows")
        first_row = time.time()
        page.get_by_text(f"{shown['variants'][0]} s0", exact=True).first.wait_for(timeout=60_000)
        delay = time.time() - first_row
        assert delay < 15, delay  # ticks every 2 s while the sweep runs: shown a tick or two after it logs
        page.get_by_text("done", exact=True).first.wait_for(timeout=240_000)  # the sweep's state, auto-refresh off
        assert not page.get_by_text("No runs yet").count()
    finally:
        server.terminate()
        server.wait(timeout=30)
