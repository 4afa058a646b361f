"""Sweeps: a plan of runs, each a `nbkit train` child process, K at a time per GPU (or on the CPU).

A run's directory is fixed by its settings and seed, so a second invocation finds its runs:
finished ones are skipped, interrupted ones resume from their checkpoint. A failed run does
not stop the others. The Ray backend (nbkit.sweeps.ray_backend) places the same jobs on a cluster
through this module's public surface: plan, Job, job_state, command, Display, Outcome, begin.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from nbkit.design.comparisons import expand
from nbkit.design.settings import Settings, fit_warmup
from nbkit.design.variants import get_variant
from nbkit.errors import BUSY, stop_signals, terminal
from nbkit.rundir import files
from nbkit.rundir.checkpoint import drop_previous, has_checkpoint
from nbkit.rundir.runlog import CONFIG, STATUS, TRAIN_LOG, mark, read_status, run_path
from nbkit.rundir.schema import MAX_TEXT
from nbkit.training.data import dataset_name


@dataclass
class Job:
    variant: str
    settings: Settings  # resolved, seed included: the child trains with exactly these
    run_dir: Path
    definition: dict | None = None  # a comparisons file's variant, whole (Variant.definition): the child needs no file
    tune: dict | None = None  # a tuning trial's study, number and values (nbkit.sweeps.tune): in its config.json
    note: str | None = None  # what was changed for it when planned (a warm-up longer than the run, scaled)

    @property
    def label(self) -> str:
        return f"{self.variant} seed {self.settings.seed}"


def settings_key(s: Settings) -> str:
    """A short hash of everything but the seed: runs of one sweep share it."""
    d = {k: v for k, v in s.identity().items() if k != "seed"}
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]


def plan(names: list[str], seeds: int, overrides: dict, runs_dir: str | Path, study=None) -> list[Job]:
    """The runs of comparisons or variants (nbkit's, or a study's: nbkit.design.comparisons_file.Study), `seeds`
    seeds each counting up from the seed setting."""
    if seeds < 1:
        raise ValueError(f"--seeds expects at least 1, got {seeds}")
    jobs = []
    for name in expand(names, study):
        variant = get_variant(name, study)
        base, note = fit_warmup(variant.settings.replace(**overrides), "warmup_num_steps" in overrides)
        for seed in range(base.seed, base.seed + seeds):
            s = base.replace(seed=seed)
            run_dir = run_path(runs_dir, dataset_name(s.dataset), name, f"{settings_key(s)}-s{seed}")
            jobs.append(Job(name, s, run_dir, variant.definition() if variant.source else None, note=note))
    return jobs


def job_state(job: Job) -> str:
    """done (skip), resume (has a checkpoint), or new."""
    if read_status(job.run_dir).get("state") == "done":
        return "done"
    if has_checkpoint(job.run_dir) and (job.run_dir / CONFIG).exists():
        return "resume"
    return "new"


def command(job: Job, device: str, label: str | None = None) -> list[str]:
    """The child's command line: resume from the checkpoint, begin again, or start. The settings
    travel whole, as JSON: the child trains with exactly the job's."""
    cmd = [sys.executable, "-m", "nbkit", "train"]
    if job_state(job) == "resume":  # with the run asked for: a folder that records another is refused, never built
        return cmd + [job.variant, "--resume", str(job.run_dir), "--device", device,
                      "--settings-json", json.dumps(job.settings.to_dict()), *_definition(job)]
    # an attempt that never reached a checkpoint begins again (the child clears it under its lock)
    restart = ["--restart"] if (job.run_dir / CONFIG).exists() else []
    return cmd + [job.variant, "--run-dir", str(job.run_dir), "--device", device, *restart,
                  *(["--label", label] if label else []), "--settings-json", json.dumps(job.settings.to_dict()),
                  *_definition(job), *(["--tune-json", json.dumps(job.tune)] if job.tune else [])]


def _definition(job: Job) -> list[str]:
    """A comparisons file's variant travels whole to the child, which never reads the file."""
    return ["--variant-json", json.dumps(job.definition)] if job.definition else []


def packs(queue: list[Job], size: int) -> list[list[Job]]:
    """The queue in units of one child process: up to `size` new runs of one variant that differ
    only in their seed train as one pack (nbkit.training.pack); a run resuming from a checkpoint trains alone."""
    if size < 1:
        raise ValueError(f"--pack expects at least 1, got {size}")
    units: list[list[Job]] = []
    packable = False  # whether the last unit takes more runs
    for job in queue:
        last = units[-1] if units else None
        new = job_state(job) == "new"
        if (packable and new and len(last) < size and job.variant == last[0].variant
                and job.settings.replace(seed=0) == last[0].settings.replace(seed=0)):
            last.append(job)
        else:
            units.append([job])
            packable = new
    return units


