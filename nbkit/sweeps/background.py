"""Sweeps started from a notebook: `nbkit sweep` in a process of its own, so the notebook stays
responsive; listed and stopped through a registry in the runs directory (<runs>/.sweeps/, one
JSON entry and one log per launched sweep).

A registry entry is a claim anyone who can write the runs directory can forge, so the stop
button signals a process only when it is proven to be a sweep this user launched: this process
holds its handle, or the entry is a file of this user's and /proc shows, for its pid, the start
time and `nbkit sweep` command line recorded at launch and, in the process's environment (which
only its owner can read), the random token the entry holds. Entries of other users (a shared
runs directory) are left alone, neither trusted nor removed."""

from __future__ import annotations

import datetime
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

from nbkit.rundir import files
from nbkit.rundir.runlog import SWEEPS, writable

BACKENDS = ("local", "ray")
TOKEN_ENV = "NBKIT_SWEEP_TOKEN"
_CHILDREN: dict[int, subprocess.Popen] = {}  # sweeps this process launched, by pid (to reap them)


def sweep_args(runs_dir: str | Path, variants: list[str], dataset: str, max_iter: int, seeds: int,
               device: str = "auto", jobs: int = 1, eval_every: int | None = None, backend: str = "local",
               address: str = "", comparisons: str | None = None, settings: str = "",
               warmup: int | None = None) -> list[str]:
    """`nbkit sweep`'s arguments for a launch. Every value is checked or bound to its option
    (`--dataset=...`), so none can pass for another option (`--set=...`); settings: any other
    settings as KEY=VALUE words (a tuned trial's, say), each checked and bound to its own --set."""
    from nbkit.design.comparisons import expand
    from nbkit.design.comparisons_file import load_study

    if not variants:
        raise ValueError("pick at least one variant to launch")
    expand(list(variants), load_study(comparisons))  # known names only (with the closest valid one)
    if backend not in BACKENDS:
        raise ValueError(f"backend expects local or ray, got {backend!r}")
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device expects auto, cpu or cuda, got {device!r}")
    address = address.strip()
    if address.startswith("-"):
        raise ValueError(f"Ray address expects auto or HOST:PORT, got {address!r}")
    args = [*variants, f"--dataset={dataset}", "--max-iter", str(int(max_iter)), "--seeds", str(int(seeds)),
            "--jobs", str(int(jobs)), f"--device={device}", f"--runs-dir={runs_dir}", "--backend", backend]
    if eval_every:
        args += ["--eval-every", str(int(eval_every))]
    if warmup is not None:
        if not 0 <= int(warmup) < int(max_iter):
            raise ValueError(f"warm-up expects 0 to {int(max_iter) - 1} steps (fewer than the run's {int(max_iter)}, "
                             f"or the learning rate never reaches its peak), got {int(warmup)}")
        args += ["--set", f"warmup_num_steps={int(warmup)}"]
    if backend == "ray" and address:
        args += ["--address", address]
    args += [f"--set={k}={v}" for k, v in launch_settings(settings).items()]
    if comparisons:
        args += [f"--comparisons={comparisons}"]
    return args


def launch_settings(text: str) -> dict[str, str]:
    """KEY=VALUE words (the launch form's settings field) as a dict, every key and value checked."""
    from nbkit.design.settings import Settings, parse_assignments

    pairs = parse_assignments(str(text or "").split())
    Settings(**pairs)  # an unknown key or a value out of range: one line, nothing launched
    return pairs


