"""A runs directory is data from whoever can write it: its strings never run as script in a
report, its links never make nbkit write elsewhere, its registry entries never get a process
signalled, and nothing from it reaches a terminal unescaped."""

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import warnings
from pathlib import Path

import pytest

from nbkit.cli import build_parser, main
from nbkit.rundir.reader import read_runs
from nbkit.sweeps import background
from nbkit.view import report
from tests.helpers import write_run

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCRIPT = '<img src="x" onerror="alert(document.title)">'
DATASET = f"d{SCRIPT}"
QUOTED = "bob's \"toy\""  # a variant named after its config file, bob's toy.yml


def hostile_runs(root: Path) -> Path:
    """Runs whose every string shown in a report carries markup: script in the dataset name, label,
    device and batch size, a javascript: link, `<!--<script>`, quotes in variant names."""
    for variant, seed in ((QUOTED, 0), (QUOTED, 1), ("v<!--<script>", 0)):
        run = write_run(root, "x", seed, {"train_200": [(5, 0.5), (10, 0.6)], "test": [(5, 0.3), (10, 0.4 + seed / 100)]},
                        train=[(5, 2.0), (10, 1.8)], dataset="d")
        config = json.loads((run / "config.json").read_text())
        config.update(variant=variant, label=f"{SCRIPT} [click](javascript:alert(2)) <!--<script>", device=SCRIPT,
                      dataset={"name": DATASET, "source": "<!--<script>"},
                      settings={"max_iter": 10, "batch_size": "<b onmouseover=alert(3)>16", "eval_every": 5})
        (run / "config.json").write_text(json.dumps(config))
    return root


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make test installs it where apt-get runs)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def test_no_script_from_a_run_folder_runs_in_a_report_and_every_chart_renders(browser, tmp_path):
    path = report.write_report("models", hostile_runs(tmp_path / "runs"), tmp_path / "out")
    page = browser.new_page(viewport={"width": 1300, "height": 3000})
    alerts, errors = [], []
    page.on("dialog", lambda d: (alerts.append(d.message), d.dismiss()))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.wait_for_selector("#curves svg.marks", timeout=30_000)
    page.locator("#curves").scroll_into_view_if_needed()
    box = page.locator("#curves").bounding_box()
    for dx in (400, 410, 420):  # the loss panel's hover readout names every line, quotes and all
        page.mouse.move(box["x"] + dx, box["y"] + 200)
        page.wait_for_timeout(200)
    tip = page.locator("#curves svg text").all_text_contents()
    page.wait_for_timeout(500)
    assert alerts == [] and errors == [], (alerts, errors)
    assert f"{QUOTED} s0" in tip and "v<!--<script> s0" in tip, tip
    text = page.inner_text("body")
    assert SCRIPT in text and "The charts failed" not in text  # shown as text, not run
    assert page.locator("a[href^='javascript']").count() == 0 and page.locator("img").count() == 0


def test_a_report_inlines_json_and_markdown_as_data(tmp_path):
    page = report.document(report.COMPARISONS["models"], read_runs(hostile_runs(tmp_path)), script="")
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert len(scripts) == 2 and all("<" not in s for s in scripts)  # no '</script>' or '<!--' for the parser
    rest = re.sub(r"<script>.*?</script>", "", page, flags=re.S)
    assert "<img" not in rest and "<b " not in rest and "<!--" not in rest and 'href="javascript' not in rest
    assert '&lt;img src="x" onerror=' in rest  # shown, as text


def test_a_quote_in_a_variant_name_leaves_its_figures_drawable(tmp_path):

    metrics, runs = read_runs(hostile_runs(tmp_path))
    from nbkit.view import comparison_view

    view = comparison_view.build_view(metrics, runs, DATASET, [QUOTED])
    view.charts["loss"].save(tmp_path / "loss.svg")  # what `nbkit report` exports; Vega refused the quote before
    assert "<svg" in (tmp_path / "loss.svg").read_text()


