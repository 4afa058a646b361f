import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nbkit.cli import main
from nbkit.design.comparisons import COMPARISONS
from tests.conftest import REPO
from tests.helpers import workbench_runs

NOTEBOOKS = list(COMPARISONS)


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    return workbench_runs(tmp_path_factory.mktemp("runs"))


def test_notebook_runs_headless_as_a_script(runs_dir):
    # every notebooks/<name>.py is the one notebook (test_every_notebook_is_the_one_comparison_notebook)
    done = subprocess.run([sys.executable, str(REPO / "notebooks" / "models.py")], capture_output=True, text=True,
                          env={**os.environ, "NBKIT_RUNS_DIR": str(runs_dir)}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def export(name, runs_dir, out, extra=()):
    # from a copy: marimo leaves a session snapshot beside the notebook, which `marimo edit` would show
    notebooks = shutil.copytree(REPO / "notebooks", out.parent / "notebooks", dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__marimo__"))
    done = subprocess.run([sys.executable, "-m", "marimo", "export", "html", str(notebooks / f"{name}.py"),
                           "-o", str(out), "--", "--runs-dir", str(runs_dir), *extra], capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert done.returncode == 0 and "failed" not in done.stdout + done.stderr, done.stdout + done.stderr
    return out.read_text()


def test_report_command_writes_html_and_chart_images(runs_dir, tmp_path, capsys):
    assert main(["report", "--runs-dir", str(runs_dir), "--out", str(tmp_path / "reports")]) == 0
    out = tmp_path / "reports"
    for name in NOTEBOOKS:
        html = (out / f"{name}.html").read_text()
        assert "vegaEmbed(" in html and "resnet18" in html  # the charts' code and data travel inside the page
        assert str(runs_dir) not in html and str(REPO) not in html  # no local paths
        assert not re.search(r"""(src|href)=["']?https?:""", html)  # nothing loaded from the network
        assert "<input" not in html and "Launch runs" not in html and "from nbkit" not in html  # a document
    models = (out / "models.html").read_text()
    assert "vitn-12x256-8x8-lt" in models and "Learned attention temperature" in models
    assert "Learned attention temperature per layer" in models and "Replication scorecard" in models
    assert "-lt (learns log 1/tau): final temperature (mean across layers) below its start, 1" in models
    assert ">Augmentation gives the best test top-1</td>" in (out / "learning.html").read_text()
    for name in NOTEBOOKS:
        for kind in ("loss", "accuracy"):
            for suffix in ("png", "svg"):
                path = out / "figures" / f"{name}-{kind}.{suffix}"
                assert path.stat().st_size > 1000, path
    assert (out / "figures" / "models-temperature.png").exists()
    assert (out / "figures" / "models-loss.png").read_bytes()[:4] == b"\x89PNG"
    assert "<svg" in (out / "figures" / "models-loss.svg").read_text()[:500]


def test_report_needs_only_the_installed_package(runs_dir, tmp_path):
    """nbkit copied alone (as a wheel installs it) exports a comparison from any directory, and
    reading runs never imports torch (2 s of every notebook's and report's start)."""
    import nbkit

    site = tmp_path / "site"
    shutil.copytree(Path(nbkit.__file__).parent, site / "nbkit", ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import sys; import nbkit, nbkit.view.notebook, nbkit.view.epochs_view, nbkit.view.panel; "
            "from nbkit.view.report import write_report; "
            "write_report('learning', sys.argv[1], '.'); print(nbkit.__file__, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(runs_dir)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"{site / 'nbkit' / '__init__.py'} False"  # the copy, not the checkout; no torch
    html = (tmp_path / "learning.html").read_text()
    assert "Comparison: learning" in html and "resnet18" in html


def test_jupyter_panel_builds_and_its_controls_drive_the_view(runs_dir, tmp_path):
    from nbkit.view.panel import Panel

    panel = Panel("models", runs_dir=str(runs_dir))
    assert panel.dataset.value == "synthetic" and panel.launch_dataset.value == "synthetic"
    assert set(panel.variants.value) == set(COMPARISONS["models"].variants)  # the comparison's: later runs join
    assert "Comparison: models" in panel.head.value and "The answer from these runs" in panel.answer.value
    assert "Replication scorecard" in panel.scorecard.value and "<table>" in panel.tables.value  # HTML, not a repr
    assert "shape:" not in panel.tables.value and panel.chart.spec["vconcat"]  # the chart carries its spec
    panel.variants.value = ("resnet18", "vitn-12x256-8x8-lt")
    panel.seeds.value = "mean and min-max band"
    assert set(panel.view.variant_table["variant"]) == {"resnet18", "vitn-12x256-8x8-lt"}
    assert set(panel.view.charts) == {"loss", "accuracy", "temperature", "scalar"}  # grad_norm logged: also plotted
    panel.x.value = "epoch"  # every control redraws at once
    plot = panel.view.charts["loss"].to_dict()["hconcat"][0]
    lines = next(l for l in plot["layer"] if l.get("name") == "loss_lines")
    assert lines["encoding"]["x"]["title"] == "epoch"
    panel.scalar.value = "train lr"
    assert "lr on train" in str(panel.chart.spec)
    assert [s.children[0].value for s in panel.sections.children][0].startswith("<h3>Learned temperature per layer")
    panel.variants.value = ("toy-dilated",)
    assert panel.view.variant_table["variant"].to_list() == ["toy-dilated"]
    assert "temperature" not in panel.view.charts
    panel.launch_variants.value = ()
    panel.launch_button.click()  # nothing picked: said on the panel, nothing started
    assert panel.launched is None and "Not launched:</strong> pick at least one variant" in panel.launch_status.value
    panel.runs_dir.value = str(runs_dir / "missing")
    assert panel.view is None and panel.dataset.options == () and "No runs yet" in panel.answer.value


def test_jupyter_panel_refresh_shows_new_runs_and_keeps_the_settings(tmp_path):
    from nbkit.view.panel import Panel
    from tests.helpers import write_run

    write_run(tmp_path, "resnet18", 0, {"test": [(100, 0.3)]}, train=[(10, 2.0), (20, 1.9)])
    panel = Panel("models", runs_dir=str(tmp_path))
    panel.x.value, panel.smoothing.value = "epoch", 0.5
    spec = panel.chart.spec
    assert panel.refresh() is False and panel.chart.spec is spec  # nothing written: nothing redrawn
    write_run(tmp_path, "resnet18", 1, {"test": [(100, 0.4)]}, train=[(10, 2.0), (20, 1.8)])
    write_run(tmp_path, "toy-dilated", 0, {"test": [(100, 0.2)]}, dataset="other")
    panel.refresh_button.click()
    assert panel.view.runs.height == 2 and (panel.x.value, panel.smoothing.value) == ("epoch", 0.5)
    assert "smoothed (EMA 0.5)" in panel.view.charts["loss"].to_dict()["hconcat"][0]["title"]
    assert set(panel.dataset.options) == {"synthetic", "other"} and panel.dataset.value == "synthetic"


def test_jupyter_panel_escapes_what_runs_write(tmp_path):
    """A run's reason, label and names reach the panel's HTML widgets as text, never as markup."""
    from nbkit.view.panel import Panel
    from tests.helpers import write_run

    evil = '<img src=x onerror="alert(1)">'
    write_run(tmp_path, "resnet18", 0, {"test": [(100, 0.3)]}, train=[(10, 2.0)], state="failed", label=evil)
    (next(tmp_path.glob("synthetic/resnet18/*")) / "status.json").write_text(
        json.dumps({"state": "failed", "step": 1, "reason": evil}))
    panel = Panel("models", runs_dir=str(tmp_path))
    shown = panel.answer.value + panel.protocol.value + panel.tables.value + panel.scorecard.value
    assert "<img" not in shown and "&lt;img" in shown
    panel.launched = {"pid": 1, "started": "x", "log": str(tmp_path / "none.log"), "runs_dir": str(tmp_path),
                      "request": {"variants": [evil], "dataset": evil, "max_iter": 1, "seeds": 1}}
    with pytest.warns(UserWarning, match="without a valid pid"):  # pid 1 is never ours: said, never signalled
        panel._show_sweep()
    assert "<img" not in panel.launch_status.value


def test_jupyter_panel_refuses_an_unknown_comparison():
    from nbkit.view.panel import Panel

    with pytest.raises(ValueError, match="unknown comparison 'modles'; expected one of resnets, learning, models"):
        Panel("modles")


def test_every_notebook_is_the_one_comparison_notebook():
    """notebooks/<comparison>.py are links to nbkit/view/notebook.py: one source, named for its comparison."""
    for name in NOTEBOOKS:
        path = REPO / "notebooks" / f"{name}.py"
        assert path.is_symlink() and path.resolve() == (REPO / "nbkit" / "view" / "notebook.py").resolve()
    from nbkit.errors import UnknownVariantError
    from nbkit.view.workbench import ALL_RUNS, comparison_for

    assert comparison_for({}, str(REPO / "notebooks" / "resnets.py")) == "resnets"
    assert comparison_for({"comparison": "learning"}, str(REPO / "notebooks" / "resnets.py")) == "learning"
    assert comparison_for({}, str(REPO / "nbkit" / "view" / "notebook.py")) == "models"
    assert comparison_for({"comparison": ALL_RUNS}, None) == ALL_RUNS
    with pytest.raises(UnknownVariantError, match="unknown comparison 'modles'; did you mean 'models'"):
        comparison_for({"comparison": "modles"}, None)


def test_launch_and_stop_from_the_notebook_helpers(tmp_path):
    """What the launch and stop buttons call: a background sweep, stopped cleanly."""
    import json
    import time

    from nbkit.sweeps import background as wb

    info = wb.launch_sweep(tmp_path, ["toy-dilated"], "synthetic", max_iter=100000, seeds=1, device="cpu", jobs=1,
                           eval_every=5)
    assert [s["pid"] for s in wb.active_sweeps(tmp_path)] == [info["pid"]]
    deadline = time.time() + 180
    status = None
    while status is None and time.time() < deadline:  # until the run has logged its first evaluation
        found = list(tmp_path.glob("synthetic/toy-dilated/*/status.json"))
        if found and json.loads(found[0].read_text()).get("step", 0) > 0:
            status = found[0]
        time.sleep(0.2)
    assert status is not None, "the run never reached its first evaluation"
    wb._CHILDREN.clear()  # as after a notebook restart: the sweep is known only from /proc
    assert [s["pid"] for s in wb.active_sweeps(tmp_path)] == [info["pid"]]
    assert wb.stop_sweeps(tmp_path) == 1
    while wb.active_sweeps(tmp_path) and time.time() < deadline:
        time.sleep(0.2)
    assert not wb.active_sweeps(tmp_path)
    final = json.loads(status.read_text())
    assert final["state"] == "stopped" and (status.parent / "checkpoint.pt").exists()


def test_the_stop_button_signals_only_a_sweep_it_launched(tmp_path, monkeypatch):
    """Stale, hand-edited or copied registry entries never lead to a signal: a live process
    whose pid an entry names (but not its start time and command), pids -1, 0 and 1, and
    entries that are not entries at all."""
    import json
    import signal
    import warnings

    from nbkit.sweeps import background

    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    sent, real_kill = [], os.kill

    def kill(pid, sig):  # record every real signal; probing with signal 0 stays harmless
        if sig == 0:
            return real_kill(pid, 0) if pid > 1 else None
        sent.append((pid, sig))

    monkeypatch.setattr(os, "kill", kill)
    registry = tmp_path / ".sweeps"
    registry.mkdir()
    entries = {"stale": {"pid": stranger.pid, "start_ticks": 1, "command": ["python", "-m", "nbkit", "sweep"]},
               "no proof": {"pid": stranger.pid}, "minus one": {"pid": -1}, "zero": {"pid": 0}, "init": {"pid": 1},
               "text": {"pid": "x"}, "list": [1, 2], "null pid": {"pid": None}, "bool": {"pid": True}}
    for name, entry in entries.items():
        (registry / f"{name}.json").write_text(json.dumps(entry))
    (registry / "garbage.json").write_text("{")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert background.active_sweeps(tmp_path) == []
            assert background.stop_sweeps(tmp_path) == 0
        assert sent == [] and stranger.poll() is None
        assert any("minus one.json: ignoring a launched-sweep entry without a valid pid (got -1)" in str(w.message)
                   for w in caught)
    finally:
        real_kill(stranger.pid, signal.SIGKILL)
        stranger.wait()


def test_launch_sends_a_sweep_to_ray_and_reports_an_unreachable_cluster(tmp_path):
    """The launch form's backend and address reach `nbkit sweep`; with no cluster running at
    `auto`, the sweep's log says so in one line and no run is written."""
    import time

    from nbkit.sweeps import background as wb

    with pytest.raises(ValueError, match="backend expects local or ray, got 'slurm'"):
        wb.launch_sweep(tmp_path, ["toy-dilated"], "synthetic", max_iter=4, seeds=1, backend="slurm")
    info = wb.launch_sweep(tmp_path, ["toy-dilated"], "synthetic", max_iter=4, seeds=1, device="cpu",
                           backend="ray", address=" auto ")
    assert info["args"][-4:] == ["--backend", "ray", "--address", "auto"]
    deadline = time.time() + 120
    while wb.active_sweeps(tmp_path) and time.time() < deadline:
        time.sleep(0.2)
    log = Path(info["log"]).read_text()
    assert "nbkit sweep: error: cannot reach the Ray cluster at auto" in log, log
    state = wb.sweep_state(info)  # what the page shows: the sweep, its runs, its one-line error
    assert state["state"] == "failed" and state["error"].startswith("nbkit sweep: error: cannot reach the Ray")
    assert [(r["variant"], r["seed"], r["state"], r["step"]) for r in state["runs"]] == [
        ("toy-dilated", 0, "not started (the sweep failed)", "0 of 4")]  # never "queued" after the sweep ended
    assert not list(tmp_path.glob("synthetic/*/*/config.json"))


def test_a_comparisons_file_drives_the_notebook(tmp_path):
    """`marimo ... -- --comparisons FILE --comparison NAME`: the file's question, what its user
    expected, its variants' runs (the example's), and no scorecard of the original's."""
    html = export("models", REPO / "examples" / "runs", tmp_path / "mine.html",
                  extra=["--comparisons", str(REPO / "examples" / "my-study.toml"), "--comparison", "mine"])
    assert "Does a small CNN of my own" in html and "What you expected" in html
    assert "small-cnn-wide" in html and "convnext-atto" in html and "Replication scorecard" not in html


def test_the_epochs_notebook_answers_the_puzzle_on_the_shipped_runs(tmp_path):
    """The epochs notebook on artifacts/runs-epochs: the verdict at the top, and its own sections."""
    import re

    from nbkit.analysis.epochs_answer import findings
    from nbkit.rundir.reader import read_runs

    html = export("epochs", REPO / "artifacts" / "runs-epochs", tmp_path / "epochs.html")
    verdict = re.match(r"\*\*(Verdict: .+?)\*\*", findings(*read_runs(REPO / "artifacts" / "runs-epochs"))[-1]).group(1)
    for shown in (verdict, "Every epoch end overlaid", "Held-out images at the same steps",
                  "The disjoint half: a switch to never-seen images", "The drop at epoch ends",
                  "Loss by how often the examples were trained on"):
        assert shown in html, shown


def test_every_run_of_a_runs_directory_can_be_shown_by_variant(tmp_path):
    """Runs of variants no comparison lists (a user's own script's names) show under "all runs"."""
    from nbkit.view.panel import Panel
    from tests.helpers import write_run

    write_run(tmp_path, "my-net", 0, {"test": [(100, 0.3)]}, train=[(10, 2.0)])
    write_run(tmp_path, "my-net", 1, {"test": [(100, 0.4)]}, train=[(10, 2.0)])
    write_run(tmp_path, "resnet18", 0, {"test": [(100, 0.2)]}, train=[(10, 2.0)])
    panel = Panel("all runs", runs_dir=str(tmp_path))
    assert list(panel.variants.options) == ["resnet18", "my-net"] and set(panel.variants.value) == {"resnet18", "my-net"}
    rows = panel.view.variant_table.select("variant", "seeds").rows()
    assert rows == [("my-net", 2), ("resnet18", 1)]
    assert "my-net" in panel.answer.value and panel.scorecard.value == ""
