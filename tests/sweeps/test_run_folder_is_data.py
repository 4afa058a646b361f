"""A runs folder someone sent you is data: resuming it (a sweep, `nbkit train --resume`, the
notebook's Launch) never imports a module the folder names. Each path is tried on a run folder
whose config.json names a module shipped inside the runs folder, beside a garbage checkpoint."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nbkit.cli import main
from nbkit.rundir.runlog import read_status
from nbkit.sweeps.sweep import plan

PLANTED = "runs.helper:net"
OVERRIDES = {"dataset": "synthetic", "max_iter": 4}


@pytest.fixture
def sent(tmp_path, monkeypatch):
    """A runs folder (tmp/runs) holding the sweep's own toy-dilated seed-0 run, planted: its
    config.json names runs.helper:net, whose import leaves tmp/imported; checkpoint.pt is garbage."""
    runs = tmp_path / "runs"
    runs.mkdir()
    marker = tmp_path / "imported"
    (runs / "helper.py").write_text(f"open({str(marker)!r}, 'w').write('the sender ran code')\n"
                                    "def net(n, s):\n    raise SystemExit('built')\n")
    (job,) = plan(["toy-dilated"], 1, OVERRIDES, runs)
    job.run_dir.mkdir(parents=True)
    settings = {**job.settings.to_dict(), "model": PLANTED}
    (job.run_dir / "config.json").write_text(json.dumps({"variant": "toy-dilated", "seed": 0, "settings": settings}))
    (job.run_dir / "checkpoint.pt").write_bytes(b"garbage")
    monkeypatch.chdir(tmp_path)  # where the sender's module is importable, as `python -m` has it
    return runs, job.run_dir, marker


def test_a_cli_sweep_never_imports_what_a_sent_run_folder_names(sent, capsys):
    runs, run_dir, marker = sent
    code = main(["sweep", "toy-dilated", "--dataset", "synthetic", "--max-iter", "4", "--device", "cpu",
                 "--runs-dir", str(runs)])
    assert not marker.exists(), "the sweep imported the run folder's module"
    assert code == 1 and "0 done, 0 skipped, 1 failed" in capsys.readouterr().err
    reason = read_status(run_dir)["reason"]
    assert f"records model {PLANTED!r}" in reason and "asked for variant 'toy-dilated' (model 'toy-dilated')" in reason


def test_train_resume_never_imports_what_a_sent_run_folder_names(sent):
    runs, run_dir, marker = sent
    done = subprocess.run([sys.executable, "-m", "nbkit", "train", "--resume", str(run_dir), "--device", "cpu"],
                          capture_output=True, text=True, timeout=300)
    assert not marker.exists(), "--resume imported the run folder's module"
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert f"records model {PLANTED!r}" in line and "--set model=" in line  # how to name it oneself


def test_a_resume_whose_recorded_model_the_user_names_is_checked_before_it_is_built(sent):
    """Naming the model oneself (--set model=...) allows the import, but only after the
    checkpoint has been checked: a garbage one is refused first."""
    runs, run_dir, marker = sent
    done = subprocess.run([sys.executable, "-m", "nbkit", "train", "--resume", str(run_dir), "--device", "cpu",
                           "--set", f"model={PLANTED}"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "checkpoint.pt is corrupt or not a checkpoint" in done.stderr
    assert not marker.exists(), "the model was built before its checkpoint was checked"


def test_the_notebooks_launch_never_imports_what_a_sent_run_folder_names(sent):
    from nbkit.sweeps import background

    runs, run_dir, marker = sent
    info = background.launch_sweep(runs, ["toy-dilated"], "synthetic", max_iter=4, seeds=1, device="cpu")
    deadline = time.time() + 300
    while background.active_sweeps(runs) and time.time() < deadline:
        time.sleep(0.2)
    assert not marker.exists(), "the launched sweep imported the run folder's module"
    state = background.sweep_state(info)
    assert state["state"] == "failed", Path(info["log"]).read_text()
    assert f"records model {PLANTED!r}" in read_status(run_dir)["reason"]