def test_a_report_replaces_links_planted_at_its_names_never_writes_through_them(tmp_path, monkeypatch):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)
    for name in (".models.html.tmp", "models.html", "figures/models-loss.png", "figures/models-accuracy.svg"):
        (out / name).symlink_to(victim)
    runs = tmp_path / "runs"
    for seed in (0, 1):
        write_run(runs, "toy-dilated", seed, {"train_200": [(5, 0.5)], "test": [(5, 0.3)]}, train=[(5, 2.0)])
    monkeypatch.setattr(report, "COMPARISONS", {"models": report.COMPARISONS["models"]})  # one comparison's figures
    written = report.export_all(runs, out)
    assert victim.read_text() == "precious"
    assert {p.name for p in written} >= {"models.html", "models-loss.png", "models-accuracy.svg"}
    assert all(p.is_file() and not p.is_symlink() for p in written)
    assert not [p for p in out.rglob(".*") if p.name != ".models.html.tmp"]  # no temporary file left


@pytest.mark.filterwarnings("ignore:.*not readable JSON:UserWarning")
def test_a_run_never_writes_through_a_link_in_its_folder(tmp_path):
    from nbkit import resolve
    from nbkit.training.trainer import train

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    run = tmp_path / "run"
    run.mkdir()
    for name in ("metrics.jsonl", "status.json"):
        (run / name).symlink_to(victim)
    name, s = resolve("toy-dilated", dataset="synthetic", batch_size=16, max_iter=2, eval_every=2,
                      tailor_num_classes=True, eval_batch_size=256)
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        train(name, s, run_dir=run, device="cpu")
    assert victim.read_text() == "precious"
    assert not (run / "status.json").is_symlink() and json.loads((run / "status.json").read_text())["state"] == "failed"


# --- the notebook's stop button and launch form ----------------------------------------------

def registry_entry(root: Path, proc: subprocess.Popen, **extra) -> dict:
    """An entry naming a live process with exactly what /proc shows about it (as anyone can read)."""
    entry = {"pid": proc.pid, "start_ticks": background._proc_start(proc.pid),
             "command": background._proc_cmdline(proc.pid), **extra}
    (root / ".sweeps").mkdir(exist_ok=True)
    (root / ".sweeps" / f"{proc.pid}.json").write_text(json.dumps(entry))
    return entry


def test_a_forged_entry_never_gets_another_process_signalled(tmp_path, monkeypatch):
    """Entries copying a live process's pid, start time and command line from /proc: a process
    that is not `nbkit sweep`, and one that looks like it but was not launched here (no token)."""
    fake = tmp_path / "fake" / "nbkit"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text("import time; time.sleep(60)\n")
    others = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]),
              subprocess.Popen([sys.executable, "-m", "nbkit", "sweep", "models"], cwd=fake.parent,
                               env={**os.environ, "PYTHONPATH": str(fake.parent)})]
    sent, real_kill = [], os.kill
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)) if sig else real_kill(pid, 0))
    try:
        deadline = time.time() + 30
        while background._proc_cmdline(others[1].pid) != [sys.executable, "-m", "nbkit", "sweep", "models"]:
            assert time.time() < deadline and others[1].poll() is None
            time.sleep(0.05)
        for p in others:
            registry_entry(tmp_path, p, token="0" * 32)
        assert background.active_sweeps(tmp_path) == [] and background.stop_sweeps(tmp_path) == 0
        assert sent == [] and all(p.poll() is None for p in others)
    finally:
        for p in others:
            real_kill(p.pid, signal.SIGKILL)
            p.wait()


def test_another_users_sweeps_on_a_shared_runs_directory_are_left_alone(tmp_path, monkeypatch):
    """Their entries cannot be removed (PermissionError) nor their processes signalled: the
    sweep cell and the stop button go on without them."""
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        registry_entry(tmp_path, stranger)
        (tmp_path / ".sweeps" / "1.json").write_text(json.dumps({"pid": 2**22 + 5}))  # an ended sweep's
        monkeypatch.setattr(background.os, "getuid", lambda: os.stat(tmp_path).st_uid + 1)

        def refused(self, *args, **kwargs):
            raise PermissionError(13, "Permission denied", str(self))

        monkeypatch.setattr(Path, "unlink", refused)
        assert background.active_sweeps(tmp_path) == [] and background.stop_sweeps(tmp_path) == 0
        assert stranger.poll() is None and len(list((tmp_path / ".sweeps").glob("*.json"))) == 2
    finally:
        stranger.kill()
        stranger.wait()


