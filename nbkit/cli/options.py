"""The command line's shared options: the setting flags (--max-iter, ..., --set KEY=VALUE), the
comparisons file, the runs directory, and JSON arguments a sweep hands its runs, each checked with
a one-line error that says what was expected."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_comparisons(p: argparse.ArgumentParser) -> None:
    p.add_argument("--comparisons", metavar="FILE",
                   help="a TOML or YAML file of your own variants and comparisons, on top of nbkit's "
                        "(see README, 'Your own models'; default: nbkit's alone)")


# settings with a flag of their own (--max-iter, ...); every other setting goes through --set
METAVARS = {"dataset": "NAME|PATH", "data_dir": "DIR", "seed": "S"}  # the rest are counts: N

SETTING_FLAGS = {
    "dataset": "cifar100 (default), cifar10, synthetic, or an image folder/archive path",
    "max_iter": "training steps (default 5000); --max-steps is the same flag",
    "eval_every": "steps between evaluations (default 100)",
    "batch_size": "training batch (default 128)",
    "seed": "seed for initialisation, data order and augmentation (default 0)",
    "val_size": "training images held out as a val split (default 0)",
    "data_dir": "where datasets and caches live (default data/)",
    "precision": "auto (default: bf16 autocast on CUDA, fp32 elsewhere), bf16, or fp32 as the original",
}


def add_setting_flags(p: argparse.ArgumentParser) -> None:
    from nbkit.design.settings import Settings

    types = {k: type(v) for k, v in Settings().to_dict().items()}
    for key, help in SETTING_FLAGS.items():
        names = ["--" + key.replace("_", "-")] + (["--max-steps"] if key == "max_iter" else [])
        p.add_argument(*names, dest=key, type=types[key], help=help, metavar=METAVARS.get(key, "N"))
    p.add_argument("--set", nargs="*", action="extend", metavar="KEY=VALUE",
                   help="any other setting, e.g. --set use_augmentation=true (repeatable)")


def setting_overrides(args) -> dict:
    from nbkit.design.settings import parse_assignments

    overrides = parse_assignments(args.set or [])
    overrides.update({key: getattr(args, key) for key in SETTING_FLAGS if getattr(args, key) is not None})
    return overrides


def json_argument(text: str, flag: str, expected: str):
    import json

    try:
        return json.loads(text)
    except ValueError as e:
        raise ValueError(f"{flag} expects {expected} ({e})") from None


def settings_argument(value, flag: str):
    """Resolved settings passed whole by a sweep, keys checked."""
    from nbkit.design.settings import Settings, check_keys

    if not isinstance(value, dict):
        raise ValueError(f"{flag} expects a JSON object of settings, got {type(value).__name__}")
    check_keys(value)
    return Settings(**value)


def existing_runs_dir(path: Path) -> Path:
    """A runs directory to read: one that does not exist, or is a file, is an error, not "no runs"."""
    if not path.exists():
        raise ValueError(f"runs directory {path} does not exist; expected a folder of runs (see --runs-dir)")
    if not path.is_dir():
        raise ValueError(f"runs directory {path} is not a folder; expected a folder of runs (see --runs-dir)")
    return path


def at_least_one(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value!r}")
    return n


def add_where_runs_go(p: argparse.ArgumentParser, what: str, jobs: str) -> None:
    """The options a command that trains many runs shares (sweep, tune): runs at once, the setting
    flags, the device, the runs directory and a label for each run's config.json."""
    p.add_argument("--jobs", type=int, default=1, metavar="N", help=jobs)
    add_setting_flags(p)
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda (all visible GPUs)")
    add_runs_dir(p)
    p.add_argument("--label", help=f"a note stored in every {what}'s config.json")


def add_runs_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-dir", type=runs_dir_argument, default=runs_dir_argument(None), metavar="DIR",
                   help="where run logs are (default: $NBKIT_RUNS_DIR, else artifacts/runs of the project "
                        "holding the working directory)")


def runs_dir_argument(value: str | None):
    from nbkit.rundir.runlog import runs_dir

    return runs_dir(value)
