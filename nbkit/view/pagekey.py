"""What a live page's text and tables show, as a key made from their inputs, so a new row that
changes no number shown costs no table: the chart takes the row alone (nbkit.view.livechart),
while the answer, the scorecard, the sections and the tables, whose numbers move at evaluations,
are built and redrawn only when their key moves (the view builds them when first read)."""

from __future__ import annotations

import json

import polars as pl

MOVING = ("last_step", "images_per_second")  # a run's columns that change with every training row


def _frame(df: pl.DataFrame | None) -> tuple:
    if df is None or df.is_empty():
        return (0,)
    return df.height, tuple(df.columns), int(df.hash_rows().sum())


def _evaluated(view) -> tuple:
    """Every evaluation the view's runs logged: run, step, split, top-1 and loss."""
    metrics = view.metrics
    if metrics.is_empty():
        return (0,)
    evaluated = metrics.filter(pl.col("split") != "train")
    return _frame(evaluated.select([c for c in ("path", "step", "split", "acc_top1", "loss") if c in evaluated.columns]))


def _configs(view) -> int:
    return hash(json.dumps(view.cfgs, sort_keys=True, default=str))


def numbers_key(view, dataset: str | None, comparison: str) -> tuple | None:
    """The inputs of the answer, the scorecard, the sections and the per-variant and original's
    tables: the evaluations, the runs as they stand (states, settings, groups; not their step and
    speed, which move with every row and follow at evaluations) and their configs."""
    if view is None:
        return None
    runs = view.runs.drop([c for c in MOVING if c in view.runs.columns]) if not view.runs.is_empty() else None
    return (dataset, comparison, tuple(view.variants), _evaluated(view), _frame(runs), _configs(view))


def runs_key(view) -> tuple | None:
    """The Runs table's inputs: each run as it stands (its step moves as it logs), its evaluations
    and its config."""
    return None if view is None else (_evaluated(view), _frame(view.runs), _configs(view))
