"""Strings from run folders reach the epochs comparison's markdown as text: a dataset name or a
label carrying a link, a style sheet or a script shows as itself, never as markup (marimo keeps
<a href> and <style> in its markdown; the report keeps http links)."""

import html
import json
import re
import warnings

from nbkit.design.comparisons import COMPARISONS
from nbkit.rundir.reader import read_runs
from nbkit.view import epochs_view, report
from nbkit.view.escape import markdown_html
from tests.helpers import write_run

MARKUP = '<style>h2{color:red}</style>[x](https://evil.example) <a href="https://evil.example">y</a> <script>z'
ACTIVE = ("<style", "<a ", "<script")  # a style sheet, a link (markdown or HTML), a script


def _named(run, dataset):
    config = json.loads((run / "config.json").read_text())
    config["dataset"]["name"] = dataset  # what a run folder says its dataset is (its folder name aside)
    (run / "config.json").write_text(json.dumps(config))


def _runs(root, dataset):
    """Runs of an epochs variant with train rows across several epoch ends, and one of another
    variant in a second dataset (where the epochs comparison has no runs yet)."""
    train = [(s, 2.0 - s / 1000 - 0.1 * (s % 40 < 10)) for s in range(10, 401, 10)]
    for seed in (0, 1):
        _named(write_run(root, "resnet18", seed, {"test": [(200, 0.3), (400, 0.4)]}, train=train, dataset="ds",
                         steps_per_epoch=40, label=MARKUP), dataset)
    _named(write_run(root, "resnet50", 0, {"test": [(200, 0.3)]}, train=train, dataset="other", steps_per_epoch=40),
           dataset + " 2")


def test_markup_in_every_field_the_epochs_comparison_shows_stays_text(tmp_path):
    _runs(tmp_path, MARKUP)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics, runs = read_runs(tmp_path)
    for dataset in (MARKUP, MARKUP + " 2"):  # the sections with runs, and "No runs yet"
        shown = "".join(markdown_html(f"## {s.title}\n{s.text}") for s in epochs_view.sections(metrics, runs, dataset))
        assert not [a for a in ACTIVE if a in shown], shown
    (no_runs,) = [s for s in epochs_view.sections(metrics, runs, MARKUP + " 2") if s.title == "No runs yet"]
    visible = re.sub(r"<[^>]+>", "", markdown_html(no_runs.text))
    assert html.unescape(visible).startswith(f"No runs of the epochs comparison on {MARKUP} 2 yet")  # shown as typed
    page = report.document(COMPARISONS["epochs"], (metrics, runs), MARKUP, script="")
    page = re.sub(r"<script>(vegaEmbed\(.*?)?</script>", "", page, flags=re.S)  # its own scripts
    assert "The drop at epoch ends" in page and page.count("<style") == 1  # its own style sheet alone
    assert not [a for a in ACTIVE[1:] if a in page] and MARKUP not in page
