"""What a live page's text and tables show, as a key: a new row that changes no number shown
redraws the chart's data alone (nbkit.view.livechart), while the answer, the scorecard, the
sections and the tables, whose numbers move at evaluations, redraw only when their key moves."""

from __future__ import annotations

import polars as pl

MOVING = ("Time", "img/s")  # per-variant columns that change with every training row


def _frame(df: pl.DataFrame | None) -> tuple:
    if df is None or df.is_empty():
        return (0,)
    return df.height, tuple(df.columns), int(df.hash_rows().sum())


def numbers_key(view, dataset: str | None, comparison: str) -> tuple | None:
    """The answer's, the scorecard's, the sections' and the per-variant and original's tables'
    inputs: the evaluated numbers per variant and run, the findings, the run set's protocol and
    the runs' states (the per-variant table's time and speed not: they follow at evaluations)."""
    if view is None:
        return None
    evaluated = view.metrics.filter(pl.col("split") != "train") if not view.metrics.is_empty() else view.metrics
    # time and speed move with every row: they are brought up to date with the rest, at evaluations
    shown = view.variant_rows.frame.drop([c for c in MOVING if c in view.variant_rows.frame.columns])
    return (dataset, comparison, _frame(shown), _frame(view.train_200_table), _frame(view.test_table),
            _frame(evaluated.select([c for c in ("path", "step", "split", "acc_top1") if c in evaluated.columns])),
            tuple(view.findings), view.protocol, _frame(view.runs.select("path", "state") if not view.runs.is_empty()
                                                         else None))


def runs_key(view) -> tuple | None:
    """The Runs table's: each run's row (its step moves as it logs)."""
    return None if view is None else _frame(view.run_rows.frame)
