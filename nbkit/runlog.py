"""Run logs: the contract between the trainer and everything that reads runs.

<runs-dir>/<dataset>/<variant>/<run-id>/
    config.json     resolved settings, dataset, seed, versions, device, start time
    metrics.jsonl   one JSON object per line: step, split, time, metrics
    status.json     state (running, done, failed, stopped), step, images_per_second, reason
    checkpoint.pt   model, optimiser, step, RNG states, settings
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # polars is imported where frames are built: training and its workers need no polars
    import polars as pl

STATES = ("running", "done", "failed", "stopped")
CONFIG, METRICS, STATUS, CHECKPOINT = "config.json", "metrics.jsonl", "status.json", "checkpoint.pt"


def write_json_atomic(path: Path, data: dict) -> None:
    """Write to a temporary file and rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunWriter:
    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self._metrics = open(self.dir / METRICS, "a")

    def config(self, config: dict) -> None:
        write_json_atomic(self.dir / CONFIG, config)

    def status(self, state: str, step: int, **fields) -> None:
        assert state in STATES, state
        write_json_atomic(self.dir / STATUS, {"state": state, "step": step, **fields})

    def metrics(self, rows: list[dict]) -> None:
        # whole lines in one write, flushed: a reader sees complete rows or nothing new
        self._metrics.write("".join(json.dumps(r, allow_nan=True) + "\n" for r in rows))
        self._metrics.flush()

    def close(self) -> None:
        self._metrics.close()


def truncate_metrics(path: Path, last_step: int) -> None:
    """Keep only whole rows up to last_step (a resumed run redoes the rest); atomic rewrite."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().split("\n"):
        try:
            if json.loads(line)["step"] <= last_step:
                keep.append(line + "\n")
        except (ValueError, KeyError, TypeError):
            continue  # a cut or garbage line is dropped here
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text("".join(keep))
    os.replace(tmp, path)


def new_run_dir(runs_dir: Path, dataset: str, variant: str, run_id: str) -> Path:
    """Claim a fresh run directory atomically (mkdir fails if another process has it)."""
    parent = Path(runs_dir) / dataset / variant
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1000):
        path = parent / (run_id if n == 0 else f"{run_id}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not claim a run directory under {parent}")


# --- reading -------------------------------------------------------------------------------

def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def read_status(run_dir: Path) -> dict:
    """A run's status.json, or {} when there is none yet (or it cannot be read)."""
    return _read_json(Path(run_dir) / STATUS) or {}


def read_metrics(path: Path) -> list[dict]:
    """Rows of one metrics.jsonl; a truncated or garbage line is skipped with a warning."""
    rows = []
    try:
        text = Path(path).read_text()
    except OSError:
        return rows
    lines = text.split("\n")
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if i == len(lines) and not text.endswith("\n"):
            # still being written (or cut): not a complete row yet
            warnings.warn(f"{path}:{i}: skipping an incomplete last line", stacklevel=2)
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or "step" not in row or "split" not in row:
                raise ValueError("not a metrics row")
        except ValueError:
            warnings.warn(f"{path}:{i}: skipping an unreadable line", stacklevel=2)
            continue
        rows.append(row)
    return rows


def find_runs(runs_dir: str | Path, dataset: str | None = None) -> list[Path]:
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    pattern = f"{dataset}/*/*/{CONFIG}" if dataset else f"*/*/*/{CONFIG}"
    return sorted(p.parent for p in root.glob(pattern))


def run_info(run_dir: Path) -> dict | None:
    config = _read_json(run_dir / CONFIG)
    if config is None:
        return None
    status = read_status(run_dir) or {"state": "running", "step": 0}
    return {
        "run_id": run_dir.name, "path": str(run_dir),
        "dataset": config.get("dataset", {}).get("name", run_dir.parent.parent.name),
        "variant": config.get("variant", run_dir.parent.name), "seed": config.get("seed"),
        "state": status.get("state"), "last_step": status.get("step"),
        "images_per_second": status.get("images_per_second"), "reason": status.get("reason"),
        "parameters": config.get("parameters"), "steps_per_epoch": config.get("steps_per_epoch"),
        "max_steps": config.get("settings", {}).get("max_iter"), "label": config.get("label"),
    }


ID_COLUMNS = ["run_id", "dataset", "variant", "seed"]


def read_runs(runs_dir: str | Path, dataset: str | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(metrics, runs): every logged point of every run as one frame, and one row per run."""
    import polars as pl

    infos, frames = [], []
    for run_dir in find_runs(runs_dir, dataset):
        info = run_info(run_dir)
        if info is None:
            continue
        infos.append(info)
        rows = read_metrics(run_dir / METRICS)
        if rows:
            frame = pl.from_dicts(rows, infer_schema_length=None)
            frames.append(frame.with_columns(
                *(pl.lit(info[c]).alias(c) for c in ID_COLUMNS), pl.lit(info["path"]).alias("path")))
    runs = pl.from_dicts(infos, infer_schema_length=None) if infos else pl.DataFrame()
    if not frames:
        return pl.DataFrame(), runs
    metrics = pl.concat(frames, how="diagonal_relaxed")
    metrics = metrics.select(*ID_COLUMNS, "path", pl.exclude(*ID_COLUMNS, "path"))
    return metrics, runs


def best_per_run(metrics: pl.DataFrame, split: str, by: str = "acc_top1") -> pl.DataFrame:
    """Each run's best `by` on `split` and its step; ties go to the earlier step."""
    import polars as pl

    if metrics.is_empty() or "split" not in metrics.columns:
        return pl.DataFrame()
    return (metrics.filter(pl.col("split") == split)
            .sort(["path", by, "step"], descending=[False, True, False])
            .group_by("path", maintain_order=True).first()
            .select(*ID_COLUMNS, "path", "split", "step", by))
