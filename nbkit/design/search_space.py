"""Search spaces of a comparisons file: the settings `nbkit tune` samples, per variant or per
comparison, each over a log-uniform, uniform or integer range or a list of choices:

    [variants.small-cnn.search]
    warmup_max_lr = { log_uniform = [1e-4, 3e-3] }   # the peak learning rate
    warmup_num_steps = { int = [0, 40] }
    use_augmentation = { choice = [false, true] }

    [comparisons.mine.search]                         # for each of its variants without a search of its own
    warmup_max_lr = { uniform = [1e-4, 1e-3] }

Checked when the file is read, each problem one line naming the file and the key. Plain data
only: nothing here imports a model or Optuna (nbkit.sweeps.tune turns a space into Optuna's
distributions).
"""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import dataclass

from nbkit.design.settings import KEYS, Settings
from nbkit.errors import SettingsError, closest

KINDS = ("log_uniform", "uniform", "int", "choice")
# settings a search never samples: what is compared (the model), the data and how a run is kept
NOT_SEARCHED = ("model", "model_kwargs", "dataset", "data_dir", "seed", "val_size", "max_iter", "eval_every",
                "eval_batch_size", "log_every", "save_every", "compile", "cuda_graph", "precision", "boundary_eval",
                "seen_probe")
MAX_PARAMS, MAX_CHOICES = 20, 100
_TYPES = typing.get_type_hints(Settings)


@dataclass(frozen=True)
class Param:
    """One sampled setting: kind (log_uniform, uniform, int, choice) and its bounds or choices."""
    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple = ()

    def describe(self) -> str:
        return (f"{self.name} in {{{', '.join(json.dumps(c) for c in self.choices)}}}" if self.kind == "choice"
                else f"{self.name} {self.kind.replace('_', '-')} [{self.low:g}, {self.high:g}]")


SearchSpace = tuple  # of Param, in the file's order


class SearchError(ValueError):
    """A search table that cannot be used; `key` names where (comparisons_file wraps it with the file)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def parse_search(raw, key: str) -> SearchSpace:
    """A search table ({setting: {kind: bounds}}) as Params; SearchError naming the key otherwise."""
    if not isinstance(raw, dict) or not raw:
        raise SearchError(key, "expected a table of settings to search, e.g. "
                               "warmup_max_lr = { log_uniform = [1e-4, 3e-3] }")
    if len(raw) > MAX_PARAMS:
        raise SearchError(key, f"expected at most {MAX_PARAMS} settings to search, got {len(raw)}")
    return tuple(_param(name, spec, f"{key}.{name}") for name, spec in raw.items())


def _param(name, spec, key: str) -> Param:
    if not isinstance(name, str) or name not in KEYS:
        raise SearchError(key, f"unknown setting{closest(str(name), KEYS)} Expected a setting (nbkit train --help)")
    if name in NOT_SEARCHED:
        raise SearchError(key, f"{name} is not searched (it is what is compared, the data, or how a run is kept); "
                               "expected a setting of the recipe such as warmup_max_lr, warmup_num_steps, "
                               "use_augmentation")
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in KINDS:
        raise SearchError(key, f"expected one of {{ log_uniform = [low, high] }}, {{ uniform = [low, high] }}, "
                               f"{{ int = [low, high] }} or {{ choice = [a, b, ...] }}, got {spec!r:.80}")
    kind, value = next(iter(spec.items()))
    key = f"{key}.{kind}"
    kind_of = _TYPES[name]
    if isinstance(kind_of, types.UnionType):
        kind_of = next(a for a in kind_of.__args__ if a is not type(None))
    if kind == "choice":
        if not isinstance(value, list) or not value or len(value) > MAX_CHOICES:
            raise SearchError(key, f"expected a list of 1 to {MAX_CHOICES} values")
        if not all(v is None or isinstance(v, (str, int, float, bool)) for v in value):
            raise SearchError(key, "expected plain values (numbers, words, true or false)")
        if len({repr(v) for v in value}) < len(value):
            raise SearchError(key, "a value is listed twice")
        for v in value:
            _valid(name, v, key)
        return Param(name, kind, choices=tuple(value))
    numbers = isinstance(value, list) and len(value) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    if not numbers:
        raise SearchError(key, f"expected [low, high], two finite numbers, got {value!r:.80}")
    low, high = value
    if not low < high:
        raise SearchError(key, f"expected low < high, got [{low:g}, {high:g}]")
    what = {int: "whole numbers", float: "real numbers", bool: "true or false"}.get(kind_of, "words")
    if kind == "int":
        if kind_of is not int or not all(isinstance(v, int) for v in value):
            raise SearchError(key, f"int expects whole bounds of a setting of whole numbers; {name} takes {what}")
    elif kind_of is not float:
        raise SearchError(key, f"{kind} expects a setting of real numbers; {name} takes {what}"
                               + (" (use int)" if kind_of is int else " (use choice)"))
    if kind == "log_uniform" and low <= 0:
        raise SearchError(key, f"log_uniform expects low > 0, got {low:g}")
    for v in value:
        _valid(name, float(v) if kind_of is float else v, key)
    return Param(name, kind, float(low) if kind_of is float else low, float(high) if kind_of is float else high)


def _valid(name: str, value, key: str) -> None:
    try:
        Settings(**{name: value})
    except SettingsError as e:
        raise SearchError(key, str(e)) from None


def space_of(study, variant: str, comparison: str | None = None) -> SearchSpace:
    """The space a variant is tuned over: its own search, else its comparison's; else a ValueError
    saying where to write one."""
    searches = getattr(study, "variant_search", {}) or {}
    if variant in searches:
        return searches[variant]
    by_comparison = getattr(study, "comparison_search", {}) or {}
    if comparison is not None and comparison in by_comparison:
        return by_comparison[comparison]
    where = f"[variants.{variant}.search]" + (f" or [comparisons.{comparison}.search]" if comparison else "")
    raise ValueError(f"variant '{variant}' has no search space; add {where} to the comparisons file "
                     "(README, 'Fair comparisons under tuning')")
