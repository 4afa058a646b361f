import json

import pytest

from nbkit.cli import main
from nbkit.rundir.reader import read_runs
from nbkit.rundir.runlog import read_metrics
from nbkit.sweeps import sweep
from nbkit.sweeps.sweep import job_state, longest_first, plan, run_sweep

SMALL = {"dataset": "synthetic", "max_iter": 12, "eval_every": 6, "batch_size": 16, "log_every": 3,
         "tailor_num_classes": True, "constant_lr": 3e-3, "eval_batch_size": 256}


def test_plan_names_runs_by_settings_and_seed(tmp_path):
    jobs = plan(["learning"], 2, SMALL, tmp_path)
    assert [j.label for j in jobs] == ["resnet18 seed 0", "resnet18 seed 1", "resnet18-clr1e-4 seed 0",
                                       "resnet18-clr1e-4 seed 1", "resnet18-aug seed 0", "resnet18-aug seed 1"]
    again = plan(["learning"], 2, SMALL, tmp_path)
    assert [j.run_dir for j in jobs] == [j.run_dir for j in again]
    longer = plan(["learning"], 2, {**SMALL, "max_iter": 13}, tmp_path)
    assert jobs[0].run_dir != longer[0].run_dir
    with pytest.raises(ValueError, match="unknown comparison or variant 'resnet81'; did you mean 'resnet18'"):
        plan(["resnet81"], 1, SMALL, tmp_path)


def test_the_queue_starts_the_most_work_first_and_keeps_seeds_in_order(tmp_path, monkeypatch):
    jobs = plan(["toy-dilated", "resnet18", "vit-12x256-8x8", "resnet50"], 2, SMALL, tmp_path)
    assert [j.label for j in longest_first(jobs)] == [
        "vit-12x256-8x8 seed 0", "vit-12x256-8x8 seed 1", "resnet50 seed 0", "resnet50 seed 1",
        "resnet18 seed 0", "resnet18 seed 1", "toy-dilated seed 0", "toy-dilated seed 1"]
    longer = plan(["toy-dilated"], 1, {**SMALL, "max_iter": 100 * SMALL["max_iter"]}, tmp_path)
    assert longest_first(jobs + longer)[0].label == "toy-dilated seed 0"  # steps count too
    _, queue, display = sweep.begin(jobs)
    display.close()
    assert queue[0].label == "vit-12x256-8x8 seed 0"

    def broken(*_):
        raise RuntimeError("no estimate")

    monkeypatch.setattr("nbkit.design.models.forward_flops", broken)
    assert longest_first(jobs) == jobs  # an estimate that fails leaves the plan's order


def test_sweep_runs_in_parallel_isolates_a_failure_and_skips_finished_runs(tmp_path):
    jobs = plan(["toy-dilated", "resnet18"], 2, SMALL, tmp_path)
    bad = jobs[1]
    bad.settings = bad.settings.replace(constant_lr=1e30)  # diverges: the loss overflows to inf, then NaN
    outcome = run_sweep(jobs, device="cpu", jobs_per_device=2, poll=0.1)
    assert [j.label for j in outcome["failed"]] == [bad.label]
    assert len(outcome["done"]) == 3
    status = json.loads((bad.run_dir / "status.json").read_text())
    assert status["state"] == "failed" and "non-finite loss" in status["reason"]
    for job in outcome["done"]:
        rows = read_metrics(job.run_dir / "metrics.jsonl")
        assert [r["step"] for r in rows if r["split"] == "test"] == [6, 12]
        assert [r["step"] for r in rows if r["split"] == "train"] == [3, 6, 9, 12]
        assert json.loads((job.run_dir / "status.json").read_text())["state"] == "done"
    _, runs = read_runs(tmp_path)
    assert sorted(runs["state"]) == ["done", "done", "done", "failed"]

    finished = {j.run_dir: (j.run_dir / "metrics.jsonl").stat().st_mtime_ns for j in outcome["done"]}
    again = run_sweep(plan(["toy-dilated", "resnet18"], 2, SMALL, tmp_path), device="cpu", jobs_per_device=2, poll=0.1)
    assert len(again["skipped"]) == 3 and len(again["done"]) == 1  # the failed run is tried again
    assert all((d / "metrics.jsonl").stat().st_mtime_ns == t for d, t in finished.items())


