"""Sweeps through a local Ray instance on the CPU, with a worker killed mid-run."""

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nbkit.rundir.reader import read_runs
from nbkit.rundir.runlog import read_metrics
from nbkit.sweeps.sweep import job_state, plan

SETS = ["tailor_num_classes=true", "eval_batch_size=256", "save_every=6", "log_every=3", "constant_lr=0.003"]
SWEEP = ["toy-dilated", "--seeds", "2", "--dataset", "synthetic", "--max-steps", "72", "--eval-every", "24",
         "--batch-size", "16", "--device", "cpu"]
OVERRIDES = {"dataset": "synthetic", "max_iter": 72, "eval_every": 24, "batch_size": 16, "tailor_num_classes": True,
             "eval_batch_size": 256, "save_every": 6, "log_every": 3, "constant_lr": 0.003}


def start_sweep(runs_dir: Path, log: Path, *extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nbkit", "sweep", *SWEEP, "--runs-dir", str(runs_dir),
                             "--backend", "ray", *extra, "--set", *SETS],
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def training_process(run_name: str, exclude: tuple = ()) -> tuple[int, int] | None:
    """(pid, parent pid) of the live `nbkit train` child writing a run folder called run_name,
    started by a live worker (not one orphaned by a worker that was killed)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in exclude:
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            status = (proc / "status").read_text()
        except (OSError, ValueError):
            continue
        if b"train" in argv and any(a.decode(errors="replace").endswith(run_name) for a in argv):
            fields = dict(l.split(":", 1) for l in status.splitlines() if ":" in l)
            ppid = int(fields["PPid"])
            if ppid > 1 and not fields["State"].strip().startswith("Z"):
                return int(proc.name), ppid
    return None


def gone(pid: int, within: float = 10.0) -> bool:
    """Whether process pid ends (or is a zombie) within `within` seconds."""
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            if (Path("/proc") / str(pid) / "status").read_text().split("State:")[1].strip().startswith("Z"):
                return True
        except (OSError, IndexError):
            return True
        time.sleep(0.05)
    return False


def kill_worker_after_checkpoint(run_dir: Path, deadline: float, sweep: subprocess.Popen, log: Path,
                                 exclude: tuple = ()) -> tuple[int, int]:
    """SIGKILL the Ray worker (the actor process) whose child trains run_dir, once the run's
    first checkpoint has reached the local runs directory; returns (child pid, worker pid)."""
    while time.time() < deadline:
        if sweep.poll() is not None:
            if "cannot reach the Ray cluster" in log.read_text():
                pytest.skip(f"a local Ray instance cannot start here: {log.read_text().strip().splitlines()[-1]}")
            raise AssertionError(f"the sweep ended before its run was killed:\n{log.read_text()}")
        found = training_process(run_dir.name, exclude)
        if (run_dir / "checkpoint.pt").exists() and found:
            os.kill(found[1], signal.SIGKILL)
            return found
        time.sleep(0.05)
    raise AssertionError(f"{run_dir} never reached a checkpoint")


def strip(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time"} for r in read_metrics(run_dir / "metrics.jsonl")]


def test_ray_sweep_copies_runs_back_retries_killed_workers_then_marks_failed(tmp_path):
    runs, log = tmp_path / "runs", tmp_path / "sweep.log"
    jobs = plan(["toy-dilated"], 2, OVERRIDES, runs)
    sweep = start_sweep(runs, log, "--shared-fs", "no", "--max-retries", "1")
    # the same run, uninterrupted, in one process with the thread count a Ray CPU run gets
    reference = subprocess.Popen([sys.executable, "-m", "nbkit", "train", *SWEEP[:1], *SWEEP[3:], "--seed", "0",
                                  "--run-dir", str(tmp_path / "reference"), "--set", *SETS],
                                 env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL)
    deadline = time.time() + 180
    first = kill_worker_after_checkpoint(jobs[0].run_dir, deadline, sweep, log)  # seed 0: dies once, retried
    killed = kill_worker_after_checkpoint(jobs[1].run_dir, deadline, sweep, log)  # seed 1: dies twice, then fails
    assert gone(first[0]), "the training child outlived its killed Ray worker"
    kill_worker_after_checkpoint(jobs[1].run_dir, deadline, sweep, log, exclude=killed)
    assert sweep.wait(timeout=300) == 1, log.read_text()  # exit 1: a run failed
    assert reference.wait(timeout=300) == 0
    text = log.read_text()
    assert "copied back" in text and "shared runs directory" not in text
    assert "retrying toy-dilated seed 0 (its Ray worker died; retry 1 of 1, from its last checkpoint)" in text
    assert "resuming toy-dilated seed 0" in text
    assert "FAILED toy-dilated seed 1: its Ray worker died 2 time(s)" in text
    assert "sweep: 1 done, 0 skipped, 1 failed, 0 stopped" in text
    # seed 0 came back whole: the metrics of the uninterrupted run, no step lost or repeated
    assert strip(jobs[0].run_dir) == strip(tmp_path / "reference")
    status = json.loads((jobs[1].run_dir / "status.json").read_text())
    assert status["state"] == "failed" and "resumes it from its last checkpoint" in status["reason"]
    assert not list(runs.rglob("*.ray-tmp"))

    # the same run folders read as a local sweep reads them: seed 0 is done, seed 1 resumes from
    # what came back (in this process: the local sweep's child would run this same command)
    import torch

    from nbkit.cli import main
    from nbkit.sweeps.ray_backend import run_sweep_ray

    saved = torch.load(jobs[1].run_dir / "checkpoint.pt", weights_only=True)["step"]
    before = [r for r in read_metrics(jobs[1].run_dir / "metrics.jsonl") if r["step"] <= saved]
    assert [job_state(j) for j in plan(["toy-dilated"], 2, OVERRIDES, runs)] == ["done", "resume"]
    assert main(["train", "--resume", str(jobs[1].run_dir), "--device", "cpu"]) == 0
    after = read_metrics(jobs[1].run_dir / "metrics.jsonl")
    assert after[:len(before)] == before  # kept as written (times too), not redone
    assert [r["step"] for r in after if r["split"] == "train"] == list(range(3, 73, 3))
    metrics, table = read_runs(runs)  # what the notebooks read
    assert sorted(table["state"]) == ["done", "done"] and sorted(table["seed"]) == [0, 1]
    assert metrics.filter(metrics["split"] == "test")["step"].to_list() == [24, 48, 72] * 2

    out = io.StringIO()
    outcome = run_sweep_ray(plan(["toy-dilated"], 2, OVERRIDES, runs), runs, device="cpu", stream=out)
    assert len(outcome["skipped"]) == 2 and not outcome["done"]  # finished runs: Ray is not even started


def test_a_run_actor_writes_into_the_runs_directory_only_where_it_sees_it(tmp_path):
    """The actor class itself, without Ray: the driver's marker file decides (auto), or the
    user does; `yes` on a worker that cannot see the runs directory is refused in one line."""
    from nbkit.sweeps.ray_backend import RunActor, run_spec

    (job,) = plan(["toy-dilated"], 1, OVERRIDES, tmp_path / "runs")
    spec = run_spec(job, tmp_path / "runs", "cpu", 1, None)
    marker = tmp_path / "marker"
    marker.write_text("")
    seen = RunActor(spec, str(marker), "auto")
    assert seen.sees_runs_dir() and seen.run_dir == job.run_dir
    unseen = RunActor(spec, str(tmp_path / "absent"), "auto")
    assert not unseen.sees_runs_dir() and unseen.run_dir.is_relative_to(unseen.tmp)
    unseen.close()
    assert not Path(unseen.tmp).exists()
    copied = RunActor(spec, str(marker), "no")
    assert not copied.sees_runs_dir()
    copied.close()
    with pytest.raises(RuntimeError, match="--shared-fs yes, but the worker on .* does not see the runs directory"):
        RunActor(spec, str(tmp_path / "absent"), "yes").sees_runs_dir()


def test_the_ray_backend_says_how_to_install_ray(monkeypatch):
    from nbkit.sweeps import ray_backend

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ValueError, match=r"needs Ray, which is not installed; install it with pip install '.\[ray\]'"):
        ray_backend.import_ray()
