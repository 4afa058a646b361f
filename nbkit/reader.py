"""Reading a runs directory into Polars frames: every logged point of every run, and one row per
run. What the tables, charts, notebooks and reports start from."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import TYPE_CHECKING

from .runlog import CONFIG, METRICS, read_config, read_metrics, read_status, run_path

if TYPE_CHECKING:  # polars is imported where frames are built: training and its workers need no polars
    import polars as pl

ID_COLUMNS = ["run_id", "dataset", "variant", "seed"]


def find_runs(runs_dir: str | Path, dataset: str | None = None) -> list[Path]:
    """Every run folder (one holding config.json), or those of one dataset: a name, never a
    pattern or a path out of the runs directory."""
    root = Path(runs_dir)
    if dataset is not None:
        run_path(root, dataset, "x", "x")  # a plain folder name, or ValueError
    if not root.is_dir():
        return []
    pattern = f"{glob.escape(dataset)}/*/*/{CONFIG}" if dataset else f"*/*/*/{CONFIG}"
    return sorted(p.parent for p in root.glob(pattern))


def run_info(run_dir: Path) -> dict | None:
    """One run's row: who it is, its state and the few facts the tables show."""
    config = read_config(run_dir)
    if config is None:
        return None
    status = read_status(run_dir) or {"state": "running", "step": 0}
    settings = config.get("settings") or {}
    return {
        "run_id": run_dir.name, "path": str(run_dir),
        "dataset": (config.get("dataset") or {}).get("name") or run_dir.parent.parent.name,
        "variant": config.get("variant") or run_dir.parent.name, "seed": config.get("seed"),
        "state": status["state"], "last_step": status.get("step", 0),
        "images_per_second": status.get("images_per_second"), "reason": status.get("reason"),
        "parameters": config.get("parameters"), "steps_per_epoch": config.get("steps_per_epoch"),
        "max_iter": settings.get("max_iter"), "label": config.get("label"),
        "use_augmentation": settings.get("use_augmentation"), "precision": precision(config),
    }


def precision(config: dict) -> str | None:
    """bf16 or fp32, as config.json records it; for a run logged before it did, what nbkit used
    then: bf16 autocast on a GPU, fp32 on the CPU."""
    if config.get("precision") or not config.get("device"):
        return config.get("precision")
    return "fp32" if config["device"] == "cpu" else "bf16"


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