def test_sweep_resumes_a_killed_run_to_the_same_metrics(tmp_path):
    import re
    import signal
    import subprocess
    import time

    from nbkit.sweeps.sweep import command

    # a checkpoint every 6 steps, a train row every 3, evaluations at 12 and 24
    settings = {**SMALL, "max_iter": 24, "eval_every": 12, "save_every": 6}
    (reference,) = plan(["toy-dilated"], 1, settings, tmp_path / "reference")
    (job,) = plan(["toy-dilated"], 1, settings, tmp_path / "killed")
    children = []
    for one in (reference, job):  # the uninterrupted run trains beside the one that is killed
        one.run_dir.mkdir(parents=True)
        children.append(subprocess.Popen(command(one, "cpu"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    uninterrupted, child = children

    def logged():  # the steps of the train rows written so far
        path = job.run_dir / "metrics.jsonl"
        return [int(s) for s in re.findall(r'"step": (\d+), "split": "train"', path.read_text())] if path.exists() else []

    # killed once it has logged step 9: past the checkpoint at 6, with rows the resume must not repeat
    deadline = time.time() + 300
    while 9 not in logged():
        assert child.poll() is None, "the child ended before it logged step 9"
        assert time.time() < deadline, "the child never logged step 9"
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert (job.run_dir / "checkpoint.pt").exists()
    assert json.loads((job.run_dir / "status.json").read_text())["state"] == "running"
    assert job_state(job) == "resume"
    outcome = run_sweep([job], device="cpu")
    assert len(outcome["done"]) == 1
    assert uninterrupted.wait(timeout=300) == 0
    strip = lambda d: [{k: v for k, v in r.items() if k != "time"} for r in read_metrics(d / "metrics.jsonl")]
    assert strip(job.run_dir) == strip(reference.run_dir)


def test_cli_sweep_on_a_comparison(tmp_path, capsys):
    code = main(["sweep", "toy-dilated", "--seeds", "2", "--jobs", "2", "--dataset", "synthetic", "--max-steps", "4",
                 "--eval-every", "2", "--batch-size", "16", "--device", "cpu", "--runs-dir", str(tmp_path),
                 "--set", "tailor_num_classes=true", "eval_batch_size=256"])
    assert code == 0
    err = capsys.readouterr().err
    assert "sweep: 2 done, 0 skipped, 0 failed, 0 stopped" in err
    assert main(["sweep", "toy-dilated", "--seeds", "2", "--dataset", "synthetic", "--max-steps", "4",
                 "--eval-every", "2", "--batch-size", "16", "--device", "cpu", "--runs-dir", str(tmp_path),
                 "--set", "tailor_num_classes=true", "eval_batch_size=256"]) == 0
    assert "0 done, 2 skipped" in capsys.readouterr().err


def test_a_sweep_killed_by_sigkill_takes_its_runs_down_with_a_checkpoint(tmp_path):
    """Its children get SIGTERM from the kernel (PR_SET_PDEATHSIG): no run trains on unseen."""
    import os
    import signal
    import subprocess
    import sys
    import time

    sweep = subprocess.Popen([sys.executable, "-m", "nbkit", "sweep", "toy-dilated", "--dataset", "synthetic",
                              "--max-iter", "100000", "--eval-every", "1000", "--batch-size", "16", "--device", "cpu",
                              "--runs-dir", str(tmp_path), "--set", "tailor_num_classes=true", "eval_batch_size=256"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    status = tmp_path / "synthetic" / "toy-dilated"
    while not list(status.glob("*/status.json")) and time.time() < deadline:
        time.sleep(0.1)
    (status,) = status.glob("*/status.json")
    sweep.send_signal(signal.SIGKILL)
    sweep.wait()
    while json.loads(status.read_text())["state"] == "running" and time.time() < deadline:
        time.sleep(0.1)
    final = json.loads(status.read_text())
    assert final["state"] == "stopped" and "SIGTERM" in final["reason"]
    assert (status.parent / "checkpoint.pt").exists()
    def training():  # processes whose command line names the run (the child exits just after its status)
        return [pid for pid in os.listdir("/proc") if pid.isdigit() and _cmdline_has(pid, str(status.parent))]

    while training() and time.time() < deadline:
        time.sleep(0.1)
    assert training() == []


def _cmdline_has(pid: str, text: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return text.encode() in f.read()
    except OSError:  # ended meanwhile
        return False


def test_progress_shows_a_bar_per_running_run_on_a_terminal_and_events_in_a_log(tmp_path):
    import io

    from nbkit.rundir.runlog import RunWriter
    from nbkit.sweeps.sweep import Display

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    job = plan(["toy-dilated"], 1, {"dataset": "synthetic", "max_iter": 400}, tmp_path)[0]
    job.run_dir.mkdir(parents=True)
    RunWriter(job.run_dir).status("running", 100, images_per_second=1234.0)
    counts = {"done": 1, "failed": 0, "stopped": 0, "queued": 2}
    screen, log = Terminal(), io.StringIO()
    for stream in (screen, log):
        display = Display(4, stream)
        display.event("starting toy-dilated seed 0")
        display.draw([job], counts)
        display.close("sweep: 1 done")
    assert "toy-dilated seed 0" in screen.getvalue() and "100/400" in screen.getvalue()
    assert "1,234 img/s" in screen.getvalue() and "1/4 runs" in screen.getvalue()
    assert log.getvalue() == "starting toy-dilated seed 0\nsweep: 1 done\n"  # no bars in a log file


def test_a_killed_run_is_promised_a_resume_only_with_a_checkpoint(tmp_path):
    import io
    import signal

    from nbkit.rundir.runlog import RunWriter, read_status

    (job,) = plan(["toy-dilated"], 1, SMALL, tmp_path)
    job.run_dir.mkdir(parents=True)
    RunWriter(job.run_dir).status("running", 3)
    outcome = sweep.Outcome()
    outcome.settle(job, -signal.SIGINT, True, sweep.Display(1, io.StringIO()))
    st = read_status(job.run_dir)
    assert st["state"] == "stopped" and st["reason"] == ("the process was killed by SIGINT; running the sweep again "
                                                         "starts it again from step 0 (it has no checkpoint)")


def test_a_long_failure_reason_keeps_its_beginning_and_its_end(tmp_path):
    from nbkit.sweeps.background import last_error

    line = "nbkit train: error: " + "x" * 1200 + " to begin it again: nbkit train --resume RUN_DIR --restart"
    (tmp_path / "train.log").write_text(f"starting\n{line}\n")
    for said in (sweep.last_line(tmp_path / "train.log"), last_error(tmp_path / "train.log")):
        assert said.startswith("nbkit train: error: xxx") and " … " in said and said.endswith("--restart")
        assert len(said) == 1000  # what a status reason holds
