"""`nbkit tune`: a search over each variant's recipe with Optuna, every trial an ordinary nbkit run.

One Optuna study per variant, named by the variant, its fixed settings, its search space and the
sampler, kept in a real database (default: an SQLite file in the runs directory; any Optuna
storage URL, e.g. postgresql://..., for workers on many machines). A trial is asked of the study,
trained as a sweep job (local processes or Ray, through nbkit.sweeps.sweep / ray_backend), and
told its value: the best validation top-1 of its run. Test top-1 is never read here.

Running the same command again continues each study: `--trials N` is the study's size, so
finished trials are kept and only the missing ones are asked; a trial left running by a process
that is gone (its lock in the runs directory is free) is resumed from its run's checkpoint.
Random sampling (the default) draws trial n's values from (seed, n, setting) alone, so a study
is the same whichever process asks which trial, and the budget curves (Dodge et al. 2019) stay
unbiased; TPE is Optuna's.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from nbkit.design.comparisons import expand
from nbkit.design.search_space import Param, space_of
from nbkit.design.variants import get_variant
from nbkit.rundir.runlog import mark, read_metrics, read_status, run_path
from nbkit.sweeps.sweep import Job, settings_key
from nbkit.training.data import dataset_name

STORAGE_FILE = "tune.db"
LOCKS = ".tune-locks"
SAMPLERS = ("random", "tpe")


def optuna():
    try:
        import optuna
    except ImportError:
        raise ValueError("nbkit tune needs Optuna: pip install '.[tune]' (or pip install 'optuna>=4')") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


@dataclass
class Search:
    """One variant's study: its fixed settings, space, and where its trials go."""
    variant: str
    settings: object  # Settings: the variant's, with the command line's on top (val_size included)
    space: tuple[Param, ...]
    definition: dict | None
    name: str  # the Optuna study's name

    @property
    def tag(self) -> str:
        return self.name.rsplit("-", 1)[-1]


def study_name(variant: str, settings, space, sampler: str, seed: int, prune: bool) -> str:
    """The variant and a hash of everything the study's trials share: settings, space, sampler."""
    key = json.dumps([settings.identity(), [p.__dict__ for p in space], sampler, seed, prune],
                     sort_keys=True, default=str)
    return f"{variant}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def searches(names: list[str], overrides: dict, study, sampler: str = "random", seed: int = 0,
             prune: bool = False) -> list[Search]:
    """Each variant of the comparisons or variants named, with its search space (its own, else its
    comparison's)."""
    comparisons = study.comparisons if study is not None else {}
    out, seen = [], set()
    for name in names:
        comparison = name if name in comparisons else None
        for variant in expand([name], study):
            if variant in seen:
                continue
            seen.add(variant)
            v = get_variant(variant, study)
            space = space_of(study, variant, comparison)
            settings = v.settings.replace(**overrides)
            for p in space:  # each bound must train with this variant's other settings
                for value in (p.choices if p.kind == "choice" else (p.low, p.high)):
                    settings.replace(**{p.name: value})
            out.append(Search(variant, settings, space, v.definition() if v.source else None,
                              study_name(variant, settings, space, sampler, seed, prune)))
    return out


def storage_url(storage: str | None, runs_dir: Path) -> str:
    """The study's database: a storage URL as given, else an SQLite file in the runs directory."""
    if storage:
        if "://" not in storage:
            raise ValueError(f"--storage expects an Optuna storage URL (sqlite:///path.db, postgresql://...), got "
                             f"{storage!r:.80}")
        return storage
    runs_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(runs_dir / STORAGE_FILE).resolve()}"


def make_sampler(kind: str, seed: int):
    o = optuna()
    if kind == "tpe":
        return o.samplers.TPESampler(seed=seed)
    if kind != "random":
        raise ValueError(f"--sampler expects one of {', '.join(SAMPLERS)}, got {kind!r}")

    class TrialSeeded(o.samplers.RandomSampler):
        """Random sampling whose draw for trial n and a setting depends on (seed, n, setting) alone."""

        def sample_independent(self, study, trial, param_name, param_distribution):
            digest = hashlib.sha1(f"{seed}/{trial.number}/{param_name}".encode()).digest()
            one = o.samplers.RandomSampler(seed=int.from_bytes(digest[:4], "little"))
            return one.sample_independent(study, trial, param_name, param_distribution)

    return TrialSeeded(seed=seed)


def suggest(trial, p: Param):
    """The trial's value of one setting (drawn now, or the one it already has)."""
    if p.kind == "choice":
        return trial.suggest_categorical(p.name, list(p.choices))
    if p.kind == "int":
        return trial.suggest_int(p.name, p.low, p.high)
    return trial.suggest_float(p.name, p.low, p.high, log=p.kind == "log_uniform")


