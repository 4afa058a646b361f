"""A sweep whose terminal closes: SIGHUP reaches the sweep and its runs (one process group, as a
terminal's), and each run stops with a checkpoint, as on SIGTERM; while it trains, status.json's
step follows its log, not only its evaluations."""

import json
import os
import signal
import subprocess
import sys
import time

from nbkit.rundir.reader import read_runs


def test_a_hangup_stops_a_sweep_and_its_runs_with_a_checkpoint_and_the_step_follows_the_log(tmp_path):
    sweep = subprocess.Popen([sys.executable, "-m", "nbkit", "sweep", "toy-dilated", "--dataset", "synthetic",
                              "--max-iter", "100000", "--eval-every", "50000", "--batch-size", "16", "--device", "cpu",
                              "--runs-dir", str(tmp_path), "--set", "tailor_num_classes=true", "eval_batch_size=256"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        folder = tmp_path / "synthetic" / "toy-dilated"
        step = lambda: json.loads(next(folder.glob("*/status.json")).read_text()).get("step", 0)
        while not (list(folder.glob("*/status.json")) and step() >= 20) and time.time() < deadline:
            time.sleep(0.2)
        (run,) = folder.glob("*")
        assert step() >= 20  # moved by the log windows: no evaluation before step 50,000
        speed = json.loads((run / "status.json").read_text())["images_per_second"]
        assert 0 < speed < 1e6, speed  # the training time so far, not a stretch's first instant
        assert not [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["split"] != "train"]
        assert read_runs(tmp_path)[1]["state"].to_list() == ["running"]  # its process holds the run's lock
        os.killpg(sweep.pid, signal.SIGHUP)  # the terminal closes: the whole process group gets it
        sweep.wait(timeout=120)
        status = json.loads((run / "status.json").read_text())
        assert status["state"] == "stopped" and "SIGHUP" in status["reason"], status
        assert (run / "checkpoint.pt").exists()
        assert read_runs(tmp_path)[1]["state"].to_list() == ["stopped"]
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
            sweep.wait()
