"""Sweeps on a Ray cluster: `nbkit sweep ... --backend ray [--address auto|HOST:PORT]`.

Ray places the runs; nbkit keeps its own run logic. Each run is a Ray actor that holds the
resources the run asks for (1/--jobs of a GPU, or --cpus-per-run CPUs) and starts the same
child as the local backend, `python -m nbkit train ...`, which dies with the actor's worker.
The driver (this process) polls every actor:

- when the worker sees the driver's runs directory (a shared filesystem), the child writes its
  run there directly;
- when it does not, the child writes into a temporary folder on its node and each poll brings
  the files that changed (metrics, status, checkpoint) back into the local runs directory, so
  notebooks follow cluster runs exactly like local ones.

A run whose worker dies (killed, node lost) starts again on a new actor from its last
checkpoint, up to --max-retries times, then is marked failed; the other runs go on. Finished
runs are skipped, as by the local backend.

Code travels with the sweep: the driver's nbkit, and the top-level package (or single-file
module) of every `package.module:callable` model the runs train, as Ray's py_modules; each
child finds them on its PYTHONPATH. A comparisons file's variant travels whole in the run spec.
"""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from nbkit.design.settings import Settings
from nbkit.errors import stop_signals
from nbkit.rundir.checkpoint import CHECKPOINT, PREVIOUS
from nbkit.rundir.files import open_append, read_regular, write_bytes, write_text
from nbkit.rundir.runlog import CONFIG, METRICS, STATUS, SWEEPS, TRAIN_LOG, mark, read_status
from nbkit.sweeps.sweep import Display, Job, Outcome, begin, command, dies_with_parent, job_state, status_stamp

RUN_FILES = (CONFIG, METRICS, STATUS, CHECKPOINT, PREVIOUS, TRAIN_LOG)
SHARED_FS = ("auto", "yes", "no")

def import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError("the ray backend needs Ray, which is not installed; install it with "
                         "pip install '.[ray]' (or pip install ray), or use --backend local") from None
    return ray


def run_spec(job: Job, runs_dir: Path, device: str, threads: int, label: str | None) -> dict:
    """What an actor needs to start a job's child: plain values, sent to the worker."""
    return {"variant": job.variant, "settings": job.settings.to_dict(), "definition": job.definition,
            "modules": user_modules([job]),
            "rel": str(job.run_dir.resolve().relative_to(runs_dir.resolve())), "runs_dir": str(runs_dir),
            "device": device, "threads": threads, "label": label, "cwd": os.getcwd()}


def user_modules(jobs: list[Job]) -> list[str]:
    """The top-level modules the jobs' import-path models (package.module:callable) need."""
    return sorted({j.settings.model.partition(":")[0].split(".")[0] for j in jobs
                   if ":" in j.settings.model and not j.settings.model.startswith("timm/")})


def module_location(name: str) -> Path | None:
    """Where a top-level module lives in this process: its package folder or its .py file."""
    from nbkit.design.models.user_models import working_directory_importable

    working_directory_importable()
    spec = importlib.util.find_spec(name)
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(spec.origin) if spec.origin and spec.origin.endswith(".py") else None


def shipped_modules(jobs: list[Job]) -> list[str]:
    """py_modules for Ray: nbkit and the jobs' own model modules (those installed as packages are
    left to the nodes' environments, as torch is)."""
    import nbkit

    out = [str(Path(nbkit.__file__).parent)]
    for name in user_modules(jobs):
        where = module_location(name)
        if where is None:
            raise ValueError(f"cannot find module {name} for the Ray workers; run the sweep from the directory "
                             "that holds it, or put it on PYTHONPATH")
        if not any(part in ("site-packages", "dist-packages") for part in where.parts):
            out.append(str(where))
    return out


