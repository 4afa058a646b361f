"""The run directory: the contract between the trainer and everything that reads runs.

<runs-dir>/                     resolved by runs_dir(): the same for the CLI, notebooks and reports
    <dataset>/<variant>/<run-id>/
        config.json     variant, label, run id, seed, resolved settings, dataset, parameters,
                        steps per epoch, world size, versions, device, start time
        metrics.jsonl   one JSON object per line: step, split, time, then the split's measures
        status.json     state (running, done, failed, stopped), step, images_per_second, reason
        checkpoint.pt   model, optimiser, step, RNG states, data order, settings
        checkpoint.prev.pt  the one before, resumed from when the last is unreadable
        train.log       a sweep's child output
        .lock           held (flock) by the one process writing the run
    .sweeps/            sweeps launched from a notebook (nbkit.sweeps.background) and Ray markers

This module owns the layout, the writer, claiming and locking a run directory, resume checks,
marking a run on its behalf, and reading a single run's files, each record checked against its
shape in nbkit.rundir.schema. Checkpoints are nbkit.rundir.checkpoint's; frames over many runs nbkit.rundir.reader's.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Iterator

from nbkit.design.settings import Settings
from nbkit.errors import RunBusy, RunLogLost
from nbkit.rundir import files, schema
from nbkit.rundir.checkpoint import CHECKPOINT, PREVIOUS, any_checkpoint_loads, saved_identity
from nbkit.rundir.schema import STATES

CONFIG, METRICS, STATUS = "config.json", "metrics.jsonl", "status.json"
TRAIN_LOG, LOCK, SWEEPS = "train.log", ".lock", ".sweeps"
RUNS_DIR_ENV = "NBKIT_RUNS_DIR"
MAX_METRICS_BYTES = 256 << 20  # read at most this much of one metrics.jsonl
MAX_ROW_BYTES = 1 << 20  # a metrics row nbkit writes is a few hundred bytes
MAX_JSON_BYTES = 4 << 20  # a config.json or status.json larger than this is not one nbkit wrote


def runs_dir(value: str | Path | None = None) -> Path:
    """The runs directory, as an absolute path: the value given (relative to the working
    directory), else $NBKIT_RUNS_DIR, else artifacts/runs of the project, which is the nearest
    folder at or above the working directory holding pyproject.toml or .git (else the working
    directory itself). So `nbkit train` run anywhere in the project writes where the notebooks read."""
    value = value or os.environ.get(RUNS_DIR_ENV)
    if value:
        return Path(os.path.abspath(os.path.expanduser(str(value))))
    here = Path.cwd()
    project = next((d for d in (here, *here.parents) if (d / "pyproject.toml").is_file() or (d / ".git").exists()),
                   here)
    return project / "artifacts" / "runs"


# --- writing ---------------------------------------------------------------------------------

def write_json_atomic(path: Path, data: dict, in_place_if_full: bool = False) -> None:
    """Write to a fresh temporary file and rename (nbkit.rundir.files), so a reader never sees half a
    file. When that fails (a full disk, a folder turned read-only) no temporary file is left;
    with in_place_if_full an existing regular file is then rewritten in place, reusing its own
    space, so a run can still say it failed."""
    text = json.dumps(data, indent=1)
    try:
        files.write_text(path, text)
    except OSError:
        if not (in_place_if_full and path.is_file() and not path.is_symlink()):
            raise
        with files.open_in_place(path) as f:
            f.truncate(0)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


class RunWriter:
    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self._metrics = files.open_append(self.dir / METRICS)
        stat = os.fstat(self._metrics.fileno())
        self._metrics_id = (stat.st_dev, stat.st_ino)

    def config(self, config: dict) -> None:
        write_json_atomic(self.dir / CONFIG, config)

    def status(self, state: str, step: int, **fields) -> None:
        assert state in STATES, state
        write_json_atomic(self.dir / STATUS, {"state": state, "step": step, **fields}, in_place_if_full=True)

    def metrics(self, rows: list[dict]) -> None:
        self.check()
        # whole lines in one write, flushed: a reader sees complete rows or nothing new
        self._metrics.write("".join(json.dumps(r, allow_nan=True) + "\n" for r in rows))
        self._metrics.flush()

    def check(self) -> None:
        """Raise RunLogLost when metrics.jsonl is no longer the file written here (deleted or
        replaced meanwhile): a run whose log is gone must not end as done."""
        try:
            stat = os.stat(self.dir / METRICS)
            same = (stat.st_dev, stat.st_ino) == self._metrics_id
        except FileNotFoundError:
            same = False
        if not same:
            raise RunLogLost(f"{self.dir / METRICS} was deleted or replaced while the run was "
                             "writing it, so rows it logged are lost")

    def close(self) -> None:
        try:
            self._metrics.close()
        except OSError:  # the rest of a row a full disk refused: the reader skips a cut last line
            pass


class NoWriter:
    """What the processes of a torchrun run other than rank 0 write: nothing."""

    def config(self, config): pass
    def status(self, state, step, **fields): pass
    def metrics(self, rows): pass
    def check(self): pass
    def close(self): pass


def truncate_metrics(path: Path, last_step: int) -> None:
    """Keep only whole rows up to last_step (a resumed run redoes the rest); atomic rewrite."""
    if not path.exists():
        return
    with files.open_regular(path) as f, files.replacing(path) as out:  # line by line: never the file whole
        read = 0
        while read < MAX_METRICS_BYTES and (line := f.readline(MAX_ROW_BYTES + 1)):
            read += len(line)
            if len(line) > MAX_ROW_BYTES:  # a row longer than any nbkit writes: skipped to its end
                while (not line.endswith(b"\n") and read < MAX_METRICS_BYTES and (line := f.readline(1 << 20))):
                    read += len(line)
                continue
            try:  # a last line without its line break is kept when it is a whole row, as before
                if json.loads(line)["step"] <= last_step:
                    out.write(line if line.endswith(b"\n") else line + b"\n")
            except (ValueError, KeyError, TypeError, IndexError, RecursionError):
                continue  # a cut or garbage line is dropped here


def mark(run_dir: Path, state: str, reason: str) -> None:
    """Set a run's state on its behalf (its process could not say so itself: killed, lost)."""
    assert state in STATES, state
    status = read_status(run_dir) or {"step": 0}
    status.update(state=state, reason=reason)
    run_dir.mkdir(parents=True, exist_ok=True)  # a run that never reached this machine has no folder yet
    write_json_atomic(run_dir / STATUS, status, in_place_if_full=True)


