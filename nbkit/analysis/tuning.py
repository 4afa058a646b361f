"""Comparisons under tuning, from the run folders alone (no Optuna needed to read them).

A run that `nbkit tune` made records its study, trial number and sampled values in config.json
(`tune`). Each complete trial is scored on the validation split only: its best val top-1 (the
earliest step on ties); test top-1 is read at that step and never chooses anything.

Dodge et al. (EMNLP 2019, "Show Your Work") give the expected best validation score after n
random trials from the N already run: with the scores sorted, v(1) <= ... <= v(N),

    E[max of n] = sum_i v(i) * ((i/N)^n - ((i-1)/N)^n)

(n draws with replacement from the N observed). `budget_curves` computes it per variant for
n = 1..N with a bootstrap band (the N scores resampled); `budget_verdict` says whether the ranking
of variants holds at every budget. Pruned, failed and running trials are left out of the curves.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

BAND = (0.05, 0.95)  # the bootstrap band's quantiles
RESAMPLES = 500


def expected_max(scores, n: int) -> float:
    """Dodge et al.'s expected best of n trials drawn (with replacement) from these scores."""
    v = np.sort(np.asarray(scores, dtype=float))
    if v.size == 0 or n < 1:
        raise ValueError(f"expected at least one score and n >= 1, got {v.size} scores and n = {n}")
    return float(v @ _weights(v.size, n))


def _weights(size: int, n: int) -> np.ndarray:
    i = np.arange(1, size + 1)
    return (i / size) ** n - ((i - 1) / size) ** n


def curve(scores, n_max: int | None = None, resamples: int = RESAMPLES, seed: int = 0) -> pl.DataFrame:
    """n, expected best, and the bootstrap band's low and high, for n = 1..n_max (default len(scores))."""
    v = np.sort(np.asarray(scores, dtype=float))
    n_max = n_max or v.size
    w = np.stack([_weights(v.size, n) for n in range(1, n_max + 1)], axis=1)  # (N, n_max)
    boot = np.sort(np.random.default_rng(seed).choice(v, size=(resamples, v.size), replace=True), axis=1) @ w
    return pl.DataFrame({"n": np.arange(1, n_max + 1), "expected": v @ w,
                         "low": np.quantile(boot, BAND[0], axis=0), "high": np.quantile(boot, BAND[1], axis=0)})


def _record(config: dict) -> dict | None:
    t = config.get("tune") if isinstance(config, dict) else None
    if not isinstance(t, dict) or not isinstance(t.get("trial"), int) or not isinstance(t.get("values"), dict):
        return None
    return t


def trials(metrics: pl.DataFrame, runs: pl.DataFrame, configs: dict) -> pl.DataFrame:
    """One row per tuning trial's run: variant, study, trial, state (complete, pruned, failed,
    running, stopped), val_top1 (best), best_step, test_top1 (at best_step), values (JSON), path."""
    rows = []
    for r in runs.iter_rows(named=True) if not runs.is_empty() else ():
        t = _record(configs.get(r["path"]) or {})
        if t is None:
            continue
        reason = r.get("reason") or ""
        state = {"done": "complete", "failed": "failed"}.get(r["state"], r["state"])
        if r["state"] == "stopped" and reason.startswith("pruned"):
            state = "pruned"
        rows.append({"path": r["path"], "variant": r["variant"], "dataset": r["dataset"],
                     "study": str(t.get("study")), "trial": t["trial"], "state": state,
                     "values": {str(k): v for k, v in t["values"].items()},
                     "log": [str(s).split()[0] for s in t.get("space") or [] if "log-uniform" in str(s)]})
    if not rows:
        return pl.DataFrame()
    out = pl.DataFrame([{k: v for k, v in r.items() if k not in ("values", "log")} for r in rows])
    scores = _scores(metrics, out["path"].to_list())
    out = out.join(scores, on="path", how="left")
    out = out.with_columns(pl.Series("values", [r["values"] for r in rows], dtype=pl.Object),
                           pl.Series("log", [r["log"] for r in rows], dtype=pl.Object))
    # a run that finished without a val split cannot be scored: it counts as failed, not complete
    out = out.with_columns(pl.when((pl.col("state") == "complete") & pl.col("val_top1").is_null())
                           .then(pl.lit("failed")).otherwise(pl.col("state")).alias("state"))
    return out.sort("variant", "trial")


