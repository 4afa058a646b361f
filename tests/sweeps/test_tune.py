"""`nbkit tune` (nbkit.sweeps.tune): seeded sampling, a study continued and shared by two
processes without losing or repeating a trial, interrupted trials resumed, pruning; trials here
are run folders written by a stand-in for training (the real command is tested at the end)."""

import json
import multiprocessing
import time

import polars as pl
import pytest

from nbkit.analysis import tuning
from nbkit.design.comparisons_file import load_study
from nbkit.rundir.reader import read_runs
from nbkit.sweeps import tune as tune_mod
from nbkit.view import present

optuna = pytest.importorskip("optuna")

FILE = '''
[comparisons.pair]
question = "Does the ranking hold once each is tuned?"
variants = ["resnet18", "toy-dilated"]

[comparisons.pair.search]
warmup_max_lr = { log_uniform = [1e-4, 1e-2] }
warmup_num_steps = { int = [0, 20] }
use_augmentation = { choice = [false, true] }
'''
OVERRIDES = {"dataset": "synthetic", "max_iter": 40, "eval_every": 20, "val_size": 100}


def items(tmp_path, sampler="random", seed=0, prune=False):
    path = tmp_path / "study.toml"
    if not path.exists():
        path.write_text(FILE)
    return tune_mod.searches(["pair"], dict(OVERRIDES), load_study(path), sampler, seed, prune)


def val_of(values: dict) -> float:
    """A made-up validation score of a trial's values (the stand-in's 'training')."""
    return round(min(0.95, values["warmup_max_lr"] * 60) + (0.03 if values["use_augmentation"] else 0), 6)