# --- claiming a run directory ----------------------------------------------------------------

def writable(path: str | Path) -> Path:
    """Create the directory if needed and prove it takes a file, or say so in one line."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        raise ValueError(f"runs directory {path} is not writable ({e.strerror or type(e).__name__}); "
                         "expected a directory this user can write, see --runs-dir") from None
    return path


def run_path(runs_dir: str | Path, dataset: str, variant: str, run_id: str) -> Path:
    """<runs_dir>/<dataset>/<variant>/<run_id>, refused unless each part is a plain folder name:
    a run directory never leaves its runs directory, whatever the dataset path or run name."""
    for what, part in (("dataset name", dataset), ("run name", variant), ("run id", run_id)):
        if part in ("", ".", "..") or any(c in "/\\" or ord(c) < 32 for c in part) or part != part.strip():
            raise ValueError(f"{what} {part!r} is not a plain folder name; expected a name without "
                             "slashes that is not '.' or '..'")
    return Path(runs_dir) / dataset / variant / run_id


def new_run_dir(runs_dir: Path, dataset: str, variant: str, run_id: str) -> Path:
    """Claim a fresh run directory atomically (mkdir fails if another process has it)."""
    parent = run_path(runs_dir, dataset, variant, run_id).parent
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1000):
        path = parent / (run_id if n == 0 else f"{run_id}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not claim a run directory under {parent}")


def held_locks() -> set[str] | None:
    """The files a live process holds an flock on, as /proc/locks names them ("dev:ino", device in
    hex); None where it cannot be read. Read once for many runs (lock_held)."""
    try:
        with open("/proc/locks", "rb") as f:
            table = f.read(1 << 22).decode("ascii", "replace")
    except OSError:
        return None
    return {parts[5] for parts in (line.split() for line in table.splitlines()) if len(parts) > 5 and parts[1] == "FLOCK"}


def lock_held(run_dir: Path, held: set[str] | None = ...) -> bool | None:
    """Whether a live process holds the run's lock, read from /proc/locks (never by taking the
    lock: a reader that held it even briefly could refuse a starting run); None where it cannot
    be told. held: held_locks(), when already read."""
    try:
        st = os.stat(run_dir / LOCK, follow_symlinks=False)
    except OSError:
        return False  # no lock file: no process ever claimed the run here
    held = held_locks() if held is ... else held
    if held is None:
        return None
    return f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}" in held


@contextlib.contextmanager
def exclusive(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run directory while inside; the OS drops it when the
    process dies, even by SIGKILL."""
    fd = os.open(run_dir / LOCK, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunBusy(f"{run_dir} is being written by another process") from None
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def open_run(run_dir: str | Path | None, runs_dir: str | Path, dataset: str, variant: str, seed: int, *,
             resume: bool = False, restart: bool = False) -> Iterator[Path]:
    """Claim a run directory for this process and hold its lock while inside.

    run_dir None: a new timestamped folder under runs_dir/dataset/variant. resume: the folder
    must hold a run (its checkpoint is loaded by the caller, inside). restart: an earlier attempt
    without a readable checkpoint is cleared (with resume: one whose checkpoints are all
    unreadable, so it begins again with its own settings). A finished run or one held by another
    process raises RunBusy; a folder that already holds a run raises ValueError.
    """
    if run_dir is None:
        run_dir = new_run_dir(writable(runs_dir), dataset, variant, f"{time.strftime('%Y%m%d-%H%M%S')}-s{seed}")
    run_dir = Path(run_dir)
    if resume and not (run_dir / CONFIG).exists():
        raise ValueError(f"cannot resume {run_dir}: it holds no run ({CONFIG} is missing)")
    writable(run_dir)
    with exclusive(run_dir):  # from here on this process alone writes the run
        if read_status(run_dir).get("state") == "done":  # e.g. finished by a concurrent sweep meanwhile
            raise RunBusy(f"{run_dir} already holds a finished run; nothing to do")
        if restart and not any_checkpoint_loads(run_dir):  # nothing to resume from: begin again
            for name in (CONFIG, METRICS, STATUS, CHECKPOINT, PREVIOUS):
                (run_dir / name).unlink(missing_ok=True)
        elif not resume and (run_dir / CONFIG).exists():
            raise ValueError(f"{run_dir} already holds a run; use --resume to continue it")
        for debris in run_dir.glob(".*.tmp*"):  # half-written files of a process that died writing them
            if not debris.is_dir():  # a folder of that name is no file of nbkit's: left alone
                debris.unlink(missing_ok=True)
        yield run_dir


# --- resuming ---------------------------------------------------------------------------------

def resume_settings(run_dir: str | Path, overrides: dict | None = None) -> tuple[str, Settings]:
    """The variant and settings of an existing run; overrides that change them are refused."""
    try:
        config = json.loads(files.read_regular(Path(run_dir) / CONFIG, MAX_JSON_BYTES))
        settings = Settings(**config["settings"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"cannot resume {run_dir}: no readable {CONFIG} ({type(e).__name__})") from None
    if overrides:
        changed = settings.replace(**overrides)
        diff = {k: v for k, v in changed.to_dict().items() if settings.to_dict()[k] != v}
        if diff:
            raise ValueError(f"cannot resume {run_dir} with a different config (changed: {diff}); "
                             "start a new run instead")
    return config["variant"], settings


# --- reading one run -------------------------------------------------------------------------

_MISSING = object()


def _read_json(path: Path):
    """The file's JSON value; _MISSING when there is no file, None (after a warning) when it is
    not JSON."""
    try:
        return json.loads(files.read_regular(path, MAX_JSON_BYTES).decode("utf-8", errors="replace"))
    except FileNotFoundError:
        return _MISSING
    except (OSError, ValueError, RecursionError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        warnings.warn(f"{path}: skipping a file that is not readable JSON ({why})", stacklevel=3)
        return None


def read_config(run_dir: str | Path) -> dict | None:
    """A run's config.json as far as it fits its shape, its variant and seed as the run was
    trained; None when there is none (or none usable)."""
    path = Path(run_dir) / CONFIG
    value = _read_json(path)
    config = None if value is _MISSING or value is None else schema.check_config(value, str(path))
    return None if config is None else _as_trained(Path(run_dir), config)


def _as_trained(run_dir: Path, config: dict) -> dict:
    """A run is who its trainer says: where config.json names another variant or seed than its
    checkpoint (an edit by hand), the checkpoint's, with a warning; without a checkpoint, a seed
    that contradicts the settings' is shown as unknown."""
    saved = saved_identity(run_dir)
    where = run_dir / CONFIG
    if saved is not None:
        for key, check in (("variant", schema.text), ("seed", schema.integer())):
            try:
                trained = check(saved[key])
            except schema.Invalid:
                continue
            if config.get(key) != trained:
                if config.get(key) is not None:
                    warnings.warn(f"{where}: its {key} {schema.show(config[key])} is not what its checkpoint was "
                                  f"trained as ({schema.show(trained)}); showing the checkpoint's", stacklevel=3)
                config[key] = trained
        return config
    seed = (config.get("settings") or {}).get("seed")
    if seed is not None and config.get("seed") is not None and config["seed"] != seed:
        warnings.warn(f"{where}: its seed {config['seed']} contradicts its settings' seed {seed}; showing none",
                      stacklevel=3)
        config["seed"] = None
    return config


def read_status(run_dir: str | Path) -> dict:
    """A run's status.json, or {} when there is none yet (or it does not fit its shape)."""
    path = Path(run_dir) / STATUS
    value = _read_json(path)
    return {} if value is _MISSING or value is None else schema.STATUS.check(value, str(path)) or {}


def read_metrics(path: str | Path) -> list[dict]:
    """Rows of one metrics.jsonl; a truncated or garbage line, or a row of the wrong shape, is
    skipped with a warning naming file and line (non-finite values read as missing)."""
    try:
        with files.open_regular(path) as f:
            data = f.read(MAX_METRICS_BYTES + 1)
    except OSError:
        return []
    if len(data) > MAX_METRICS_BYTES:
        warnings.warn(f"{path}: reading only its first {MAX_METRICS_BYTES >> 20} MiB (a 5,000-step run logs "
                      "well under 1 MiB)", stacklevel=2)
        data = data[:data.rfind(b"\n", 0, MAX_METRICS_BYTES) + 1]
    rows, _ = metrics_rows(data, path)
    return rows


def metrics_rows(data: bytes, path: str | Path, first_line: int = 1, final: bool = True) -> tuple[list[dict], int]:
    """The rows in data (whole lines of a metrics.jsonl from line first_line on), each checked
    against its shape, and the number of bytes of whole lines read. A last line without its line
    break is still being written (or was cut): skipped, with a warning when final."""
    rows = []
    end = data.rfind(b"\n") + 1
    if end < len(data) and final and data[end:].strip():
        last = first_line + data.count(b"\n")
        warnings.warn(f"{path}:{last}: skipping an incomplete last line", stacklevel=3)
    text = data[:end].decode("utf-8", errors="replace")  # a bad byte spoils its line only
    for i, line in enumerate(text.split("\n")[:-1], first_line):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):
            warnings.warn(f"{path}:{i}: skipping an unreadable line", stacklevel=3)
            continue
        row = schema.METRICS_ROW.check(value, f"{path}:{i}")
        if row is not None:
            rows.append(row)
    return rows, end