class RunActor:
    """One run on a Ray worker (decorated with ray.remote by the driver)."""

    def __init__(self, spec: dict, marker: str, shared_fs: str):
        self.spec = spec
        sees = Path(marker).exists()
        self.shared = sees if shared_fs == "auto" else shared_fs == "yes"
        self.problem = None
        if self.shared and not sees:
            self.problem = (f"--shared-fs yes, but the worker on {socket.gethostname()} does not see the runs "
                            f"directory {spec['runs_dir']}; mount it there or use --shared-fs auto")
        _remove_orphans()
        self.tmp = None if self.shared else tempfile.mkdtemp(prefix=f"nbkit-ray-{os.getpid()}-")
        self.run_dir = Path(spec["runs_dir"] if self.shared else self.tmp) / spec["rel"]
        self.proc, self.sent = None, {}

    def sees_runs_dir(self) -> bool:
        """Whether the child writes into the driver's runs directory (else files are copied back)."""
        if self.problem:
            raise RuntimeError(self.problem)
        return self.shared

    def start(self, files: dict[str, bytes]) -> dict:
        import nbkit

        self.run_dir.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():  # the driver's copy: a resumed run's checkpoint and logs
            write_bytes(self.run_dir / name, data, fsync=False)
            self.sent[name] = self._stamp(name)
        spec = self.spec
        job = Job(spec["variant"], Settings(**spec["settings"]), self.run_dir, spec.get("definition"))
        resumed = job_state(job) == "resume"
        cmd = command(job, spec["device"], spec["label"])
        shipped = [str(where.parent) for where in map(module_location, spec.get("modules", [])) if where]
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join([str(Path(nbkit.__file__).parent.parent), *shipped,
                                              *filter(None, [os.environ.get("PYTHONPATH")])])}
        if spec["device"] == "cpu":
            env.update(OMP_NUM_THREADS=str(spec["threads"]), CUDA_VISIBLE_DEVICES="")
        cwd = spec["cwd"] if Path(spec["cwd"]).is_dir() else None  # relative dataset paths resolve there
        with open_append(self.run_dir / TRAIN_LOG) as log:
            # the child is SIGKILLed when the worker dies; the run then goes on elsewhere from its checkpoint
            self.proc = subprocess.Popen(dies_with_parent(cmd, signal.SIGKILL), cwd=cwd, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        return {"host": socket.gethostname(), "shared": self.shared, "resumed": resumed}

    def _stamp(self, name: str):
        try:
            st = (self.run_dir / name).stat()
            return st.st_mtime_ns, st.st_size
        except FileNotFoundError:
            return None

    def poll(self, wait: float) -> dict:
        """Wait up to `wait` seconds for the child; then its exit code (None while it runs) and,
        without a shared filesystem, the run files that changed since the last poll."""
        try:
            self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            pass
        returncode = self.proc.poll()  # read before the files: after an exit they are final
        files = {}
        if not self.shared:
            for name in RUN_FILES:
                stamp = self._stamp(name)
                if stamp is not None and stamp != self.sent.get(name):
                    try:
                        files[name] = read_run_file(self.run_dir / name)
                    except OSError:  # gone, or no regular file of nbkit's (a link, a FIFO): not copied
                        continue
                    self.sent[name] = stamp
        return {"returncode": returncode, "files": files}

    def stop(self, grace: float = 120.0) -> dict:
        """SIGTERM the child (it checkpoints and marks itself stopped) and wait for it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.poll(0)

    def close(self) -> None:
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _remove_orphans() -> None:
    """Temporary run folders left on this node by workers that died (killed, out of memory)."""
    for path in Path(tempfile.gettempdir()).glob("nbkit-ray-*-*"):
        try:
            os.kill(int(path.name.split("-")[2]), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            continue


@dataclass
class _Run:
    job: Job
    actor: object = None
    ref: object = None
    phase: str = "placing"  # placing -> starting -> running (-> stopping)
    attempts: int = 0
    status_before: object = None  # the driver's status.json stamp when the child started


def _write_back(run_dir: Path, files: dict[str, bytes]) -> None:
    """Land files from a worker in the local run directory, each replaced atomically."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        write_bytes(run_dir / name, data, fsync=False)  # a fresh temporary name, then a rename


MAX_COPY_BYTES = 16 << 30  # a run file copied between driver and worker (a ViT-B checkpoint is about 1 GiB)


def read_run_file(path: Path) -> bytes:
    """A run file to copy: a regular file (no link followed at its name, no FIFO or device waited
    on) of at most MAX_COPY_BYTES; OSError otherwise."""
    return read_regular(path, MAX_COPY_BYTES)


def _local_files(run_dir: Path) -> dict[str, bytes]:
    """The driver's copy of a run, sent to a worker that does not see the runs directory: its
    regular files only (a link or special file at a run file's name is left behind)."""
    out = {}
    for name in RUN_FILES:
        try:
            out[name] = read_run_file(run_dir / name)
        except OSError:
            continue
    return out


def run_sweep_ray(jobs: list[Job], runs_dir: str | Path, address: str | None = None, device: str = "auto",
                  jobs_per_gpu: int = 1, cpus_per_run: int = 1, max_retries: int = 2, shared_fs: str = "auto",
                  poll: float = 1.0, stream=None, label: str | None = None) -> Outcome:
    """Run every job not yet done on a Ray cluster; returns the jobs by outcome, as run_sweep."""
    if jobs_per_gpu < 1 or cpus_per_run < 1 or max_retries < 0:
        raise ValueError("--jobs and --cpus-per-run expect at least 1, --max-retries at least 0")
    if shared_fs not in SHARED_FS:
        raise ValueError(f"--shared-fs expects one of {', '.join(SHARED_FS)}, got {shared_fs!r}")
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device expects auto, cpu or cuda with the ray backend, got {device!r}")
    runs_dir = Path(runs_dir).resolve()
    outcome, queue, display = begin(jobs, stream)
    if not queue:
        display.close(outcome.final_line())
        return outcome

    ray = import_ray()
    py_modules = shipped_modules(queue)
    try:
        ray.init(address=address, log_to_driver=False, logging_level="WARNING",
                 runtime_env={"py_modules": py_modules})  # the driver's nbkit and models on every worker
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ValueError(f"cannot reach the Ray cluster at {address or 'RAY_ADDRESS or a new local instance'}: "
                         f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    marker = runs_dir / SWEEPS / f"ray-{uuid.uuid4().hex}.marker"
    runs: dict = {}
    try:
        resources = ray.cluster_resources()
        if device == "auto":
            device = "cuda" if resources.get("GPU", 0) > 0 else "cpu"
        if device == "cuda" and not resources.get("GPU"):
            raise ValueError("device cuda was asked for but the Ray cluster has no GPUs; use --device cpu")
        largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=0)
        if cpus_per_run > largest:
            raise ValueError(f"--cpus-per-run {cpus_per_run} exceeds the {largest:g} CPUs of the cluster's largest node")
        display.event(f"ray: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs; each run asks for "
                      + (f"1/{jobs_per_gpu} GPU" if device == "cuda" else f"{cpus_per_run} CPU(s)"))
        marker.parent.mkdir(parents=True, exist_ok=True)
        write_text(marker, str(os.getpid()), fsync=False)
        gpu_share = math.floor(10_000 / jobs_per_gpu) / 10_000  # rounded down, so --jobs shares fill a GPU exactly
        Actor = ray.remote(RunActor).options(
            num_cpus=cpus_per_run if device == "cpu" else 1, num_gpus=gpu_share if device == "cuda" else 0,
            max_restarts=0, max_task_retries=0)

        def submit(run: _Run) -> None:
            run.actor = Actor.remote(run_spec(run.job, runs_dir, device, cpus_per_run, label), str(marker), shared_fs)
            run.ref, run.phase = run.actor.sees_runs_dir.remote(), "placing"
            runs[run.ref] = run

        closing: list = []
        with stop_signals() as stop_requested:
            try:
                for job in queue:
                    submit(_Run(job))
                while runs:
                    stopping = bool(stop_requested)
                    if stopping:  # runs still waiting for resources have nothing to save
                        for ref, run in [(ref, run) for ref, run in runs.items() if run.phase == "placing"]:
                            runs.pop(ref)
                            _drop(ray, run, outcome, "stopped", "the sweep was stopped before this run started again")
                    ready, _ = ray.wait(list(runs), num_returns=len(runs), timeout=poll)
                    for ref in ready:
                        run = runs.pop(ref)
                        _advance(ray, run, ref, runs, outcome, display, submit, max_retries, poll, stopping, closing)
                    display.draw([r.job for r in runs.values() if r.phase != "placing"],
                                 outcome.counts(sum(r.phase == "placing" for r in runs.values())))
                ray.wait(closing, num_returns=len(closing), timeout=30)  # temporary folders removed before shutdown
            except BaseException as e:  # the driver itself failed: end the runs; each resumes on the next sweep
                for run in runs.values():
                    _drop(ray, run, outcome, "stopped", f"the sweep's driver ended ({type(e).__name__}: {e}); "
                                                        "running the sweep again resumes it")
                raise
    finally:
        marker.unlink(missing_ok=True)
        ray.shutdown()
    display.close(outcome.final_line())
    return outcome


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def _drop(ray, run: _Run, outcome: Outcome, state: str, reason: str, display: Display | None = None) -> None:
    """End a run's actor and file the run as stopped or failed (its status says why)."""
    try:
        ray.kill(run.actor)
    except Exception:  # already gone
        pass
    if state == "failed" or read_status(run.job.run_dir).get("state") in (None, "running"):
        mark(run.job.run_dir, state, reason)
    outcome[state].append(run.job)
    if display:
        display.event(f"{'FAILED' if state == 'failed' else 'stopped'} {run.job.label}: {reason}")


def _advance(ray, run: _Run, ref, runs: dict, outcome: Outcome, display: Display, submit, max_retries: int,
             poll: float, stopping: bool, closing: list) -> None:
    """One reply from a run's actor: placed, started, polled, or its worker gone."""
    job = run.job
    errors = ray.exceptions
    try:
        reply = ray.get(ref)
    except errors.ActorUnavailableError:  # a passing network fault: the actor may be fine, ask again
        run.ref = run.actor.poll.remote(poll) if run.phase != "placing" else run.actor.sees_runs_dir.remote()
        runs[run.ref] = run
        return
    except errors.RayActorError as e:
        why = _first_line(e)
        if getattr(e, "actor_init_failed", False):  # nbkit could not even set up on the worker
            _drop(ray, run, outcome, "failed", f"its Ray actor could not start: {why}", display)
            return
        run.attempts += 1  # the worker died: the run goes on elsewhere, or fails
        if run.attempts <= max_retries and not stopping:
            ray.kill(run.actor)  # should it linger, it is ended before another takes the run
            display.event(f"retrying {job.label} (its Ray worker died; retry {run.attempts} of {max_retries}, "
                          "from its last checkpoint)")
            submit(run)
            return
        reason = (f"its Ray worker died {run.attempts} time(s), the last: {why}; running the sweep again "
                  "resumes it from its last checkpoint")
        _drop(ray, run, outcome, "stopped" if stopping else "failed", reason, display)
        return
    except errors.RayError as e:  # nbkit's own error on the worker, or a run Ray cannot place: no retry helps
        cause = e.cause if isinstance(e, errors.RayTaskError) and e.cause else e
        _drop(ray, run, outcome, "failed", f"on Ray: {_first_line(cause)}", display)
        return

    if run.phase == "placing":  # the actor exists: start the child with what it cannot see itself
        if stopping:
            _drop(ray, run, outcome, "stopped", "the sweep was stopped before this run started again")
            return
        files = {} if reply else _local_files(job.run_dir)
        run.status_before = status_stamp(job.run_dir)
        run.ref, run.phase = run.actor.start.remote(files), "starting"
        runs[run.ref] = run
        return
    if run.phase == "starting":
        action = "resuming" if reply["resumed"] else "starting"
        where = "shared runs directory" if reply["shared"] else "copied back"
        display.event(f"{action} {job.label} on {reply['host']} ({where}) -> {job.run_dir}")
        run.phase = "running"
    else:
        _write_back(job.run_dir, reply["files"])
        if reply["returncode"] is not None:
            outcome.settle(job, reply["returncode"], stopping or run.phase == "stopping", display,
                           status_before=run.status_before)
            closing.append(run.actor.close.remote())  # the actor ends once this handle goes
            return
    if stopping and run.phase != "stopping":  # the child checkpoints and says it stopped
        run.ref, run.phase = run.actor.stop.remote(), "stopping"
    else:
        run.ref = run.actor.poll.remote(poll)
    runs[run.ref] = run
