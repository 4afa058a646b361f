"""Real-browser checks: the served notebook and the exported HTML report, in headless Chromium
(Debian's, driven by Playwright; no browser is ever downloaded)."""

import mimetypes
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import REPO
from .helpers import workbench_runs

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
    yield f"http://127.0.0.1:{port}", log
    server.terminate()
    server.wait(timeout=30)


def test_served_notebook_renders_and_reacts_to_a_widget(browser, served, tmp_path):
    url, log = served
    page = browser.new_page(viewport={"width": 1300, "height": 3000})
    page.goto(url)
    page.wait_for_selector(".vega-embed canvas, .vega-embed svg.marks", timeout=90_000)
    page.wait_for_timeout(1500)
    text = page.inner_text("body")
    for heading in ("Training loss", "Top-1 accuracy", "Learned attention temperature", "Findings",
                    "Per variant, across seeds", "Launch runs"):
        assert heading in text
    chart = page.locator(".vega-embed").first
    before = chart.screenshot()
    page.get_by_text("mean and min-max band").click()
    page.wait_for_timeout(3000)
    after = page.locator(".vega-embed").first.screenshot()
    assert before != after  # the loss chart redrew with seed bands
    page.screenshot(path=str(tmp_path / "models.png"), full_page=True)
    assert (tmp_path / "models.png").stat().st_size > 10_000
    errors = [l for l in log.read_text().splitlines() if re.match(r"\[E ", l)]
    assert not errors, errors  # marimo logs every cell that raised


def route_cdn_to_installed_marimo(page):
    """Exported HTML loads marimo's frontend from a CDN: serve it from the installed package."""
    import marimo

    static = Path(marimo.__file__).parent / "_static"

    def handle(route):
        url = route.request.url
        match = re.search(r"/npm/@marimo-team/frontend@[^/]+/dist/(.*?)(\?.*)?$", url)
        path = static / match.group(1) if match else None
        if path and path.is_file():
            route.fulfill(path=str(path), content_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream")
        else:
            route.abort()

    page.route(re.compile(r"^https?://(?!127\.0\.0\.1|localhost).*"), handle)


def test_exported_report_loads_offline_with_its_charts(browser, tmp_path):
    runs = workbench_runs(tmp_path / "runs")
    out = tmp_path / "reports"
    done = subprocess.run([sys.executable, "-m", "nbkit", "report", "--runs-dir", str(runs), "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr
    page = browser.new_page(viewport={"width": 1300, "height": 3000})
    route_cdn_to_installed_marimo(page)
    page.goto((out / "models.html").as_uri())
    page.wait_for_selector(".vega-embed canvas, .vega-embed svg.marks", timeout=90_000)
    text = page.inner_text("body")
    assert "Training loss" in text and "Findings" in text
    assert page.locator(".vega-embed").count() >= 2
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
