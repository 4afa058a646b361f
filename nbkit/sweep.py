"""Sweeps: a queue of runs, K at a time per GPU (or on the CPU), each in its own process.

A run's directory is fixed by its settings and seed, so a second invocation finds its runs:
finished ones are skipped, interrupted ones resume from their checkpoint. A failed run does
not stop the others.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .comparisons import expand
from .data import dataset_name
from .runlog import CHECKPOINT, CONFIG, STATUS, read_status
from .settings import Settings
from .variants import get_variant

BUSY_EXIT = 75  # a child that finds its run directory locked by another process


@dataclass
class Job:
    variant: str
    settings: Settings
    run_dir: Path
    overrides: dict

    @property
    def label(self) -> str:
        return f"{self.variant} seed {self.settings.seed}"


def settings_key(s: Settings) -> str:
    """A short hash of everything but the seed: runs of one sweep share it."""
    d = {k: v for k, v in s.to_dict().items() if k != "seed"}
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]


def plan(names: list[str], seeds: int, overrides: dict, runs_dir: str | Path) -> list[Job]:
    if seeds < 1:
        raise ValueError(f"--seeds expects at least 1, got {seeds}")
    jobs = []
    for variant in expand(names):
        base = get_variant(variant).settings.replace(**overrides)
        for seed in range(base.seed, base.seed + seeds):
            s = base.replace(seed=seed)
            run_dir = Path(runs_dir) / dataset_name(s.dataset) / variant / f"{settings_key(s)}-s{seed}"
            jobs.append(Job(variant, s, run_dir, {**overrides, "seed": seed}))
    return jobs


def job_state(job: Job) -> str:
    """done (skip), resume (has a checkpoint), or new."""
    if read_status(job.run_dir).get("state") == "done":
        return "done"
    if (job.run_dir / CHECKPOINT).exists() and (job.run_dir / CONFIG).exists():
        return "resume"
    return "new"


def _command(job: Job, device: str, label: str | None = None) -> list[str]:
    """The child's command line: resume from the checkpoint, begin again, or start."""
    cmd = [sys.executable, "-m", "nbkit", "train"]
    if job_state(job) == "resume":
        return cmd + ["--resume", str(job.run_dir), "--device", device]
    # an attempt that never reached a checkpoint begins again (the child clears it under its lock)
    restart = ["--restart"] if (job.run_dir / CONFIG).exists() else []
    sets = [f"{k}={'none' if v is None else v}" for k, v in job.overrides.items()]
    return cmd + [job.variant, "--run-dir", str(job.run_dir), "--device", device, *restart,
                  *(["--label", label] if label else []), "--set", *sets]


def slots(device: str, jobs_per_device: int) -> list[tuple[str, dict]]:
    """(device argument, environment) for each concurrent run."""
    if jobs_per_device < 1:
        raise ValueError(f"--jobs expects at least 1, got {jobs_per_device}")
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available():
        return [("cuda", {"CUDA_VISIBLE_DEVICES": str(g)})
                for g in range(torch.cuda.device_count()) for _ in range(jobs_per_device)]
    if device == "cuda":
        raise ValueError("device cuda was asked for but no CUDA GPU is available; use --device cpu")
    threads = max(1, (os.cpu_count() or 1) // jobs_per_device)
    return [("cpu", {"OMP_NUM_THREADS": str(threads), "CUDA_VISIBLE_DEVICES": ""})] * jobs_per_device


class Display:
    """One line per active run and a total; redrawn in place on a terminal, events otherwise."""

    def __init__(self, total: int, stream=None):
        stream = stream or sys.stderr
        self.total, self.stream, self.tty = total, stream, stream.isatty()
        self.drawn = 0

    def event(self, text: str) -> None:
        if self.tty:
            self._clear()
        print(text, file=self.stream, flush=True)

    def _clear(self):
        if self.drawn:
            self.stream.write(f"\x1b[{self.drawn}F\x1b[J")
            self.drawn = 0

    def draw(self, running: dict, counts: dict) -> None:
        if not self.tty:
            return
        self._clear()
        lines = []
        for job in running.values():
            st = read_status(job.run_dir)
            step, total = st.get("step", 0), job.settings.max_iter
            bar = "#" * int(20 * step / total) + "." * (20 - int(20 * step / total))
            ips = st.get("images_per_second")
            lines.append(f"  {job.label:<34} [{bar}] {step}/{total}" + (f"  {ips:,.0f} img/s" if ips else ""))
        lines.append(f"sweep: {counts['done']} done, {counts['failed']} failed, {len(running)} running, "
                     f"{counts['queued']} queued of {self.total}")
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()
        self.drawn = len(lines)


def run_sweep(jobs: list[Job], device: str = "auto", jobs_per_device: int = 1, poll: float = 0.5,
              stream=None, label: str | None = None) -> dict[str, list[Job]]:
    """Run every job not yet done; returns the jobs by outcome (done, skipped, failed, stopped)."""
    outcome = new_outcome()
    queue = []
    for job in jobs:
        (outcome["skipped"] if job_state(job) == "done" else queue).append(job)
    display = Display(len(jobs), stream)
    if outcome["skipped"]:
        display.event(f"sweep: skipping {len(outcome['skipped'])} finished run(s)")
    free = slots(device, jobs_per_device)
    running: dict[subprocess.Popen, tuple[Job, tuple]] = {}
    stopping = False

    def stop(signum, frame):
        nonlocal stopping
        stopping = True
        for p in running:
            p.send_signal(signal.SIGTERM)

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while queue or running:
            while queue and free and not stopping:
                job, slot = queue.pop(0), free.pop(0)
                job.run_dir.mkdir(parents=True, exist_ok=True)
                action = "resuming" if job_state(job) == "resume" else "starting"
                with open(job.run_dir / "train.log", "a") as log:
                    p = subprocess.Popen(_command(job, slot[0], label), stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, **slot[1]})
                running[p] = (job, slot)
                display.event(f"{action} {job.label} -> {job.run_dir}")
            for p in [p for p in running if p.poll() is not None]:
                job, slot = running.pop(p)
                free.append(slot)
                settle(job, p.returncode, stopping, outcome, display)
            if stopping:
                outcome["stopped"] += queue
                queue = []
            display.draw({id(p): j for p, (j, _) in running.items()}, counts(outcome, queue))
            time.sleep(poll if running else 0)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    display.event(final_line(outcome))
    return outcome


