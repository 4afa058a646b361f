"""Reading a runs directory into Polars frames: every logged point of every run, and one row per
run. What the tables, charts, notebooks and reports start from.

`RunStore` keeps a runs directory in memory and `poll()` brings it up to date reading only what
changed: a file is re-read when its inode, size or modification time moved, and a metrics log
that grew is read from where the last read stopped (whole lines only), so a live view's refresh
costs a few stat calls when nothing was written. `read_runs` is one poll of a fresh store.

A run is its folder (`path`); `group` pools the runs of one variant whose settings are the same
apart from the seed (what "across seeds" may average), named by the variant, and by the settings
or label that set it apart where a variant has several; `name` is the run as people read it.
"""

from __future__ import annotations

import json
import os
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nbkit.design.settings import LATER_KEYS
from nbkit.rundir import files
from nbkit.rundir.runlog import (
    CONFIG,
    MAX_METRICS_BYTES,
    METRICS,
    STATUS,
    held_locks,
    lock_held,
    metrics_rows,
    read_config,
    read_status,
    run_path,
)

if TYPE_CHECKING:  # polars is imported where frames are built: training and its workers need no polars
    import polars as pl

ID_COLUMNS = ["run_id", "dataset", "variant", "seed"]
OPTIONAL_COLUMNS = ("time", "loss", "acc_top1")  # a metrics row may leave any of them out
# settings that do not change what a run measures: runs differing only here pool across seeds
NOT_IDENTITY = {"seed", "dataset", "data_dir", "save_every", "eval_batch_size", "compile", "cuda_graph"}
MAX_DESCRIBED = 3  # differing settings named in a group's name


def find_runs(runs_dir: str | Path, dataset: str | None = None) -> list[Path]:
    """Every run folder (one holding config.json), or those of one dataset: a name, never a
    pattern or a path out of the runs directory."""
    root = Path(runs_dir)
    if dataset is not None:
        run_path(root, dataset, "x", "x")  # a plain folder name, or ValueError
    tops = [root / dataset] if dataset is not None else _subdirs(root)
    return sorted(run for top in tops for variant in _subdirs(top) for run in _subdirs(variant)
                  if (run / CONFIG).is_file())


