"""Real-browser checks: the served notebook and the exported HTML report, in headless Chromium
(Debian's, driven by Playwright; no browser is ever downloaded)."""

import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import REPO
from .helpers import workbench_runs, write_run

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed (make test installs it where apt-get runs)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    runs = workbench_runs(tmp_path_factory.mktemp("runs"))
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "marimo.log"
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "marimo", "run", str(REPO / "notebooks" / "models.py"),
                                   "--headless", "--host", "127.0.0.1", "--port", str(port), "--no-token",
                                   "--", "--runs-dir", str(runs)], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.3)
    yield f"http://127.0.0.1:{port}", log, runs
    server.terminate()
    server.wait(timeout=30)


def test_served_notebook_reads_hovers_and_keeps_its_settings_while_it_refreshes(browser, served, tmp_path):
    """As a user: the comparison shows on open; hovering the loss chart reads every run's value
    at that step; with auto-refresh on, a run that appears is shown and no setting resets."""
    url, log, runs = served
    page = browser.new_page(viewport={"width": 1300, "height": 3000})
    page.goto(url)
    page.wait_for_selector(".vega-embed canvas, .vega-embed svg.marks", timeout=90_000)
    text = page.inner_text("body")
    for heading in ("This run set", "Differs from the original's protocol", "Curves", "Findings",
                    "Per variant, across seeds", "The original's tables", "Runs", "Launch runs"):
        assert heading in text
    chart = page.locator(".vega-embed").first
    chart.scroll_into_view_if_needed()
    box = chart.bounding_box()
    for dx in (400, 410, 420):  # the loss panel sits under the legend
        page.mouse.move(box["x"] + dx, box["y"] + 200)
        page.wait_for_timeout(200)
    tip = page.locator("#vg-tooltip-element").inner_text()
    assert "resnet18 s0" in tip and "resnet18 s1" in tip and "vitn-12x256-8x8-lt s1" in tip
    selects = page.locator("select")
    x_axis = next(selects.nth(i) for i in range(selects.count()) if "wall time" in selects.nth(i).inner_text())
    x_axis.select_option("epoch")
    steps = page.locator("input[aria-label*='>steps<']")  # the launch form's
    steps.fill("123")
    steps.press("Tab")
    page.wait_for_timeout(1500)
    selects.first.select_option("2s")  # auto-refresh
    write_run(runs, "resnet18", 7, {"train_200": [(100, 0.9)], "test": [(100, 0.45)]}, train=[(10, 2.0)])
    page.get_by_text("fixture-s7").first.wait_for(timeout=30_000)  # the new run, in the tables
    page.wait_for_timeout(2500)  # another tick or two
    assert x_axis.input_value() == "epoch" and selects.first.input_value() == "2s" and steps.input_value() == "123"
    dataset = page.get_by_label("dataset (name or path)")
    dataset.fill(str(tmp_path / "missing.tar.xz"))  # a sweep that fails at once: its error shows on the page
    dataset.press("Tab")
    page.get_by_role("button", name="Launch runs").click()
    page.get_by_text("Launched sweep (pid").first.wait_for(timeout=30_000)
    page.get_by_text("The sweep failed: nbkit sweep: error:").first.wait_for(timeout=60_000)
    errors = [l for l in log.read_text().splitlines() if re.match(r"\[E ", l) or "Traceback" in l]
    assert not errors, errors  # marimo logs every cell that raised


def test_report_renders_whole_with_every_request_refused(browser, tmp_path):
    """A report is one file: with the network off it shows its charts (with the hover readout)
    and tables, and asks for nothing."""
    from nbkit.report import write_report

    path = write_report("models", workbench_runs(tmp_path / "runs"), tmp_path / "reports")
    page = browser.new_page(viewport={"width": 1300, "height": 3000})
    asked = []

    def refuse(route):
        if route.request.url.startswith("file:"):
            return route.continue_()
        asked.append(route.request.url)
        route.abort()

    page.route("**/*", refuse)
    page.goto(path.as_uri())
    page.wait_for_selector("#curves canvas, #curves svg.marks", timeout=30_000)
    box = page.locator("#curves").bounding_box()
    for dx in (400, 410):
        page.mouse.move(box["x"] + dx, box["y"] + 200)
        page.wait_for_timeout(200)
    assert "vitn-12x256-8x8-lt s1" in page.locator("#vg-tooltip-element").inner_text()
    text = page.inner_text("body")
    for heading in ("Comparison: models", "This run set", "Findings", "Per variant, across seeds", "Runs"):
        assert heading in text
    assert page.locator(".wide table").count() == 3 and page.locator("input, select, button").count() <= 1  # the chart menu
    assert asked == []