def fake_run(job, val: float | None = None, test: float = 0.5, watch=None, log=None):
    """Write what a finished run leaves: config.json with the trial, val and test rows, status."""
    d = job.run_dir
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps({"variant": job.variant, "seed": job.settings.seed, "run_id": d.name,
                                               "dataset": {"name": "synthetic"}, "settings": job.settings.to_dict(),
                                               "tune": job.tune}))
    val = val_of(job.tune["values"]) if val is None else val
    for step in (20, 40):
        with open(d / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": step, "split": "val", "acc_top1": val}) + "\n")
            f.write(json.dumps({"step": step, "split": "test", "acc_top1": test}) + "\n")
        if watch is not None and watch(job):
            (d / "status.json").write_text(json.dumps({"state": "stopped", "step": step}))
            return
    (d / "status.json").write_text(json.dumps({"state": "done", "step": 40}))
    if log is not None:
        with open(log, "a") as f:
            f.write(f"{job.variant} {job.tune['trial']}\n")


def runner(calls: list, **kwargs):
    def run_round(jobs, trials):
        for job in jobs:
            calls.append((job.variant, job.tune["trial"]))
            fake_run(job, **kwargs)
    return run_round


def run(tmp_path, trials, calls=None, storage=None, slots=2, **kwargs):
    tuner = tune_mod.Tuner(items(tmp_path), trials, tmp_path / "runs", storage)
    ended = tune_mod.tune(tuner, runner(calls if calls is not None else []), slots, say=lambda _: None)
    return tuner, ended


def study_trials(tuner, variant):
    return tuner.studies[variant].get_trials(deepcopy=False)


def test_seeded_random_sampling_is_reproducible(tmp_path):
    a, b, c = (tune_mod.Tuner(items(tmp_path, seed=s), 5, tmp_path / f"runs{i}", seed=s)
               for i, s in enumerate((0, 0, 1)))
    values = []
    for tuner in (a, b, c):
        tune_mod.tune(tuner, runner([]), 2, say=lambda _: None)
        values.append([t.params for t in study_trials(tuner, "resnet18")])
    assert values[0] == values[1] and values[0] != values[2]
    assert len({json.dumps(v, sort_keys=True) for v in values[0]}) == 5  # five different draws
    space = {p.name: p for p in items(tmp_path)[0].space}
    for params in values[0]:
        assert space["warmup_max_lr"].low <= params["warmup_max_lr"] <= space["warmup_max_lr"].high
        assert params["warmup_num_steps"] in range(0, 21) and params["use_augmentation"] in (False, True)
    assert isinstance(tune_mod.make_sampler("tpe", 0), optuna.samplers.TPESampler)


def test_a_second_tune_continues_the_study(tmp_path):
    calls = []
    tuner, ended = run(tmp_path, 3, calls)
    assert ended == {"complete": 6} and sorted(calls) == [(v, n) for v in ("resnet18", "toy-dilated") for n in range(3)]
    before = {v: [t.params for t in study_trials(tuner, v)] for v in ("resnet18", "toy-dilated")}
    calls.clear()
    tuner, ended = run(tmp_path, 3, calls)
    assert calls == [] and ended == {}  # nothing new: finished trials are kept
    calls.clear()
    tuner, ended = run(tmp_path, 5, calls)
    assert sorted(calls) == [(v, n) for v in ("resnet18", "toy-dilated") for n in (3, 4)]
    for v in ("resnet18", "toy-dilated"):
        trials = study_trials(tuner, v)
        assert [t.number for t in trials] == list(range(5))
        assert [t.params for t in trials[:3]] == before[v]
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
        assert [t.value for t in trials] == [val_of(t.params) for t in trials]
    best = {row["variant"]: row for row in tune_mod.best_trials(tuner)}
    top = max(study_trials(tuner, "resnet18"), key=lambda t: t.value)
    assert best["resnet18"]["trial"] == top.number and best["resnet18"]["states"] == {"complete": 5}


def test_an_interrupted_trial_is_resumed_not_repeated(tmp_path):
    gone = tune_mod.Tuner(items(tmp_path), 2, tmp_path / "runs")
    pairs = next(gone.rounds(1))  # asked, then the process is gone before it is told
    (job, trial), = pairs
    gone.close()
    assert study_trials(gone, job.variant)[0].state == optuna.trial.TrialState.RUNNING
    calls = []
    tuner, ended = run(tmp_path, 2, calls, slots=1)
    assert calls[0] == (job.variant, trial.number) and len(calls) == 4 and len(set(calls)) == 4
    trials = study_trials(tuner, job.variant)
    assert len(trials) == 2 and trials[0].params == trial.params
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


def _worker(root, storage, log, trials):
    from pathlib import Path

    root = Path(root)
    tuner = tune_mod.Tuner(items(root), trials, root / "runs", storage)
    Path(log + ".ready").touch()  # both tune at once: neither may finish the study before the other starts
    deadline = time.monotonic() + 60
    while len(list(root.glob("*.ready"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)

    def run_round(jobs, _trials):
        for job in jobs:
            time.sleep(0.2)  # let the other process ask in between
            fake_run(job, log=log)
    tune_mod.tune(tuner, run_round, 1, say=lambda _: None)


def test_two_processes_sharing_one_sqlite_study_lose_and_repeat_no_trial(tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    items(tmp_path)  # the comparisons file, written before either process reads it
    logs = [tmp_path / "log0", tmp_path / "log1"]
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_worker, args=(str(tmp_path), storage, str(log), 6)) for log in logs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    done = [line.split() for log in logs if log.exists() for line in log.read_text().splitlines()]
    assert sorted((v, int(n)) for v, n in done) == [(v, n) for v in ("resnet18", "toy-dilated") for n in range(6)]
    assert all(log.exists() and log.read_text() for log in logs)  # both processes ran trials
    tuner = tune_mod.Tuner(items(tmp_path), 6, tmp_path / "runs", storage)
    for v in ("resnet18", "toy-dilated"):
        trials = study_trials(tuner, v)
        assert [t.number for t in trials] == list(range(6))
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
        assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 6
    folders = [p for p in (tmp_path / "runs" / "synthetic").glob("*/tune-*")]
    assert len(folders) == 12


def test_pruned_trials_are_marked_and_left_out_of_the_curves(tmp_path):
    tuner = tune_mod.Tuner(items(tmp_path, prune=True), 4, tmp_path / "runs", prune=True)
    scores = iter([0.9, 0.9, 0.1, 0.1, 0.8, 0.8, 0.2, 0.2])  # per trial asked: the two variants alternate

    def run_round(jobs, trials):
        for job in jobs:
            fake_run(job, val=next(scores), watch=tuner.watch(trials))
    ended = tune_mod.tune(tuner, run_round, 2, say=lambda _: None)
    assert ended.get("pruned", 0) >= 2
    metrics, runs = read_runs(tmp_path / "runs")
    rows = tuning.trials(metrics, runs, present.configs(runs))
    pruned = rows.filter(pl.col("state") == "pruned")
    assert pruned.height == ended["pruned"]
    assert all(r.startswith("pruned by successive halving") for r in runs.filter(
        pl.col("path").is_in(pruned["path"].to_list()))["reason"])
    curves = tuning.budget_curves(rows)
    complete = rows.filter(pl.col("state") == "complete").group_by("variant").len()
    assert dict(curves.group_by("variant").agg(pl.col("n").max()).iter_rows()) == dict(complete.iter_rows())
    for t in study_trials(tuner, "resnet18"):
        assert t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def test_storage_urls_and_errors(tmp_path):
    assert tune_mod.storage_url(None, tmp_path / "r") == f"sqlite:///{(tmp_path / 'r' / 'tune.db').resolve()}"
    assert tune_mod.storage_url("postgresql://u:secret@host/db", tmp_path) == "postgresql://u:secret@host/db"
    assert tune_mod._shown("postgresql://u:secret@host/db") == "postgresql://***@host/db"
    with pytest.raises(ValueError, match="--storage expects an Optuna storage URL"):
        tune_mod.storage_url("tune.db", tmp_path)
    with pytest.raises(ValueError, match="--trials expects at least 1"):
        tune_mod.Tuner(items(tmp_path), 0, tmp_path / "runs")


ONE = '''
[comparisons.one]
question = "How good is toy-dilated once tuned?"
variants = ["toy-dilated"]

[comparisons.one.search]
warmup_max_lr = { log_uniform = [1e-4, 1e-2] }
use_augmentation = { choice = [false, true] }
'''


def test_nbkit_tune_trains_trials_that_read_as_ordinary_runs(tmp_path, capsys):
    from nbkit.analysis import tables
    from nbkit.cli import main
    from nbkit.view import workbench as wb
    from nbkit.view.summary import summary_markdown

    (tmp_path / "one.toml").write_text(ONE)
    args = ["tune", "one", "--comparisons", str(tmp_path / "one.toml"), "--trials", "2", "--jobs", "2",
            "--dataset", "synthetic", "--max-iter", "4", "--eval-every", "2", "--batch-size", "16", "--device", "cpu",
            "--runs-dir", str(tmp_path / "runs")]
    assert main(args) == 0
    out = capsys.readouterr()
    assert "trials are chosen on 200 training images held out as val" in out.err
    assert "toy-dilated: 2 complete; best val top-1" in out.out
    folders = sorted((tmp_path / "runs" / "synthetic" / "toy-dilated").glob("tune-*"))
    assert len(folders) == 2
    configs = [json.loads((f / "config.json").read_text()) for f in folders]
    assert [c["tune"]["trial"] for c in configs] == [0, 1]
    for c in configs:
        assert c["settings"]["val_size"] == 200 and c["tune"]["study"].startswith("toy-dilated-")
        assert c["settings"]["warmup_max_lr"] == c["tune"]["values"]["warmup_max_lr"]
    assert main(args) == 0  # again: the study is complete, nothing trains
    assert "starting" not in capsys.readouterr().err
    assert sorted((tmp_path / "runs" / "synthetic" / "toy-dilated").glob("tune-*")) == folders

    # every view reads a trial as an ordinary run: the reader, the tables, the summary, the workbench
    metrics, runs = read_runs(tmp_path / "runs")
    assert runs.height == 2 and set(runs["state"]) == {"done"}
    per_run = tables.per_run(metrics, runs)
    assert per_run["test_at_best_val"].null_count() == 0
    assert all(f.name in summary_markdown(tmp_path / "runs") for f in folders)
    comparison = load_study(tmp_path / "one.toml").comparisons["one"]
    from nbkit.view import comparison_view

    view = comparison_view.build_view(metrics, runs, "synthetic", ["toy-dilated"], splits=("val", "test"))
    assert view.run_table.height == 2
    titles = [s.title for s in wb.sections(view, comparison, "synthetic")]
    assert titles[:3] == ["Tuning: expected best after n trials", "Tuning: the ranking by budget",
                          "Tuning: the chosen trial per variant"]
    chosen = next(s for s in wb.sections(view, comparison, "synthetic") if s.title.endswith("per variant")).table
    assert chosen["variant"].to_list() == ["toy-dilated"] and chosen["launch with 3 seeds"][0].startswith(
        "nbkit sweep toy-dilated --seeds 3 --dataset synthetic --max-iter 4")


def test_a_trial_record_on_the_command_line_is_checked(tmp_path, capsys):
    from nbkit.cli import main

    code = main(["train", "toy-dilated", "--dataset", "synthetic", "--max-iter", "2", "--device", "cpu",
                 "--runs-dir", str(tmp_path), "--tune-json", "[1]"])
    assert code == 2 and "--tune-json expects a JSON object with the trial's study" in capsys.readouterr().err
    assert not any(tmp_path.rglob("config.json"))


def test_a_watched_sweep_stops_the_run_its_watcher_prunes(tmp_path):
    """run_sweep's watch (how --prune stops a trial): True stops the child with a checkpoint."""
    from nbkit.rundir.runlog import read_status
    from nbkit.sweeps.sweep import plan, run_sweep

    job, = plan(["toy-dilated"], 1, {"dataset": "synthetic", "max_iter": 100000, "eval_every": 5, "batch_size": 8},
                tmp_path)
    fired = []

    def watch(j):  # True once, when the run has logged a row
        logged = (j.run_dir / "metrics.jsonl").exists() and (j.run_dir / "metrics.jsonl").stat().st_size > 0
        if logged and not fired:
            fired.append(j)
            return True
        return False
    outcome = run_sweep([job], device="cpu", poll=0.2, watch=watch)
    assert fired == [job]
    assert [j.label for j in outcome["stopped"]] == ["toy-dilated seed 0"]
    status = read_status(job.run_dir)
    assert status["state"] == "stopped" and 0 < status["step"] < 100000
    assert (job.run_dir / "checkpoint.pt").exists()