def pack_command(jobs: list[Job], device: str, label: str | None = None) -> list[str]:
    """The child's command line for a pack: every run's directory and settings, as JSON."""
    if len(jobs) == 1:
        return command(jobs[0], device, label)
    runs = [{"run_dir": str(j.run_dir), "settings": j.settings.to_dict()} for j in jobs]
    restart = ["--restart"] if any((j.run_dir / CONFIG).exists() for j in jobs) else []
    return [sys.executable, "-m", "nbkit", "train", jobs[0].variant, "--device", device, *restart,
            *(["--label", label] if label else []), "--pack-json", json.dumps(runs), *_definition(jobs[0])]


# exec'd in front of a child process: the kernel sends it a signal when its parent dies
_DIES_WITH_PARENT = """import os, sys
try:
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, int(sys.argv[2]))  # PR_SET_PDEATHSIG (Linux)
except (AttributeError, OSError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit("nbkit: the process that started this run is gone")
os.execv(sys.argv[3], sys.argv[3:])
"""


def dies_with_parent(cmd: list[str], signum: int) -> list[str]:
    """cmd, started so that it receives signum when this process dies, even by SIGKILL (Linux)."""
    return [sys.executable, "-c", _DIES_WITH_PARENT, str(os.getpid()), str(int(signum)), *cmd]


