"""The tuning section as a reader sees it, in a report opened in headless Chromium: the answer at
the top, the budget curves' axes, the ranking and chosen-trial cells, and the trials' brush."""

import shutil
from pathlib import Path

import pytest

from nbkit.design.comparisons import Comparison
from tests.helpers import trial_run

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]

# a: steady and middling; b: mostly poor with two excellent trials, so more trials favour b;
# b's trial 0 has the best test top-1 of all but a poor val top-1: never the chosen one
A = [0.50, 0.52, 0.50, 0.51, 0.50, 0.52]
B = [0.10, 0.20, 0.90, 0.15, 0.85, 0.20]


def planted(root):
    for variant, scores in (("a", A), ("b", B)):
        for t, v in enumerate(scores):
            trial_run(root, variant, t, val={20: v, 40: v - 0.01}, test={20: v - 0.05, 40: 0.99 if (variant, t) == ("b", 0)
                                                                          else v - 0.06})
    untuned = trial_run(root, "a", 99, val={40: 0.4}, test={40: 0.4}, study="fixed")  # an ordinary run of a
    cfg = (untuned / "config.json").read_text().replace('"tune"', '"not_tune"')
    (untuned / "config.json").write_text(cfg)
    trial_run(root, "b", 99, val={40: 0.3}, test={40: 0.3}, study="fixed")
    cfg = (root / "ds" / "b" / "tune-fixed-t099" / "config.json")
    cfg.write_text(cfg.read_text().replace('"tune"', '"not_tune"'))
    return root


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_the_tuning_section_of_a_report(tmp_path):
    from playwright.sync_api import sync_playwright

    from nbkit.view.report import write_report

    comparison = Comparison("ab", "Does a beat b once each is tuned?", ("a", "b"), "nothing", source="x.toml")
    path = write_report(comparison, planted(tmp_path / "runs"), tmp_path / "out")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 4000})
        page.goto(path.as_uri())
        page.wait_for_selector("#section0 svg.marks", timeout=30_000)
        text = page.inner_text("body")
        flip = "the order flips after 1 trial: a leads up to 1, b from 2"
        assert f"Tuned (6 trials or more each, chosen on val): {flip}." in text
        assert "Untuned (the comparison's own runs), a leads on test top-1 at the best val step: the conclusion " \
               "does not hold once each variant is tuned." in text
        axes = page.locator("#section0 svg text").all_text_contents()
        assert "trials (n)" in axes and "expected best val top-1" in axes
        cells = [c.strip() for c in page.locator("table td").all_text_contents()]
        assert "a > b" in cells and "b > a" in cells
        chosen = page.locator("table", has_text="launch with 3 seeds")
        row_b = [c.strip() for c in chosen.locator("tr", has_text="trial 2").locator("td").all_text_contents()]
        assert row_b[:5] == ["b", "6 finished", "trial 2", "0.9000", "0.8500"]  # not trial 0's test-only 0.99
        # the trials chart: dragging across the val top-1 strip keeps only the lines in that range
        trials = page.locator("[id^=section]", has=page.locator("text=val top-1 (drag to filter)"))
        lines = lambda: trials.locator("svg path[aria-roledescription='line mark']").count()
        before = lines()
        box = trials.bounding_box()
        trials.scroll_into_view_if_needed()
        box = trials.bounding_box()
        y = box["y"] + 60
        page.mouse.move(box["x"] + 700, y)
        page.mouse.down()
        page.mouse.move(box["x"] + 900, y, steps=5)
        page.mouse.up()
        page.wait_for_timeout(300)
        assert before == 12 and 0 < lines() < before
        browser.close()


def test_a_tuned_trials_settings_launch_with_more_seeds(tmp_path):
    from nbkit.rundir.reader import read_runs
    from nbkit.sweeps import background
    from nbkit.view import present
    from nbkit.view.tuning_view import presets

    metrics, runs = read_runs(planted(tmp_path / "runs"))
    options = presets(metrics, runs, present.configs(runs))
    assert options == {"a: trial 1 (val top-1 0.5200)": {"variants": ["a"],
                                                          "settings": "warmup_max_lr=0.002 use_augmentation=false"},
                       "b: trial 2 (val top-1 0.9000)": {"variants": ["b"],
                                                          "settings": "warmup_max_lr=0.003 use_augmentation=true"}}
    args = background.sweep_args(tmp_path, ["toy-dilated"], "synthetic", 4, 3, device="cpu",
                                 settings=options["b: trial 2 (val top-1 0.9000)"]["settings"])
    assert args[-2:] == ["--set=warmup_max_lr=0.003", "--set=use_augmentation=true"]
    for bad, said in (("lr=0.1", "unknown setting 'lr'"), ("--label=x", "unknown setting '--label'"),
                      ("warmup_max_lr", "--set expects key=value"), ("warmup_num_steps=-3", "warmup_num_steps")):
        with pytest.raises(ValueError, match=said):
            background.sweep_args(tmp_path, ["toy-dilated"], "synthetic", 4, 3, settings=bad)


def test_the_notebook_shows_the_tuning_section_and_its_launch_pick(tmp_path):
    from tests.view.test_notebooks import export

    html = export("models", planted(tmp_path / "runs"), tmp_path / "nb.html", extra=["--comparison", "all runs"])
    for seen in ("Tuning: expected best after n trials", "Tuning: the chosen trial per variant",
                 "the order flips after 1 trial", "launch with a tuned trial&#39;s settings",
                 "b: trial 2 (val top-1 0.9000)"):
        assert seen in html or seen.replace("&#39;", "'") in html, seen


def test_summary_tuning_prints_the_budget_table(tmp_path, capsys):
    from nbkit.cli import main

    assert main(["summary", "--tuning", "--runs-dir", str(planted(tmp_path / "runs"))]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in out.splitlines()
            if line.startswith("| a ") or line.startswith("| b ")}
    assert rows["a"][0] == "6" and rows["a"][1].startswith("0.5083 (") and rows["a"][4:7] == ["trial 1", "0.52", "0.47"]
    assert rows["b"][1].startswith("0.4000 (") and rows["b"][4:7] == ["trial 2", "0.9", "0.85"]
    assert "the order flips after 1 trial" in out
    assert main(["summary", "--tuning", "--runs-dir", str(tmp_path / "runs"), "--dataset", "other"]) == 0
    assert "No tuning trials under" in capsys.readouterr().out


def test_the_jupyter_panel_launches_a_tuned_trials_settings_in_one_pick():
    """The panel's launch form offers each variant's chosen trial; picking one fills the variant and
    its settings (what Launch then sends), as the notebook's pick does."""
    from nbkit.view.panel import Panel
    from tests.conftest import REPO

    panel = Panel("all runs", runs_dir=str(REPO / "examples" / "runs-tune"))
    picks = [o for o in panel.launch_preset.options if "trial" in o]
    assert len(picks) >= 3, panel.launch_preset.options
    pick = next(o for o in picks if o.startswith("resnet18:"))
    panel.launch_preset.value = pick
    assert panel.launch_variants.value == ("resnet18",)
    assert panel.launch_settings.value == panel.presets[pick]["settings"] and "=" in panel.launch_settings.value
