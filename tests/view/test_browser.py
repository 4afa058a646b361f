"""Real-browser checks of the exported HTML report, in headless Chromium (Debian's, driven by
Playwright; no browser is ever downloaded). The served notebooks: tests/view/test_live_view.py."""

import shutil
import socket
import time
from pathlib import Path

import pytest

from tests.helpers import workbench_runs

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


def wait_for_port(port: int, seconds: float = 60) -> None:
    """Until a server accepts connections on the local port (or the time is up: the test then fails where it connects)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.3)


def test_report_renders_whole_with_every_request_refused(browser, tmp_path):
    """A report is one file: with the network off it shows its charts (with the hover readout)
    and tables, and asks for nothing."""
    from nbkit.view.report import write_report

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
    page.wait_for_selector("#curves svg.marks", timeout=30_000)
    page.locator("#curves").scroll_into_view_if_needed()
    box = page.locator("#curves").bounding_box()
    for dx in (400, 410):
        page.mouse.move(box["x"] + dx, box["y"] + 200)
        page.wait_for_timeout(200)
    assert "vitn-12x256-8x8-lt s1" in page.locator("#curves svg text").all_text_contents()  # the hover readout
    text = page.inner_text("body")
    for heading in ("Comparison: models", "The answer from these runs", "This run set", "Per variant, across seeds", "Runs"):
        assert heading in text
    assert page.locator(".wide table").count() == 3 and page.locator("input, select, button").count() <= 1  # the chart menu
    assert asked == []