def slots(device: str, jobs_per_device: int) -> list[tuple[str, dict]]:
    """(device argument, environment) for each concurrent run."""
    if jobs_per_device < 1:
        raise ValueError(f"--jobs expects at least 1, got {jobs_per_device}")
    if device != "cpu":  # importing torch takes seconds: only to look for GPUs
        import torch
    if device in ("auto", "cuda") and torch.cuda.is_available():
        return [("cuda", {"CUDA_VISIBLE_DEVICES": str(g)})
                for g in range(torch.cuda.device_count()) for _ in range(jobs_per_device)]
    if device == "cuda":
        raise ValueError("device cuda was asked for but no CUDA GPU is available; use --device cpu")
    threads = max(1, (os.cpu_count() or 1) // jobs_per_device)
    return [("cpu", {"OMP_NUM_THREADS": str(threads), "CUDA_VISIBLE_DEVICES": ""})] * jobs_per_device


class Display:
    """On a terminal, a tqdm bar per running run (steps, images/s) under one for the sweep;
    events are printed above the bars. Elsewhere (a log file), or where tqdm is not installed (a
    bare GPU machine's Python), events only, one per line."""

    def __init__(self, total: int, stream=None):
        self.stream = stream or sys.stderr
        self.tty, self.sweep = self.stream.isatty(), None
        self.bars: dict[str, object] = {}  # a running job's label -> its bar
        if self.tty:
            try:
                from tqdm import tqdm
            except ImportError:
                self.tty = False
                return
            self.sweep = tqdm(total=total, desc="sweep", unit="run", file=self.stream, position=0, dynamic_ncols=True,
                              bar_format="{desc}: {n}/{total} runs |{bar}| {postfix}")

    def event(self, text: str) -> None:
        if self.tty:
            self.sweep.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def draw(self, running: list[Job], counts: dict) -> None:
        if not self.tty:
            return
        from tqdm import tqdm

        self.sweep.n = counts["done"] + counts["failed"] + counts["stopped"]
        self.sweep.set_postfix_str(f"{counts['failed']} failed, {len(running)} running, {counts['queued']} queued",
                                   refresh=False)
        self.sweep.refresh()
        labels = {job.label for job in running}
        for label in [l for l in self.bars if l not in labels]:
            self.bars.pop(label).close()
        for job in running:
            bar = self.bars.get(job.label)
            if bar is None:
                taken = {b.pos for b in self.bars.values()}
                position = next(i for i in range(1, len(self.bars) + 2) if i not in taken and -i not in taken)
                bar = self.bars[job.label] = tqdm(total=job.settings.max_iter, desc=f"  {job.label}", unit="step",
                                                  file=self.stream, position=position, leave=False, dynamic_ncols=True)
            st = read_status(job.run_dir)
            bar.n = min(int(st.get("step") or 0), job.settings.max_iter)
            ips = st.get("images_per_second")
            bar.set_postfix_str(f"{ips:,.0f} img/s" if isinstance(ips, (int, float)) else "", refresh=False)
            bar.refresh()

    def close(self, final: str | None = None) -> None:
        """Remove the run bars, end the sweep's, then print the final line."""
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()
        if self.sweep is not None:
            self.sweep.close()
        if final:
            self.event(final)


class Outcome(dict):
    """The sweep's jobs by how they ended: done, skipped (finished before), failed, stopped, and
    busy (left to another process writing the same run)."""

    def __init__(self):
        super().__init__(done=[], skipped=[], failed=[], stopped=[], busy=[])

    def settle(self, job: Job, returncode: int, stopping: bool, display: Display, status_before=None,
               log: Path | None = None) -> None:
        """File a finished child's run (from its exit code and status.json). status_before: the
        status file's stamp when the child started; a child that failed before writing one has
        its own error (the last line it printed, in `log`: default its train.log) recorded, not
        the earlier attempt's state."""
        log = log or job.run_dir / TRAIN_LOG
        state = read_status(job.run_dir).get("state")
        if state == "running" and returncode == 0:  # a pack that left it to another process writing it
            returncode = BUSY
        if state == "running" and returncode < 0:  # killed before it could say so itself
            state = "stopped" if stopping else "failed"
            again = ("resumes it from its last checkpoint" if has_checkpoint(job.run_dir)
                     else "starts it again from step 0 (it has no checkpoint)")
            mark(job.run_dir, state, f"the process was killed by {signal.Signals(-returncode).name}; "
                                     f"running the sweep again {again}")
        elif returncode > 0 and returncode != BUSY and status_stamp(job.run_dir) == status_before:
            state = "failed"  # it failed before it could write a status (e.g. an unreadable checkpoint)
            mark(job.run_dir, state, last_line(log))
        if returncode == 0 and state == "done":
            drop_previous(job.run_dir)  # a copied-back fallback checkpoint (Ray) is not needed either
            self["done"].append(job)
            display.event(f"done {job.label}")
        elif returncode == BUSY:
            self["busy"].append(job)
            display.event(f"skipped {job.label}: another process is writing it")
        elif state == "stopped" or (stopping and state != "failed"):
            self["stopped"].append(job)
            display.event(f"stopped {job.label} (resume by running the sweep again)")
        else:
            self["failed"].append(job)
            why = read_status(job.run_dir).get("reason") or last_line(log)
            display.event(f"FAILED {job.label}: {terminal(why)}")  # a reason is data from the run folder

    def counts(self, queued: int) -> dict:
        c = {k: len(v) for k, v in self.items()} | {"queued": queued}
        c["done"] += c.pop("skipped") + c.pop("busy")
        return c

    def final_line(self) -> str:
        return (f"sweep: {len(self['done'])} done, {len(self['skipped'])} skipped, "
                f"{len(self['failed'])} failed, {len(self['stopped'])} stopped"
                + (f", {len(self['busy'])} left to another process" if self["busy"] else ""))


def longest_first(jobs: list[Job]) -> list[Job]:
    """The jobs by estimated work, most first (forward FLOPs x batch x steps), so that the
    sweep's last minutes are not one long run alone. Seeds of a variant keep their order."""
    if len({j.settings.model for j in jobs}) < 2:
        return list(jobs)  # one architecture: nothing worth counting (its options barely change the work)
    from nbkit.design.models import forward_flops

    per_image: dict[str, float] = {}
    try:
        for j in jobs:
            if j.settings.model not in per_image:
                per_image[j.settings.model] = forward_flops(j.settings)
    except Exception:  # noqa: BLE001 - an estimate never stops a sweep; the run reports its own error
        return list(jobs)
    work = lambda j: per_image[j.settings.model] * j.settings.batch_size * j.settings.max_iter
    return sorted(jobs, key=work, reverse=True)


def begin(jobs: list[Job], stream=None) -> tuple[Outcome, list[Job], Display]:
    """Every sweep's start: finished runs are skipped; the rest queue, longest first."""
    outcome, queue = Outcome(), []
    for job in jobs:
        (outcome["skipped"] if job_state(job) == "done" else queue).append(job)
    queue = longest_first(queue)
    display = Display(len(jobs), stream)
    if outcome["skipped"]:
        display.event(f"sweep: skipping {len(outcome['skipped'])} finished run(s)")
    return outcome, queue, display


def status_stamp(run_dir: Path):
    """(mtime, size) of a run's status.json, or None: whether a child wrote one since."""
    try:
        st = (run_dir / STATUS).stat()
        return st.st_mtime_ns, st.st_size
    except OSError:
        return None


def clip(line: str, limit: int = MAX_TEXT) -> str:
    """A line of at most `limit` characters (what a status reason holds): a longer one loses its
    middle, since its beginning says what it is ("nbkit train: error: ...") and its end what to do."""
    return line if len(line) <= limit else line[:limit // 2 - 1] + " … " + line[-(limit - limit // 2 - 2):]


def last_line(path: Path) -> str:
    """The last line a child wrote (its error, when it failed before writing a status)."""
    try:
        lines = files.tail_lines(path)  # its end only, and never a FIFO or a link
        return clip(lines[-1]) if lines else "no output"
    except OSError:
        return "no output"


def _start(unit: list[Job], slot: tuple, label: str | None) -> subprocess.Popen:
    """The child process of a unit (one run or a pack), its output in the first run's train.log."""
    for job in unit:
        job.run_dir.mkdir(parents=True, exist_ok=True)
    for job in unit[1:]:  # one process, one output: the pack's first run keeps it
        with files.open_append(job.run_dir / TRAIN_LOG) as log:
            log.write(f"nbkit: trained in a pack; the process's output is in {unit[0].run_dir / TRAIN_LOG}\n")
    with files.open_append(unit[0].run_dir / TRAIN_LOG) as log:  # a killed sweep's runs stop, checkpointed
        return subprocess.Popen(dies_with_parent(pack_command(unit, slot[0], label), signal.SIGTERM),
                                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **slot[1]})


def run_sweep(jobs: list[Job], device: str = "auto", jobs_per_device: int = 1, poll: float = 0.5,
              stream=None, label: str | None = None, pack: int = 1, watch=None) -> Outcome:
    """Run every job not yet done in local processes, up to `pack` seeds of a variant per process;
    returns the jobs by outcome. watch(job) -> bool, asked at every poll of a running job: True
    stops it (SIGTERM: a checkpoint, status stopped), as a tuner's pruner does."""
    outcome, queue, display = begin(jobs, stream)
    units, free = packs(queue, pack), slots(device, jobs_per_device)
    running: dict[subprocess.Popen, tuple[list[Job], tuple, list]] = {}

    def stop_children(_signal_name: str) -> None:
        for p in running:
            p.send_signal(signal.SIGTERM)  # each run checkpoints and marks itself stopped

    with stop_signals(stop_children) as stop_requested:
        while units or running:
            while units and free and not stop_requested:
                unit, slot = units.pop(0), free.pop(0)
                action = "resuming" if job_state(unit[0]) == "resume" else "starting"
                before = [status_stamp(job.run_dir) for job in unit]
                try:
                    p = _start(unit, slot, label)
                except OSError as e:  # its folder's own files (a FIFO, link or folder named train.log): it alone fails
                    free.append(slot)
                    why = f"cannot start: {Path(e.filename or '?').name}: {e.strerror or type(e).__name__}"
                    for job in unit:
                        with contextlib.suppress(OSError):
                            mark(job.run_dir, "failed", why)
                        outcome["failed"].append(job)
                        display.event(f"FAILED {job.label}: {terminal(why)}")
                    continue
                running[p] = (unit, slot, before)
                packed = f" (packed with {', '.join(j.label for j in unit[1:])})" if len(unit) > 1 else ""
                display.event(f"{action} {unit[0].label}{packed} -> {unit[0].run_dir}")
            for p, (unit, _, _) in running.items() if watch else ():
                if p.poll() is None and any([watch(job) for job in unit]):
                    p.send_signal(signal.SIGTERM)
            for p in [p for p in running if p.poll() is not None]:
                unit, slot, before = running.pop(p)
                free.append(slot)
                for job, stamp in zip(unit, before):  # a pack's output (its error) is in its first run's log
                    outcome.settle(job, p.returncode, bool(stop_requested), display, status_before=stamp,
                                   log=unit[0].run_dir / TRAIN_LOG)
            if stop_requested:
                outcome["stopped"] += [job for unit in units for job in unit]
                units = []
            display.draw([job for unit, _, _ in running.values() for job in unit],
                         outcome.counts(sum(map(len, units))))
            time.sleep(poll if running else 0)
    display.close(outcome.final_line())
    return outcome