def test_launch_arguments_cannot_pass_for_options(tmp_path):
    with pytest.raises(ValueError, match="unknown comparison or variant '--label=pwned'"):
        background.launch_sweep(tmp_path, ["--label=pwned", "toy-dilated"], "synthetic", max_iter=1, seeds=1)
    with pytest.raises(ValueError, match="Ray address expects auto or HOST:PORT, got '--set=max_iter=1'"):
        background.sweep_args(tmp_path, ["toy-dilated"], "synthetic", 1, 1, backend="ray", address="--set=max_iter=1")
    assert not (tmp_path / ".sweeps").exists()  # nothing launched, nothing registered
    args = background.sweep_args(tmp_path, ["models", "toy-dilated"], "--set=max_iter=1", 5, 2, device="cpu")
    parsed = build_parser().parse_args(["sweep", *args])
    assert parsed.names == ["models", "toy-dilated"] and parsed.dataset == "--set=max_iter=1" and parsed.set is None
    assert (parsed.max_iter, parsed.seeds, parsed.device, parsed.runs_dir) == (5, 2, "cpu", tmp_path)


def test_a_stopped_sweep_shows_as_stopped_not_failed(tmp_path):
    from nbkit.errors import STOPPED

    log = tmp_path / "sweep.log"
    log.write_text("starting toy-dilated seed 0 -> x\nstopped toy-dilated seed 0 (resume by running the sweep again)\n"
                   "sweep: 0 done, 0 skipped, 0 failed, 1 stopped\n")
    proc = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({STOPPED})"])
    proc.wait()
    background._CHILDREN[proc.pid] = proc
    info = {"pid": proc.pid, "log": str(log), "runs_dir": str(tmp_path)}
    assert background.sweep_state(info)["state"] == "stopped"
    del background._CHILDREN[proc.pid]  # after a notebook restart: from its log alone
    assert background.sweep_state(info) == {"state": "stopped", "error": None, "runs": []}


# --- terminals ----------------------------------------------------------------------------------

def test_names_from_an_archive_reach_the_terminal_escaped(tmp_path, capsys):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as t:
        for name in ("test/a/\x1b]0;pwned\x07\x1b[2J.png", "train/a/0.png"):  # the first image names the error
            info = tarfile.TarInfo(name)
            info.size = len(b"not an image")
            t.addfile(info, io.BytesIO(b"not an image"))
    capsys.readouterr()
    assert main(["train", "toy-dilated", "--dataset", str(archive), "--runs-dir", str(tmp_path / "r"),
                 "--data-dir", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "test/a/\\x1b]0;pwned\\x07\\x1b[2J.png will not decode" in err


def test_an_error_that_only_introduces_its_reason_keeps_the_reason(tmp_path, capsys, monkeypatch):
    def fails(*args, **kwargs):
        raise ValueError("Vega-Lite to PNG conversion failed:\nError: Access path missing closing quote: bob's\n  at l")

    monkeypatch.setattr(report, "export_all", fails)
    assert main(["report", "--runs-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == ("nbkit report: error: Vega-Lite to PNG conversion failed: "
                                               "Error: Access path missing closing quote: bob's")


def test_a_registry_entry_that_is_a_link_or_a_fifo_is_never_read(tmp_path):
    """A link to /dev/zero (endless) or a FIFO (which would block) among the launched sweeps: the
    sweep cell and the stop button go on at once without them."""
    import threading

    (tmp_path / ".sweeps").mkdir()
    os.symlink("/dev/zero", tmp_path / ".sweeps" / "zero.json")
    os.mkfifo(tmp_path / ".sweeps" / "fifo.json")
    found = {}
    reader = threading.Thread(target=lambda: found.update(active=background.active_sweeps(tmp_path),
                                                         stopped=background.stop_sweeps(tmp_path)), daemon=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reader.start()
        reader.join(timeout=60)
    assert not reader.is_alive() and found == {"active": [], "stopped": 0}
