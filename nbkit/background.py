"""Sweeps started from a notebook: `nbkit sweep` in a process of its own, so the notebook stays
responsive; listed and stopped through a registry in the runs directory (<runs>/.sweeps/, one
JSON file and one log per launched sweep). Only a process proven to be the launched sweep is
ever signalled (Linux: its start time and command line in /proc)."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

from .runlog import SWEEPS

BACKENDS = ("local", "ray")
_CHILDREN: dict[int, subprocess.Popen] = {}  # sweeps this process launched, by pid (to reap them)


def launch_sweep(runs_dir: str | Path, variants: list[str], dataset: str, max_iter: int, seeds: int,
                 device: str = "auto", jobs: int = 1, eval_every: int | None = None, backend: str = "local",
                 address: str = "", comparisons: str | Path | None = None) -> dict:
    """Start `nbkit sweep` in the background; backend "ray" sends the runs to a Ray cluster
    (address: auto, HOST:PORT, or empty for RAY_ADDRESS or a new local instance), whose logs
    land in runs_dir as local ones do; comparisons: a comparisons file whose variants are among
    `variants` (nbkit.study). Returns the registry entry (pid, args, started, log)."""
    if not variants:
        raise ValueError("pick at least one variant to launch")
    if backend not in BACKENDS:
        raise ValueError(f"backend expects local or ray, got {backend!r}")
    runs_dir = Path(runs_dir)
    args = [*variants, "--dataset", dataset, "--max-iter", str(int(max_iter)), "--seeds", str(int(seeds)),
            "--jobs", str(int(jobs)), "--device", device, "--runs-dir", str(runs_dir), "--backend", backend]
    if eval_every:
        args += ["--eval-every", str(int(eval_every))]
    if backend == "ray" and address.strip():
        args += ["--address", address.strip()]
    if comparisons:
        comparisons = str(Path(comparisons).resolve())
        args += ["--comparisons", comparisons]
    registry = runs_dir / SWEEPS
    registry.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    log_path = registry / f"{stamp}.log"
    command = [sys.executable, "-m", "nbkit", "sweep", *args]
    with open(log_path, "a") as log:  # its own session: the notebook server's signals do not reach it
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    _CHILDREN[proc.pid] = proc
    info = {"pid": proc.pid, "start_ticks": _proc_start(proc.pid), "command": command, "args": args,
            "started": stamp, "log": str(log_path), "runs_dir": str(runs_dir),
            "request": {"variants": list(variants), "dataset": dataset, "max_iter": int(max_iter),
                        "seeds": int(seeds), "eval_every": int(eval_every) if eval_every else None,
                        "comparisons": comparisons or None}}
    (registry / f"{proc.pid}.json").write_text(json.dumps(info))
    return info


def _proc_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])  # a zombie has ended


def _proc_cmdline(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return None


def _ours(info, where: Path) -> bool:
    """Whether a registry entry is provably a sweep launched here and still running: this process
    holds its handle, or /proc shows the same start time and the command line that was launched.
    A reused pid, an entry edited by hand or copied from another machine is never signalled."""
    pid = info.get("pid") if isinstance(info, dict) else None
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 1:
        warnings.warn(f"{where}: ignoring a launched-sweep entry without a valid pid (got {pid!r})", stacklevel=3)
        return False
    proc = _CHILDREN.get(pid)
    if proc is not None:
        return proc.poll() is None
    return (info.get("start_ticks") is not None and _proc_start(pid) == info.get("start_ticks")
            and _proc_cmdline(pid) == info.get("command"))


def active_sweeps(runs_dir: str | Path) -> list[dict]:
    """The registry entries of launched sweeps still running; entries of ended ones (or whose pid
    now belongs to another process) are removed."""
    registry = Path(runs_dir) / SWEEPS
    out = []
    for f in sorted(registry.glob("*.json")) if registry.is_dir() else []:
        try:
            info = json.loads(f.read_text())
        except (OSError, ValueError, RecursionError):
            warnings.warn(f"{f}: ignoring a launched-sweep entry that is not readable JSON", stacklevel=2)
            continue
        if _ours(info, f):
            out.append(info)
        elif isinstance(info, dict) and isinstance(info.get("pid"), int) and info["pid"] > 1:
            f.unlink(missing_ok=True)
    return out


def stop_sweeps(runs_dir: str | Path) -> int:
    """SIGTERM every active sweep: its runs checkpoint and are marked stopped. Returns how many."""
    stopped = 0
    for info in active_sweeps(runs_dir):
        try:
            os.kill(info["pid"], signal.SIGTERM)
            stopped += 1
        except ProcessLookupError:
            pass
    return stopped


def last_error(log: str | Path) -> str | None:
    """The one line that says why a sweep failed: its last `error:` or `FAILED` line."""
    try:
        lines = [l.strip() for l in Path(log).read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        return None
    return next((l[-300:] for l in reversed(lines) if "error:" in l or l.startswith("FAILED")), None)


def sweep_state(info: dict) -> dict:
    """A launched sweep now: state (running, done or failed), its one-line error if it failed,
    and its runs (variant, seed, state, step of steps, reason), queued ones included."""
    proc = _CHILDREN.get(info.get("pid"))
    code = proc.poll() if proc is not None else None
    running = _ours(info, Path(info.get("log", "")))
    error = last_error(info["log"]) if "log" in info else None
    state = "running" if running else "failed" if (code not in (None, 0) or error) else "done"
    return {"state": state, "error": error if state == "failed" else None, "runs": _planned_runs(info)}


def _planned_runs(info: dict) -> list[dict]:
    from .runlog import read_status
    from .study import load_study
    from .sweep import plan

    req = info.get("request") or {}
    overrides = {"dataset": req.get("dataset"), "max_iter": req.get("max_iter")}
    if req.get("eval_every"):
        overrides["eval_every"] = req["eval_every"]
    comparisons = req.get("comparisons") if isinstance(req.get("comparisons"), str) else None
    try:
        jobs = plan(req.get("variants") or [], req.get("seeds") or 1, overrides, info["runs_dir"],
                    load_study(comparisons))
    except (ValueError, KeyError, OSError):
        return []
    rows = []
    for job in jobs:
        st = read_status(job.run_dir) or {}
        rows.append({"variant": job.variant, "seed": job.settings.seed, "state": st.get("state") or "queued",
                     "step": f"{st.get('step', 0)} of {job.settings.max_iter}", "reason": st.get("reason") or ""})
    return rows
