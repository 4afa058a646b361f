"""A run whose process is gone shows "interrupted", with how to resume it, where people read its
state: the Runs table of a report, opened in Chromium. While its process lives it is "running"."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nbkit.rundir.reader import read_runs
from tests.view.test_browser import CHROMIUM, browser  # noqa: F401 (the browser fixture)


def start_run(runs: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nbkit", "train", "toy-dilated", "--dataset", "synthetic",
                             "--max-iter", "100000", "--eval-every", "50000", "--batch-size", "16", "--device", "cpu",
                             "--runs-dir", str(runs), "--set", "tailor_num_classes=true", "eval_batch_size=256"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_logged(runs: Path) -> None:
    """Until the run has logged a train row (its config, status and first window written)."""
    deadline = time.time() + 120
    while time.time() < deadline:
        logs = list(runs.glob("synthetic/toy-dilated/*/metrics.jsonl"))
        if logs and logs[0].read_text().strip() and json.loads(logs[0].parent.joinpath("status.json").read_text())["step"]:
            return
        time.sleep(0.2)
    raise AssertionError("the run logged nothing in 120 s")


def test_a_killed_run_reads_interrupted_with_how_to_resume(tmp_path):
    runs = tmp_path / "runs"
    proc = start_run(runs)
    try:
        wait_logged(runs)
        assert read_runs(runs)[1]["state"].to_list() == ["running"]
    finally:
        proc.send_signal(signal.SIGKILL)  # no handler runs: its status.json still says "running"
        proc.wait()
    (status,) = runs.glob("synthetic/toy-dilated/*/status.json")
    assert json.loads(status.read_text())["state"] == "running"
    table = read_runs(runs)[1]
    assert table["state"].to_list() == ["interrupted"]
    assert f"nbkit train --resume {status.parent}" in table["reason"][0]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_the_runs_table_says_interrupted_and_why(browser, tmp_path):  # noqa: F811
    from nbkit.view.report import write_report

    runs = tmp_path / "runs"
    proc = start_run(runs)
    try:
        wait_logged(runs)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    path = write_report("models", runs, tmp_path / "reports")
    page = browser.new_page(viewport={"width": 1400, "height": 2000})
    page.goto(path.as_uri())
    table = page.locator("table").filter(has_text="Run id").first
    headers = table.locator("th").all_text_contents()
    cells = table.locator("tbody tr").first.locator("td").all_text_contents()
    row = dict(zip([h.strip() for h in headers], [c.strip() for c in cells]))
    assert row["State"] == "interrupted", row
    assert "nbkit train --resume" in row["Why it ended"], row