def launch_sweep(runs_dir: str | Path, variants: list[str], dataset: str, max_iter: int, seeds: int,
                 device: str = "auto", jobs: int = 1, eval_every: int | None = None, backend: str = "local",
                 address: str = "", comparisons: str | Path | None = None, settings: str = "",
                 warmup: int | None = None) -> dict:
    """Start `nbkit sweep` in the background; backend "ray" sends the runs to a Ray cluster
    (address: auto, HOST:PORT, or empty for RAY_ADDRESS or a new local instance), whose logs
    land in runs_dir as local ones do; comparisons: a comparisons file whose variants are among
    `variants` (nbkit.design.comparisons_file). Returns the registry entry (pid, args, started, log)."""
    runs_dir = Path(runs_dir)
    comparisons = str(Path(comparisons).resolve()) if comparisons else None
    args = sweep_args(runs_dir, variants, dataset, max_iter, seeds, device, jobs, eval_every, backend, address,
                      comparisons, settings, warmup)
    registry = writable(runs_dir / SWEEPS)  # said before anything starts: a sweep nobody could stop is worse
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    fd, log_path = tempfile.mkstemp(prefix=f"{stamp}-", suffix=".log", dir=registry)
    command = [sys.executable, "-m", "nbkit", "sweep", *args]
    token = secrets.token_hex(16)
    with os.fdopen(fd, "a") as log:  # its own session: the notebook server's signals do not reach it
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env={**os.environ, TOKEN_ENV: token})
    _CHILDREN[proc.pid] = proc
    info = {"pid": proc.pid, "start_ticks": _proc_start(proc.pid), "command": command, "token": token, "args": args,
            "started": stamp, "log": log_path, "runs_dir": str(runs_dir),
            "request": {"variants": list(variants), "dataset": dataset, "max_iter": int(max_iter),
                        "seeds": int(seeds), "eval_every": int(eval_every) if eval_every else None,
                        "comparisons": comparisons, "settings": launch_settings(settings),
                        "warmup": int(warmup) if warmup is not None else None}}
    files.write_text(registry / f"{proc.pid}.json", json.dumps(info))
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


def _proc_token(pid: int) -> str | None:
    """The sweep token in the process's environment; readable only by its owner (and root)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    prefix = f"{TOKEN_ENV}=".encode()
    return next((v[len(prefix):].decode(errors="replace") for v in environ if v.startswith(prefix)), None)


def _is_sweep(command) -> bool:
    return isinstance(command, list) and command[1:4] == ["-m", "nbkit", "sweep"]


def _ours(info, where: Path) -> bool:
    """Whether a registry entry is provably a sweep launched here and still running: this process
    holds its handle, or /proc shows the start time, `nbkit sweep` command line and token that
    were recorded. A reused pid, an entry edited by hand or copied from elsewhere is never signalled."""
    pid = info.get("pid") if isinstance(info, dict) else None
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 1:
        warnings.warn(f"{where}: ignoring a launched-sweep entry without a valid pid (got {pid!r:.40})", stacklevel=3)
        return False
    proc = _CHILDREN.get(pid)
    if proc is not None:
        return proc.poll() is None
    token = info.get("token")
    return (isinstance(token, str) and len(token) >= 32 and _is_sweep(info.get("command"))
            and info.get("start_ticks") is not None and _proc_start(pid) == info.get("start_ticks")
            and _proc_cmdline(pid) == info.get("command") and secrets.compare_digest(_proc_token(pid) or "", token))


def _here(info, runs_dir: str | Path) -> bool:
    """Whether an entry's sweep writes this runs directory (not the one a copied entry came from)."""
    try:
        return os.path.samefile(info.get("runs_dir"), runs_dir)
    except (AttributeError, TypeError, ValueError, OSError):
        return False


def _own_file(path: Path) -> bool:
    try:
        return path.lstat().st_uid == os.getuid()  # the entry itself: a link to a file of ours is not ours
    except OSError:
        return False


def active_sweeps(runs_dir: str | Path) -> list[dict]:
    """The registry entries of this user's launched sweeps still running; this user's entries of
    ended ones (or whose pid now belongs to another process) are removed where the folder allows."""
    registry = Path(runs_dir) / SWEEPS
    out = []
    try:
        entries = sorted(registry.glob("*.json")) if registry.is_dir() else []
    except OSError:
        return out
    for f in entries:
        if not _own_file(f):  # another user's sweep on a shared runs directory: not ours to show or stop
            continue
        try:
            info = json.loads(files.read_regular(f, 1 << 16))
        except (OSError, ValueError, RecursionError):
            warnings.warn(f"{f}: ignoring a launched-sweep entry that is not readable JSON", stacklevel=2)
            continue
        if _ours(info, f):
            if _here(info, runs_dir):  # not an entry copied with a runs folder (its sweep writes the original)
                out.append(info)
        elif isinstance(info, dict) and isinstance(info.get("pid"), int) and info["pid"] > 1:
            try:
                f.unlink()
            except OSError:  # a registry this user cannot change: the entry just stays
                pass
    return out