def new_outcome() -> dict[str, list[Job]]:
    return {"done": [], "skipped": [], "failed": [], "stopped": [], "busy": []}


def settle(job: Job, returncode: int, stopping: bool, outcome: dict, display: Display) -> None:
    """File a finished child's run under its outcome (from its exit code and status.json)."""
    state = read_status(job.run_dir).get("state")
    if state == "running" and returncode < 0:  # killed before it could say so itself
        state = "stopped" if stopping else "failed"
        _mark_killed(job.run_dir, -returncode, state)
    if returncode == 0 and state == "done":
        outcome["done"].append(job)
        display.event(f"done {job.label}")
    elif returncode == BUSY_EXIT:
        outcome["busy"].append(job)
        display.event(f"skipped {job.label}: another process is writing it")
    elif state == "stopped" or stopping:
        outcome["stopped"].append(job)
        display.event(f"stopped {job.label} (resume by running the sweep again)")
    else:
        outcome["failed"].append(job)
        why = read_status(job.run_dir).get("reason") or _last_line(job.run_dir / "train.log")
        display.event(f"FAILED {job.label}: {why}")


def counts(outcome: dict, queue: list) -> dict:
    c = {k: len(v) for k, v in outcome.items()} | {"queued": len(queue)}
    c["done"] += c.pop("skipped") + c.pop("busy")
    return c


def final_line(outcome: dict) -> str:
    return (f"sweep: {len(outcome['done'])} done, {len(outcome['skipped'])} skipped, "
            f"{len(outcome['failed'])} failed, {len(outcome['stopped'])} stopped"
            + (f", {len(outcome['busy'])} left to another process" if outcome["busy"] else ""))


def _mark_killed(run_dir: Path, signum: int, state: str) -> None:
    mark(run_dir, state, f"the process was killed by {signal.Signals(signum).name}; "
                         "running the sweep again resumes it from its last checkpoint")


def mark(run_dir: Path, state: str, reason: str) -> None:
    """Set a run's state on its behalf (it could not say so itself)."""
    from .runlog import write_json_atomic

    status = read_status(run_dir) or {"step": 0}
    status.update(state=state, reason=reason)
    run_dir.mkdir(parents=True, exist_ok=True)  # a run that never reached this machine has no folder yet
    write_json_atomic(run_dir / STATUS, status)


def _last_line(path: Path) -> str:
    try:
        lines = [l for l in path.read_text().splitlines() if l.strip()]
        return lines[-1][-300:] if lines else "no output"
    except OSError:
        return "no output"


def launch(args: list[str], log_path: str | Path) -> subprocess.Popen:
    """Start `nbkit sweep ARGS` in the background in its own session (for notebooks)."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        return subprocess.Popen([sys.executable, "-m", "nbkit", "sweep", *args], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def stop(pid: int) -> None:
    """End a launched sweep cleanly: its runs checkpoint and mark themselves stopped."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