def _subdirs(path: Path) -> list[Path]:
    try:
        with os.scandir(path) as it:
            return [Path(e.path) for e in it if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")]
    except OSError:
        return []


def _stamp(path: Path) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


INTERRUPTED = "interrupted"  # a state no run writes: "running" in status.json with no process holding its lock


def interrupted_reason(run_dir: Path) -> str:
    return (f"its process is gone (no process holds the run's lock): resume it with `nbkit train --resume {run_dir}` "
            "or run its sweep again")


def run_row(run_dir: Path, config: dict, status: dict, held: bool | None = None) -> dict:
    """One run's row: who it is, its state and the few facts the tables show. held: whether a
    process holds the run's lock (False turns a "running" run into "interrupted")."""
    status = status or {"state": "running", "step": 0}
    settings = config.get("settings") or {}
    if status.get("state") == "running" and held is False:
        status = {**status, "state": INTERRUPTED, "reason": interrupted_reason(run_dir)}
    return {
        "run_id": run_dir.name, "path": str(run_dir),
        "dataset": (config.get("dataset") or {}).get("name") or run_dir.parent.parent.name,
        "variant": config.get("variant") or run_dir.parent.name, "seed": config.get("seed"),
        "state": status["state"], "last_step": status.get("step", 0),
        "images_per_second": status.get("images_per_second"), "reason": status.get("reason"),
        "parameters": config.get("parameters"), "steps_per_epoch": config.get("steps_per_epoch"),
        "max_iter": settings.get("max_iter"), "switch_epoch": settings.get("switch_epoch"),
        "original_schedule": settings.get("original_schedule"), "label": config.get("label"),
        "use_augmentation": settings.get("use_augmentation"), "precision": precision(config),
        "start_time": config.get("start_time") if isinstance(config.get("start_time"), str) else None,
    }


def run_info(run_dir: Path) -> dict | None:
    """One run's row read from its folder, or None when it has no usable config.json."""
    config = read_config(run_dir)
    if config is None:
        return None
    status = read_status(run_dir)
    held = lock_held(run_dir) if (status or {}).get("state", "running") == "running" else None
    return run_row(run_dir, config, status, held)


def precision(config: dict) -> str | None:
    """bf16 or fp32, as config.json records it; for a run logged before it did, what nbkit used
    then: bf16 autocast on a GPU, fp32 on the CPU."""
    if config.get("precision") or not config.get("device"):
        return config.get("precision")
    return "fp32" if config["device"] == "cpu" else "bf16"


def identity(config: dict) -> dict:
    """What makes two runs of a variant comparable across seeds: their settings apart from the
    seed and the settings that change no result (a later-added setting at its default counts as
    absent, as in Settings.identity), the precision they trained in, and their label."""
    settings = config.get("settings") if isinstance(config.get("settings"), dict) else {}
    out = {k: v for k, v in settings.items() if k not in NOT_IDENTITY and LATER_KEYS.get(k, object()) != v}
    return {**out, "(precision)": precision(config), "(label)": config.get("label")}


def _show(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def group_names(identities: dict[str, dict]) -> dict[str, str]:
    """Per group key (a variant's identity as JSON), its name: the variant's own where it has one
    group, else what sets the group apart from the variant's others: its label where labels
    differ, else the settings that differ ('toy-dilated · max_iter=400')."""
    names = {}
    by_variant = defaultdict(list)
    for key, (variant, ident) in identities.items():
        by_variant[variant].append((key, ident))
    for variant, groups in by_variant.items():
        if len(groups) == 1:
            names[groups[0][0]] = variant
            continue
        keys = sorted({k for _, ident in groups for k in ident})
        differ = [k for k in keys if len({json.dumps(ident.get(k), sort_keys=True, default=str) for _, ident in groups}) > 1]
        labels_differ = "(label)" in differ
        shown = [k for k in differ if not k.startswith("(")]
        for key, ident in groups:
            if labels_differ and ident.get("(label)"):
                apart = str(ident["(label)"])
            else:
                parts = [f"{k}={_show(ident.get(k))}" for k in shown[:MAX_DESCRIBED]]
                parts += [f"{ident.get('(precision)')}"] if "(precision)" in differ else []
                apart = ", ".join(parts) + (", …" if len(shown) > MAX_DESCRIBED else "") or "unlabelled"
            names[key] = f"{variant} · {apart}"
    taken = Counter(names.values())
    seen: Counter = Counter()
    for key, name in sorted(names.items()):  # the same name twice (a hostile label): numbered apart
        if taken[name] > 1:
            seen[name] += 1
            names[key] = f"{name} ({seen[name]})"
    return names


@dataclass
class _Run:
    """One run folder as last read."""
    path: Path
    config: dict | None = None
    config_stamp: tuple | None = None
    status: dict = field(default_factory=dict)
    status_stamp: tuple | None = None
    metrics_stamp: tuple | None = None
    offset: int = 0  # bytes of whole metric lines read
    lines: int = 0  # whole metric lines read (warnings name the line)
    rows: list = field(default_factory=list)  # rows read since the frame was last built
    in_frame: bool = False  # whether the rows read before are in the store's frame (False: read again from the start)
    held: bool | None = None  # whether a process held the run's lock at the last poll (while "running")


class RunStore:
    """A runs directory (or one dataset of it) kept in memory; poll() reads what changed."""

    def __init__(self, runs_dir: str | Path | None = None, dataset: str | None = None):
        self.root: Path | None = None
        self.open(runs_dir, dataset)

    def open(self, runs_dir: str | Path | None, dataset: str | None = None) -> bool:
        """Follow another runs directory (a no-op for the one already followed); True if it changed."""
        root = Path(runs_dir) if runs_dir is not None else None
        if root == self.root and dataset == getattr(self, "dataset", None):
            return False
        self.root, self.dataset = root, dataset
        self.runs: dict[Path, _Run] = {}
        self.version = 0
        self._frames = None
        self._all, self._in_all = None, set()  # every run's rows read so far (frames()), and whose rows it holds
        return True

    def poll(self) -> bool:
        """Read whatever changed since the last poll; True when anything did."""
        found = set(find_runs(self.root, self.dataset)) if self.root is not None else set()
        changed = bool(set(self.runs) - found)
        for gone in set(self.runs) - found:
            del self.runs[gone]
        self._locks = ...  # /proc/locks, read at most once a poll, and only while a run says it is running
        for path in sorted(found):
            run = self.runs.setdefault(path, _Run(path))
            changed |= self._poll_run(run)
        if changed:
            self.version += 1
            self._frames = None
        return changed

    def _poll_run(self, run: _Run) -> bool:
        changed = False
        stamp = _stamp(run.path / CONFIG)
        if stamp != run.config_stamp:
            run.config, run.config_stamp, changed = read_config(run.path), stamp, True
            run.in_frame = False  # its identity columns may have changed: rebuilt from all its rows
            run.metrics_stamp, run.offset, run.lines, run.rows = None, 0, 0, []
        stamp = _stamp(run.path / STATUS)
        if stamp != run.status_stamp:
            run.status, run.status_stamp, changed = read_status(run.path), stamp, True
        stamp = _stamp(run.path / METRICS)
        if stamp != run.metrics_stamp:
            changed |= self._read_metrics(run, stamp)
        held = None
        if (run.status or {}).get("state", "running") == "running":
            if self._locks is ...:
                self._locks = held_locks()
            held = lock_held(run.path, self._locks)
        changed |= held != run.held  # a process that died leaves its status as it was: its lock tells
        run.held = held
        return changed

    def _read_metrics(self, run: _Run, stamp: tuple | None) -> bool:
        """Append the whole lines written since the last read; a log replaced or cut (a resumed
        run rewrites it) is read again from its start."""
        before = run.metrics_stamp
        run.metrics_stamp = stamp
        if stamp is None:
            had = run.in_frame or bool(run.rows)
            run.in_frame, run.rows, run.offset, run.lines = False, [], 0, 0
            return had
        if before is None or stamp[0] != before[0] or stamp[1] < run.offset:
            run.in_frame, run.rows, run.offset, run.lines = False, [], 0, 0
        if run.offset >= MAX_METRICS_BYTES:
            return False
        try:
            with files.open_regular(run.path / METRICS) as f:
                f.seek(run.offset)
                data = f.read(MAX_METRICS_BYTES - run.offset)
        except OSError:
            return False
        if run.offset + len(data) >= MAX_METRICS_BYTES:
            warnings.warn(f"{run.path / METRICS}: reading only its first {MAX_METRICS_BYTES >> 20} MiB (a 5,000-step "
                          "run logs well under 1 MiB)", stacklevel=3)
        rows, used = metrics_rows(data, run.path / METRICS, run.lines + 1, final=False)
        run.offset += used
        run.lines += data[:used].count(b"\n")
        run.rows += rows
        return bool(rows)

    # --- frames ----------------------------------------------------------------------------------

    def frames(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(metrics, runs) as read_runs returns them, built once per change."""
        if self._frames is None:
            self._frames = self._build()
        return self._frames

    def configs(self) -> dict[str, dict]:
        """Each run's config.json by path (as read; {} where unusable)."""
        return {str(p): r.config or {} for p, r in self.runs.items() if r.config is not None}

    def _build(self):
        import polars as pl

        usable = [r for r in self.runs.values() if r.config is not None]
        infos = [run_row(r.path, r.config, r.status, r.held) for r in usable]
        runs = pl.from_dicts(infos, infer_schema_length=None) if infos else pl.DataFrame()
        if infos:
            runs = with_groups(runs, {str(r.path): r.config for r in usable})
        # every run's rows stay in one frame: the rows read since are appended (a run read again
        # from its start, or gone, leaves it first), each run's rows together, in the runs' order
        known = {str(r.path): r for r in usable}
        gone = [p for p in self._in_all if p not in known or not known[p].in_frame]
        kept = self._all
        if kept is not None and gone:
            kept = kept.filter(~pl.col("path").is_in(gone))
        self._in_all.difference_update(gone)
        parts, ids = [], {c: [] for c in (*ID_COLUMNS, "path")}
        for run, info in zip(usable, infos):
            if run.rows:
                part = pl.from_dicts(run.rows, infer_schema_length=None)
                parts.append(part)
                for c in ids:
                    ids[c] += [info[c]] * part.height
                self._in_all.add(info["path"])
                run.rows = []
            run.in_frame = True  # its rows so far are in the store's frame
        if parts:
            new = pl.concat(parts, how="diagonal_relaxed").with_columns(
                pl.Series(c, v, dtype=kept.schema[c] if kept is not None and c in kept.columns else None)
                for c, v in ids.items())
            kept = new if kept is None or kept.is_empty() else pl.concat([kept, new], how="diagonal_relaxed")
            order = {p: i for i, p in enumerate(known)}
            kept = kept.sort(pl.col("path").replace_strict(order, default=len(order), return_dtype=pl.Int64),
                             maintain_order=True)
        self._all = kept
        if kept is None or kept.is_empty():
            return pl.DataFrame(), runs
        # the measures every view reads exist even where no row logged them (they are optional per row)
        metrics = kept.with_columns(pl.lit(None, pl.Float64).alias(c) for c in OPTIONAL_COLUMNS if c not in kept.columns)
        return metrics.select(*ID_COLUMNS, "path", pl.exclude(*ID_COLUMNS, "path")), runs


def with_groups(runs: pl.DataFrame, configs: dict[str, dict]) -> pl.DataFrame:
    """Adds `group` (runs of a variant whose settings are the same apart from the seed) and
    `name` (the run as people read it: its group and seed, numbered where a group holds two runs
    of one seed) to a runs frame."""
    import polars as pl

    keys, identities = {}, {}
    for path, dataset, variant in runs.select("path", "dataset", "variant").iter_rows():
        ident = identity(configs.get(path) or {})
        key = json.dumps([dataset, variant, ident], sort_keys=True, default=str)
        keys[path], identities[key] = key, (variant, ident)
    names = {}
    for dataset in runs["dataset"].unique().to_list():
        names |= group_names({k: v for k, v in identities.items() if json.loads(k)[0] == dataset})
    group = {path: names[key] for path, key in keys.items()}
    runs = runs.with_columns(pl.col("path").replace_strict(group, return_dtype=pl.String).alias("group"))
    seed = pl.col("seed").cast(pl.String).fill_null("?")
    order = pl.int_range(pl.len()).over("group", "seed", order_by=["start_time", "run_id"]) if "start_time" in runs.columns \
        else pl.int_range(pl.len()).over("group", "seed", order_by="run_id")
    twins = pl.len().over("group", "seed") > 1
    return runs.with_columns(pl.when(twins).then(pl.format("{} s{} #{}", "group", seed, order + 1))
                             .otherwise(pl.format("{} s{}", "group", seed)).alias("name"))


def read_runs(runs_dir: str | Path, dataset: str | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(metrics, runs): every logged point of every run as one frame, and one row per run."""
    store = RunStore(runs_dir, dataset)
    store.poll()
    return store.frames()