def _scores(metrics: pl.DataFrame, paths: list[str]) -> pl.DataFrame:
    empty = pl.DataFrame({"path": paths, "val_top1": [None] * len(paths), "best_step": [None] * len(paths),
                          "test_top1": [None] * len(paths)},
                         schema={"path": pl.String, "val_top1": pl.Float64, "best_step": pl.Int64, "test_top1": pl.Float64})
    if metrics.is_empty() or "acc_top1" not in metrics.columns:
        return empty
    ev = metrics.filter(pl.col("path").is_in(paths) & pl.col("acc_top1").is_not_null())
    val = ev.filter(pl.col("split") == "val")
    if val.is_empty():
        return empty
    best = (val.sort(["path", "acc_top1", "step"], descending=[False, True, False]).group_by("path", maintain_order=True)
            .first().select("path", pl.col("acc_top1").alias("val_top1"), pl.col("step").cast(pl.Int64).alias("best_step")))
    test = ev.filter(pl.col("split") == "test").group_by("path", "step").agg(pl.col("acc_top1").last().alias("test_top1"))
    best = best.join(test.with_columns(pl.col("step").cast(pl.Int64)), left_on=["path", "best_step"],
                     right_on=["path", "step"], how="left")
    return empty.select("path").join(best, on="path", how="left")


def budget_curves(trial_rows: pl.DataFrame, resamples: int = RESAMPLES) -> pl.DataFrame:
    """Per variant, its expected best val top-1 after n = 1..N complete trials, with the band."""
    if trial_rows.is_empty():
        return pl.DataFrame()
    parts = []
    for variant in _variants(trial_rows):
        scores = _complete(trial_rows, variant)["val_top1"].to_list()
        if scores:
            parts.append(curve(scores, resamples=resamples).with_columns(pl.lit(variant).alias("variant")))
    return pl.concat(parts) if parts else pl.DataFrame()


def _variants(trial_rows: pl.DataFrame) -> list[str]:
    return list(dict.fromkeys(trial_rows["variant"].to_list()))


def _complete(trial_rows: pl.DataFrame, variant: str) -> pl.DataFrame:
    return trial_rows.filter((pl.col("variant") == variant) & (pl.col("state") == "complete"))


def chosen(trial_rows: pl.DataFrame) -> pl.DataFrame:
    """Per variant, the trial chosen on val top-1 (the earlier trial on ties) with its test top-1
    and values, and how many trials it was chosen from."""
    out = []
    for variant in _variants(trial_rows):
        done = _complete(trial_rows, variant)
        counts = dict(trial_rows.filter(pl.col("variant") == variant).group_by("state").len().iter_rows())
        if done.is_empty():
            continue
        best = done.sort(["val_top1", "trial"], descending=[True, False]).row(0, named=True)
        out.append({"variant": variant, "trials": done.height, "pruned": counts.get("pruned", 0),
                    "failed": counts.get("failed", 0), "trial": best["trial"], "val_top1": best["val_top1"],
                    "test_top1": best["test_top1"], "values": best["values"], "path": best["path"]})
    return pl.DataFrame(out, schema_overrides={"values": pl.Object}) if out else pl.DataFrame()


def budgets(curves: pl.DataFrame) -> list[int]:
    """The budgets the ranking is read at: 1, 5 and all trials (the fewest complete trials any
    variant has, so each variant's estimate is within its own trials)."""
    if curves.is_empty():
        return []
    common = int(curves.group_by("variant").agg(pl.col("n").max())["n"].min())
    return sorted({n for n in (1, 5, common) if n <= common})


