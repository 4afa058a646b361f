"""The shapes of the run log's records, in one place: config.json, status.json and each row of
metrics.jsonl. Every reader checks what it reads here (runlog.read_config, read_status,
read_metrics), because a runs directory is shared, copied and edited by hand.

A record whose required field does not fit is skipped whole; an optional field that does not
fit is dropped from its record. Either way one warning names the file (and line) and what was
expected, and the other runs stay readable.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

from nbkit.design.settings import MAX_STEP

STATES = ("running", "done", "failed", "stopped")
MAX_INT = 2**63 - 1  # what a Polars Int64 column holds
MAX_TEXT = 1000  # characters of a name, label or reason worth showing

# the seen-count probe's columns of a train row (nbkit.training.seen_probe writes them): each group's
# mean loss and its share of the window's examples
SEEN_GROUPS = ("0", "1", "2", "3+")  # trained on 0, 1, 2, or 3 or more times before this batch


def seen_loss_column(group: str) -> str:
    return f"seen_loss/{group}"


def seen_share_column(group: str) -> str:
    return f"seen_share/{group}"


class Invalid(ValueError):
    """A value of the wrong shape; the message says what was expected."""


Check = Callable[[Any], Any]


def integer(lo: int = 0, hi: int = MAX_INT) -> Check:
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise Invalid(f"an integer in {lo}..{hi}")
        return v
    return check


def number(lo: float = -math.inf) -> Check:
    """A finite number (not a bool) of at least lo."""
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < lo:
            raise Invalid(f"a finite number of at least {lo:g}")
        return float(v)
    return check


def text(v) -> str:
    if not isinstance(v, str) or not v.strip() or len(v) > MAX_TEXT:
        raise Invalid(f"a non-empty string of at most {MAX_TEXT} characters")
    return v


def one_of(*choices: str) -> Check:
    def check(v):
        if v not in choices:
            raise Invalid(f"one of {', '.join(choices)}")
        return v
    return check


def boolean(v) -> bool:
    if not isinstance(v, bool):
        raise Invalid("true or false")
    return v


def mapping(v) -> dict:
    if not isinstance(v, dict):
        raise Invalid("a JSON object")
    return v


def measure(lo: float = -math.inf, hi: float = math.inf) -> Check:
    """A logged value: a number in lo..hi; NaN and infinities (a diverged run logs them) read as
    missing."""
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise Invalid("a number")
        if not math.isfinite(v):
            return None
        if not lo <= v <= hi:
            raise Invalid(f"a number in {lo:g}..{hi:g}")
        return float(v)
    return check


class Record:
    """A record's shape: required and optional fields, and the check for any other field
    (None: other fields pass unchecked)."""

    def __init__(self, name: str, required: dict[str, Check], optional: dict[str, Check], other: Check | None = None):
        self.name, self.required, self.optional, self.other = name, required, optional, other

    def check(self, value, where: str) -> dict | None:
        """The record with what fits, or None (after one warning) when it cannot be used."""
        problems = []
        if not isinstance(value, dict):
            _warn(where, f"skipping a {self.name} that is a {type(value).__name__}; expected a JSON object")
            return None
        out = {}
        for key, v in value.items():
            check = self.required.get(key) or self.optional.get(key) or self.other
            if check is None or (v is None and key in self.optional):
                out[key] = v
                continue
            try:
                out[key] = check(v)
            except Invalid as e:
                if key in self.required:
                    _warn(where, f"skipping a {self.name} whose {key!r} is {show(v)}; expected {e}")
                    return None
                problems.append(f"{key!r} ({show(v)}; expected {e})")
        missing = [k for k in self.required if k not in value]
        if missing:
            _warn(where, f"skipping a {self.name} without {', '.join(map(repr, missing))}")
            return None
        if problems:
            _warn(where, f"ignoring {', '.join(problems)} in a {self.name}")
        return out


def show(v) -> str:
    """A value as a warning quotes it: repr, at most 40 characters."""
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def _warn(where: str, message: str) -> None:
    warnings.warn(f"{where}: {message}", stacklevel=4)


# --- the run log's records (what nbkit.training.trainer writes) -------------------------------------------

CONFIG = Record("config", required={}, optional={
    "variant": text, "label": text, "run_id": text, "seed": integer(),
    "dataset": mapping, "settings": mapping, "parameters": integer(), "steps_per_epoch": integer(1),
    "world_size": integer(1), "precision": one_of("bf16", "fp32"), "device": text, "tune": mapping,
})
DATASET = Record("config's dataset", required={}, optional={"name": text, "source": text})
SETTINGS = Record("config's settings", required={}, optional={
    "max_iter": integer(1, MAX_STEP), "seed": integer(), "eval_every": integer(1), "use_augmentation": boolean,
    "precision": one_of("auto", "bf16", "fp32"), "switch_epoch": integer(),
    "original_schedule": boolean})
STATUS = Record("status", required={"state": one_of(*STATES)}, optional={
    "step": integer(0, MAX_STEP), "images_per_second": number(0), "wall_seconds": number(0), "reason": text,
    "peak_rss_mb": number(0), "gpu_memory_mb": number(0)})
METRICS_ROW = Record("metrics row", required={"step": integer(0, MAX_STEP), "split": text},
                     optional={"time": number(0), "acc_top1": measure(0, 1), "loss": measure(0), "lr": measure(0),
                               "loss_total": measure(0), "grad_norm": measure(0)},
                     other=measure())


def check_config(value, where: str) -> dict | None:
    config = CONFIG.check(value, where)
    if config is None:
        return None
    for key, record in (("dataset", DATASET), ("settings", SETTINGS)):
        if config.get(key) is not None:
            config[key] = record.check(config[key], where) or {}
    return config
