"""The epochs page as a reader sees it, in headless Chromium (Debian's; no browser is downloaded):
the held-out chart's legend drawn whole, and one sign for the loss against its trend in the
charts' axes, the drop table's cells and the findings' words."""

import re
from pathlib import Path

import pytest

from tests.analysis.test_epochs_view import SEEDS, plant_controls
from tests.view.test_browser import CHROMIUM, browser  # noqa: F401 (the fixture)

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed (make test installs it where apt-get runs)")


def test_the_epochs_page_draws_its_legend_whole_and_one_sign_for_the_drop(browser, tmp_path):  # noqa: F811
    from nbkit.view.report import write_report

    plant_controls(tmp_path / "runs", seeds=SEEDS)
    path = write_report("epochs", tmp_path / "runs", tmp_path / "reports", dataset="cifar10")
    page = browser.new_page(viewport={"width": 1300, "height": 3000})
    page.goto(path.as_uri())
    page.wait_for_selector("svg.marks", timeout=30_000)
    page.wait_for_timeout(500)
    drawn = page.locator("svg text").all_text_contents()
    assert "held-out images (never trained on)" in drawn, [t for t in drawn if t.startswith("held")]
    assert not [t for t in drawn if t.startswith("held-out") and t.endswith("…")]
    label = page.locator("svg text", has_text="held-out images (never trained on)").first.bounding_box()
    column = page.locator("h2", has_text="Held-out images at the same steps").bounding_box()  # the page's text column
    assert label["x"] + label["width"] <= column["x"] + column["width"] + 1  # drawn inside it, not cut at its edge
    assert "loss against trend" in drawn  # the charts' axis: the loss against its trend...
    ticks = [t for t in drawn if re.fullmatch(r"[+\-−]\d+%", t)]
    assert any(t.startswith(("-", "−")) for t in ticks)  # ...below it after an epoch end: negative
    body = page.inner_text("body")
    # the table and the words give the planted 15% drop the same sign as the chart
    assert re.search(r"resnet18\s+3\s+20\s+\d+\s+-1[3-6]\.\d% ± ", body), body[:3000]
    assert re.search(r"the training loss lies -1[3-6]\.\d%", body)
    assert "drop +" not in body
