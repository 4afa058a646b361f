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