def score(run_dir: Path) -> tuple[float | None, int | None, float | None]:
    """A trial's run: its best validation top-1 (the earliest step on ties), that step, and test
    top-1 at that step. Trials are chosen on the first alone."""
    rows = read_metrics(Path(run_dir) / "metrics.jsonl")
    val = [(r["acc_top1"], -r["step"]) for r in rows if r.get("split") == "val"
           and isinstance(r.get("acc_top1"), (int, float))]
    if not val:
        return None, None, None
    best, step = max(val)
    test = [r["acc_top1"] for r in rows if r.get("split") == "test" and r.get("step") == -step
            and isinstance(r.get("acc_top1"), (int, float))]
    return float(best), -step, (float(test[-1]) if test else None)


class _Lock:
    """An exclusive lock on a file in the runs directory, held while the process lives."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o644)

    def take(self, block: bool = False) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
            return True
        except BlockingIOError:
            return False

    def close(self) -> None:
        os.close(self.fd)


class Tuner:
    """Asks trials of each variant's study, a round of up to `slots` at a time, runs them as sweep
    jobs and tells the studies their scores."""

    def __init__(self, items: list[Search], trials: int, runs_dir: Path, storage: str | None = None,
                 sampler: str = "random", seed: int = 0, prune: bool = False, stream=None):
        if trials < 1:
            raise ValueError(f"--trials expects at least 1, got {trials}")
        o = optuna()
        self.items, self.trials, self.runs_dir = items, trials, Path(runs_dir)
        self.storage = storage_url(storage, self.runs_dir)
        self.shown_storage = _shown(storage) if storage else f"{STORAGE_FILE} in the runs directory"
        pruner = o.pruners.SuccessiveHalvingPruner() if prune else o.pruners.NopPruner()
        # one process at a time creates the database and its studies: two creating one SQLite file at
        # once race on its schema (a UNIQUE constraint error in Optuna's version table)
        guard = _Lock(self.runs_dir / LOCKS / "storage.lock")
        try:
            guard.take(block=True)
            self.studies = {s.variant: o.create_study(study_name=s.name, storage=self.storage, direction="maximize",
                                                      sampler=make_sampler(sampler, seed), pruner=pruner,
                                                      load_if_exists=True) for s in items}
        finally:
            guard.close()
        self.held: dict[tuple[str, int], _Lock] = {}
        self.pruned: set[Path] = set()
        self.reported: dict[Path, int] = {}
        self.stream = stream

    def _lock(self, item: Search, number: int) -> _Lock:
        return _Lock(self.runs_dir / LOCKS / f"{item.name}-{number}.lock")

    def run_dir(self, item: Search, number: int, settings) -> Path:
        """tune-<study>-t<trial>-<settings>: the same trial with the same values finds its run again
        (a study rebuilt from shipped runs), other values never do."""
        return run_path(self.runs_dir, dataset_name(item.settings.dataset), item.variant,
                        f"tune-{item.tag}-t{number:03d}-{settings_key(settings)}")

    def _job(self, item: Search, trial) -> Job:
        values = {p.name: suggest(trial, p) for p in item.space}  # a resumed trial gets its values back
        settings = item.settings.replace(**values)
        record = {"study": item.name, "trial": trial.number, "values": values, "storage": self.shown_storage,
                  "space": [p.describe() for p in item.space]}
        return Job(item.variant, settings, self.run_dir(item, trial.number, settings), item.definition, record)

    def _claim(self, item: Search) -> list[tuple[Job, object]]:
        """Trials of this study left running by a process that is gone, taken over (each resumes
        from its run's checkpoint)."""
        o, study, out = optuna(), self.studies[item.variant], []
        for t in study.get_trials(deepcopy=False, states=(o.trial.TrialState.RUNNING,)):
            if (item.variant, t.number) in self.held:
                continue
            lock = self._lock(item, t.number)
            # still running once its lock is ours: the list may predate its owner's tell and release
            if t.user_attrs.get("owner") and lock.take() and t.number in {
                    r.number for r in study.get_trials(deepcopy=False, states=(o.trial.TrialState.RUNNING,))}:
                self.held[(item.variant, t.number)] = lock
                trial = o.trial.Trial(study, t._trial_id)
                out.append((self._job(item, trial), trial))
            else:
                lock.close()
        return out

    def _ask(self, item: Search) -> tuple[Job, object] | None:
        """A new trial, unless the study already has its `trials`; the count and the ask are one
        step under a lock in the runs directory, so processes sharing the study never overshoot."""
        study = self.studies[item.variant]
        guard = _Lock(self.runs_dir / LOCKS / f"{item.name}.ask.lock")
        try:
            guard.take(block=True)
            if len(study.get_trials(deepcopy=False)) >= self.trials:
                return None
            trial = study.ask()
            lock = self._lock(item, trial.number)
            lock.take()
            self.held[(item.variant, trial.number)] = lock
            job = self._job(item, trial)
            trial.set_user_attr("owner", f"{socket.gethostname()}:{os.getpid()}")
            trial.set_user_attr("run_dir", str(job.run_dir))
            return job, trial
        finally:
            guard.close()

    def rounds(self, slots: int):
        """Rounds of up to `slots` (job, trial) pairs, interrupted trials first, then new ones, each
        from the study with fewest trials so far (variants advance together, so a run cut short
        leaves every variant tuned alike); a round is told before the next is asked (TPE learns)."""
        pending = [pair for item in self.items for pair in self._claim(item)]
        while True:
            open_items = list(self.items)
            while len(pending) < slots and open_items:
                item = min(open_items, key=lambda i: len(self.studies[i.variant].get_trials(deepcopy=False)))
                pair = self._ask(item)
                if pair is None:
                    open_items.remove(item)
                else:
                    pending.append(pair)
            if not pending:
                return
            yield pending
            pending = []

    def watch(self, trials: dict[Path, object]):
        """For run_sweep: report each new val top-1 of a running trial; True once when it is pruned."""
        def check(job: Job) -> bool:
            trial = trials.get(job.run_dir)
            if trial is None or job.run_dir in self.pruned:
                return False
            rows = [r for r in read_metrics(job.run_dir / "metrics.jsonl")
                    if r.get("split") == "val" and isinstance(r.get("acc_top1"), (int, float))]
            for r in rows:
                if r["step"] > self.reported.get(job.run_dir, -1):
                    trial.report(float(r["acc_top1"]), int(r["step"]))
                    self.reported[job.run_dir] = r["step"]
            if rows and rows[-1]["step"] < job.settings.max_iter and trial.should_prune():
                self.pruned.add(job.run_dir)
                return True
            return False
        return check

    def tell(self, job: Job, trial) -> str:
        """Tell the study how the trial's run ended: complete (best val top-1), pruned or failed."""
        o = optuna()
        study, state = self.studies[job.variant], read_status(job.run_dir).get("state")
        best, step, test = score(job.run_dir)
        if job.run_dir in self.pruned:
            mark(job.run_dir, "stopped", f"pruned by successive halving at step {self.reported.get(job.run_dir)} "
                                         f"(tuning study {job.tune['study']}, trial {trial.number})")
            study.tell(trial, state=o.trial.TrialState.PRUNED)
            outcome = "pruned"
        elif state == "done" and best is not None:
            trial.set_user_attr("best_step", step)
            study.tell(trial, best)
            outcome = "complete"
        elif state == "done":
            study.tell(trial, state=o.trial.TrialState.FAIL)
            outcome = "failed (no val split: give --val-size)"
        elif state == "failed":
            study.tell(trial, state=o.trial.TrialState.FAIL)
            outcome = "failed"
        else:  # stopped by the user: left running, resumed by the next `nbkit tune`
            return "stopped"
        self.held.pop((job.variant, trial.number)).close()
        return outcome

    def close(self) -> None:
        for lock in self.held.values():
            lock.close()
        self.held.clear()


def tune(tuner: Tuner, run_round, slots: int, say=print) -> dict[str, int]:
    """Every round of the tuner: run_round(jobs, trials by run folder) trains the jobs (run_sweep or
    Ray's), then each trial is told how its run ended. A trial stopped by the user ends the tuning
    (the next `nbkit tune` resumes it). Returns how many trials ended each way."""
    ended: dict[str, int] = {}
    try:
        for pairs in tuner.rounds(slots):
            run_round([job for job, _ in pairs], {job.run_dir: trial for job, trial in pairs})
            for job, trial in pairs:
                how = tuner.tell(job, trial)
                say(f"tune: {job.variant} trial {trial.number}: {how}")
                ended[how.split()[0]] = ended.get(how.split()[0], 0) + 1
            if ended.get("stopped"):
                break
    finally:
        tuner.close()
    return ended


def _shown(storage: str) -> str:
    """A storage URL without its password, as config.json records it."""
    if "@" in storage and "://" in storage:
        scheme, rest = storage.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return storage


def best_trials(tuner: Tuner) -> list[dict]:
    """Per variant: trials by state, the chosen trial (best val top-1) with its values and run folder."""
    o, out = optuna(), []
    for item in tuner.items:
        trials = tuner.studies[item.variant].get_trials(deepcopy=False)
        states = {}
        for t in trials:
            states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
        complete = [t for t in trials if t.state == o.trial.TrialState.COMPLETE]
        row = {"variant": item.variant, "study": item.name, "states": states}
        if complete:
            best = max(complete, key=lambda t: (t.value, -t.number))
            row |= {"trial": best.number, "val_top1": best.value, "values": best.params,
                    "run_dir": best.user_attrs.get("run_dir")}
        out.append(row)
    return out