def stop_sweeps(runs_dir: str | Path) -> int:
    """SIGTERM every active sweep: its runs checkpoint and are marked stopped. Returns how many."""
    stopped = 0
    for info in active_sweeps(runs_dir):
        try:
            os.kill(info["pid"], signal.SIGTERM)
            stopped += 1
        except (ProcessLookupError, PermissionError):
            pass
    return stopped


def last_error(log: str | Path) -> str | None:
    """The one line that says why a sweep failed: its last `error:` or `FAILED` line."""
    from nbkit.sweeps.sweep import clip

    try:
        lines = files.tail_lines(log)  # its end only, however long the log
    except OSError:
        return None
    return next((clip(l) for l in reversed(lines) if "error:" in l or l.startswith("FAILED")), None)


def _final_counts(log: str | Path) -> dict[str, int]:
    """The counts of a sweep's final line ("sweep: 2 done, 0 skipped, 0 failed, 1 stopped"), or {}."""
    try:
        lines = files.tail_lines(log)
    except OSError:
        return {}
    final = next((l for l in reversed(lines) if l.startswith("sweep: ") and " stopped" in l), "")
    counts = {}
    for part in final[len("sweep: "):].split(","):
        number, _, word = part.strip().partition(" ")
        if number.isdigit():
            counts[word.split(" ")[0]] = int(number)
    return counts


def sweep_state(info: dict) -> dict:
    """A launched sweep now: state (running, done, stopped or failed), its one-line error if it
    failed, and its runs (variant, seed, state, step of steps, reason), queued ones included."""
    from nbkit.errors import STOPPED

    proc = _CHILDREN.get(info.get("pid"))
    code = proc.poll() if proc is not None else None
    running = _ours(info, Path(info.get("log", "")))
    error = last_error(info["log"]) if "log" in info else None
    counts = _final_counts(info["log"]) if "log" in info else {}
    if running:
        state = "running"
    elif code == STOPPED or (counts.get("stopped") and not counts.get("failed")):
        state = "stopped"
    else:
        state = "failed" if (code not in (None, 0) or error) else "done"
    # a run without a status is queued only while its sweep goes on: after, it never started
    never = {"running": "queued", "failed": "not started (the sweep failed)",
             "stopped": "not started (the sweep was stopped)"}.get(state, "not started")
    return {"state": state, "error": error if state == "failed" else None, "runs": _planned_runs(info, never)}


def _planned_runs(info: dict, never: str = "queued") -> list[dict]:
    from nbkit.design.comparisons_file import load_study
    from nbkit.rundir.runlog import read_status
    from nbkit.sweeps.sweep import plan

    req = info.get("request") or {}
    overrides = {"dataset": req.get("dataset"), "max_iter": req.get("max_iter")}
    if req.get("eval_every"):
        overrides["eval_every"] = req["eval_every"]
    if isinstance(req.get("settings"), dict):
        overrides.update(req["settings"])
    if isinstance(req.get("warmup"), int):
        overrides["warmup_num_steps"] = req["warmup"]
    comparisons = req.get("comparisons") if isinstance(req.get("comparisons"), str) else None
    try:
        jobs = plan(req.get("variants") or [], req.get("seeds") or 1, overrides, info["runs_dir"],
                    load_study(comparisons))
    except (ValueError, KeyError, OSError):
        return []
    rows = []
    for job in jobs:
        st = read_status(job.run_dir) or {}
        rows.append({"variant": job.variant, "seed": job.settings.seed, "state": st.get("state") or never,
                     "step": f"{st.get('step', 0)} of {job.settings.max_iter}", "reason": st.get("reason") or ""})
    return rows