def ranking(curves: pl.DataFrame, n: int) -> list[str]:
    """Variants by expected best val top-1 after n trials, best first."""
    at = curves.filter(pl.col("n") == n).sort(["expected", "variant"], descending=[True, False])
    return at["variant"].to_list()


def budget_verdict(curves: pl.DataFrame) -> str:
    """Whether the leader holds at every budget from 1 to the common number of trials, or after
    how many trials the order flips."""
    shown = budgets(curves)
    if not shown or curves["variant"].n_unique() < 2:
        return ""
    common = shown[-1]
    leaders = [ranking(curves, n)[0] for n in range(1, common + 1)]
    if len(set(leaders)) == 1:
        return f"{leaders[0]} leads at every budget (1 to {common} trials)" if common > 1 else \
            f"{leaders[0]} leads after 1 trial (each variant has 1 finished)"
    flip = next(n for n in range(1, common) if leaders[n] != leaders[n - 1])
    return (f"the order flips after {flip} trial{'s' if flip != 1 else ''}: {leaders[flip - 1]} leads up to {flip}, "
            f"{leaders[flip]} from {flip + 1}" + (" (and changes again later)" if len(set(leaders[flip:])) > 1 else ""))


def within_noise(curves: pl.DataFrame, n: int) -> bool:
    """Whether the first two variants after n trials lie within each other's bootstrap bands."""
    at = curves.filter(pl.col("n") == n).sort(["expected", "variant"], descending=[True, False])
    return at.height >= 2 and at["low"][0] <= at["high"][1]


def rankings_table(curves: pl.DataFrame) -> pl.DataFrame:
    """A row per budget shown (1, 5, all): the variants in order, and whether the order changed."""
    rows, first = [], None
    for n in budgets(curves):
        order = ranking(curves, n)
        first = first or order
        rows.append({"trials": n, "ranking": " > ".join(order), "same as at 1 trial": order == first})
    return pl.DataFrame(rows)


def importance(trial_rows: pl.DataFrame, bins: int = 4) -> pl.DataFrame:
    """Each setting's importance per variant: the share of the variance of val top-1 across its
    complete trials explained by the setting (eta squared: values grouped by choice, or into
    `bins` quantile bins of a numeric setting), normalised to sum to 1 over the settings. A simple
    stand-in for Optuna's fANOVA evaluator, computed from the run folders."""
    rows = []
    for variant in _variants(trial_rows):
        done = _complete(trial_rows, variant)
        y = np.asarray(done["val_top1"].to_list(), dtype=float)
        if y.size < 3 or float(np.var(y)) == 0.0:
            continue
        values = done["values"].to_list()
        raw = {}
        for name in dict.fromkeys(k for v in values for k in v):
            x = [v.get(name) for v in values]
            raw[name] = _eta_squared(x, y, bins)
        total = sum(raw.values()) or 1.0
        rows += [{"variant": variant, "setting": k, "importance": v / total} for k, v in raw.items()]
    return pl.DataFrame(rows) if rows else pl.DataFrame()


def _eta_squared(x: list, y: np.ndarray, bins: int) -> float:
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in x)
    if numeric and len(set(x)) > bins:
        edges = np.quantile(np.asarray(x, dtype=float), np.linspace(0, 1, bins + 1)[1:-1])
        groups = np.searchsorted(edges, np.asarray(x, dtype=float), side="right")
    else:
        keys = {k: i for i, k in enumerate(dict.fromkeys(map(repr, x)))}
        groups = np.array([keys[repr(v)] for v in x])
    mean, between = y.mean(), 0.0
    for g in np.unique(groups):
        part = y[groups == g]
        between += part.size * (part.mean() - mean) ** 2
    total = float(((y - mean) ** 2).sum())
    return float(between / total) if total > 0 and math.isfinite(between) else 0.0
