"""The command line explains itself: every option of sweep, summary and report has help, and
each says its default."""

import argparse

import pytest

from nbkit.cli import build_parser


def subcommand(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


@pytest.mark.parametrize("name", ["sweep", "summary", "report"])
def test_every_option_has_help_that_says_its_default(name):
    parser = subcommand(name)
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{name} {action.option_strings or action.dest} has no help"
        if action.option_strings and action.default not in (None, False) and action.dest != "runs_dir":
            assert "default" in action.help, f"{name} {action.option_strings[0]} hides its default"
    if name in ("summary", "report"):
        assert all("default" in a.help for a in parser._actions if a.option_strings and a.dest != "help")
    assert "examples:" in subcommand("sweep").format_help()


def test_a_run_reports_progress_at_every_log_window_not_only_at_evaluations(tmp_path, capsys):
    from nbkit.cli import main

    code = main(["train", "toy-dilated", "--dataset", "synthetic", "--max-iter", "6", "--eval-every", "6",
                 "--batch-size", "16", "--device", "cpu", "--runs-dir", str(tmp_path), "--set", "log_every=2",
                 "tailor_num_classes=true", "eval_batch_size=256"])
    assert code == 0
    lines = [l for l in capsys.readouterr().err.splitlines() if "] step " in l]
    assert "step 2/6" in lines[0] and "test top-1 -" in lines[0]  # before the first evaluation
    assert "step 6/6" in lines[-1] and "test top-1 -" not in lines[-1]


def test_set_may_be_given_more_than_once():
    from nbkit.cli import build_parser

    args = build_parser().parse_args(["train", "toy-dilated", "--set", "a=1", "--set", "b=2", "c=3"])
    assert args.set == ["a=1", "b=2", "c=3"]  # the first --set is not lost


def test_a_run_shorter_than_its_warmup_has_it_scaled_or_is_refused_where_it_is_launched(tmp_path, capsys):
    """The 500-step warm-up of a 30-step run (never reaching its peak rate, it barely learns and
    reads top-1 0.0000): scaled to a tenth of the run, saying so, unless the user chose it; then
    refused in one line, and no run is made."""
    import json

    from nbkit.cli import main

    common = ["--dataset", "synthetic", "--max-iter", "30", "--eval-every", "30", "--batch-size", "16", "--device",
              "cpu", "--runs-dir", str(tmp_path / "runs"), "--set", "tailor_num_classes=true", "eval_batch_size=256"]
    assert main(["train", "toy-dilated", *common]) == 0
    err = capsys.readouterr().err
    assert "the 500-step learning-rate warm-up is longer than this 30-step run: scaled to 3 steps" in err
    assert "ends within its learning-rate warm-up" not in err
    (config,) = (tmp_path / "runs").glob("synthetic/toy-dilated/*/config.json")
    assert json.loads(config.read_text())["settings"]["warmup_num_steps"] == 3
    for command in (["train", "toy-dilated"], ["sweep", "toy-dilated"]):
        assert main([*command, *common, "warmup_num_steps=30"]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert "warmup_num_steps=30 is not shorter than the run (max_iter=30)" in line and "e.g. warmup_num_steps=3" in line
    assert len(list((tmp_path / "runs").glob("synthetic/toy-dilated/*"))) == 1
    assert main(["train", "toy-dilated", *common, "constant_lr=1e-3"]) == 0  # no warm-up to fit
    assert "warm-up" not in capsys.readouterr().err


def test_a_sweep_plans_a_short_run_with_its_warmup_scaled_and_says_so(tmp_path):
    from nbkit.sweeps.sweep import plan

    (job,) = plan(["toy-dilated"], 1, {"max_iter": 40}, tmp_path)
    assert job.settings.warmup_num_steps == 4 and "scaled to 4 steps" in job.note
    (job,) = plan(["toy-dilated"], 1, {"max_iter": 40, "warmup_num_steps": 5}, tmp_path)
    assert job.settings.warmup_num_steps == 5 and job.note is None
    (job,) = plan(["resnet18-clr1e-4"], 1, {"max_iter": 40}, tmp_path)  # a constant rate: nothing to fit
    assert job.settings.warmup_num_steps == 500 and job.note is None
