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
