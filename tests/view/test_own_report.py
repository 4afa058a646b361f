"""A comparison of your own is yours in its report, as a reader sees it in Chromium: its findings
measure margins against its file's baseline, nothing is measured against the original's protocol
or its puzzle, and no text promises what a static page cannot do ("Columns sort."); a panel of a
dot per run is left out."""

from pathlib import Path

import pytest

from tests.helpers import write_run
from tests.view.test_browser import CHROMIUM, browser  # noqa: F401 (the browser fixture)

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed (make test installs it where apt-get runs)")


def test_your_comparison_in_its_report_has_its_baseline_and_none_of_the_originals_notes(browser, tmp_path):  # noqa: F811
    from nbkit.design.comparisons_file import load_study
    from nbkit.view.report import write_report

    file = tmp_path / "mine.toml"
    file.write_text('[comparisons.mine]\nquestion = "Does toy-dilated keep up?"\n'
                    'variants = ["resnet18", "toy-dilated", "resnet18-gn"]\nbaseline = "toy-dilated"\n'
                    'expected = "within 2 points"\n')
    runs = tmp_path / "runs"
    for variant, acc in (("resnet18", 0.5), ("toy-dilated", 0.3), ("resnet18-gn", 0.4)):
        write_run(runs, variant, 0, {"test": [(100, acc), (200, acc)], "train_200": [(200, acc)]},
                  train=[(s, 2.0 - s / 1000) for s in range(10, 201, 10)], settings={"max_iter": 200})
    path = write_report(load_study(file).comparisons["mine"], runs, tmp_path / "reports")
    page = browser.new_page(viewport={"width": 1300, "height": 2400})
    page.goto(path.as_uri())
    page.wait_for_selector("#curves svg.marks", timeout=30_000)
    text = page.inner_text("body")
    assert "Does toy-dilated keep up?" in text and "What you expected (mine.toml)" in text and "within 2 points" in text
    assert str(tmp_path) not in text  # no local path in a report
    assert "Its margin over toy-dilated is +0.2000" in text  # the file's baseline, not resnet18
    assert "over resnet18" not in text
    assert "Differs from the original's protocol" not in text and "Same protocol as the original" not in text
    assert "200 steps" in text  # the run set's protocol is still said
    assert "puzzle" not in text and "Columns sort" not in text
    assert "keep the original's 1000-way head" in text  # why toy-dilated's loss reads high beside its top-1
    drawn = page.locator("#curves svg text").all_text_contents()
    assert "Top-1 on test" in drawn  # two evaluations per run: a curve
    assert "Top-1 on train_200" not in drawn  # one per run: a dot each, nothing to follow; left out


def test_the_models_report_says_it_has_no_vits_when_it_has_none(browser, tmp_path):  # noqa: F811
    """The models comparison asks about ViTs: a run set with none says the question cannot be
    answered here, before any finding; one with a ViT does not."""
    from nbkit.view.report import write_report

    runs = tmp_path / "runs"
    for variant, acc in (("resnet18", 0.5), ("toy-dilated", 0.3)):
        write_run(runs, variant, 0, {"test": [(100, acc), (200, acc)]}, train=[(100, 2.0), (200, 1.5)])
    page = browser.new_page(viewport={"width": 1300, "height": 2400})
    page.goto(write_report("models", runs, tmp_path / "reports").as_uri())
    answer = page.locator("ul").first.inner_text()
    assert answer.splitlines()[0].startswith("No ViT runs in this set: the question cannot be answered here")
    write_run(runs, "vitn-12x256-8x8", 0, {"test": [(100, 0.2), (200, 0.25)]}, train=[(100, 2.0), (200, 1.8)])
    page.goto(write_report("models", runs, tmp_path / "reports").as_uri())
    answer = page.locator("ul").first.inner_text()
    assert "No ViT runs" not in answer and "No evaluated runs of vit-12x256-8x8" in answer
