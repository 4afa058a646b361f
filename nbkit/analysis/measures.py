"""What the scorecard measures in each run, and the noise it judges differences of them against.

Per run (failed runs left out, and of each variant only its main group: tables.main_groups), each
taken as the original's tables took it: test is the best test top-1 (best step picked on test);
clean, the best clean train_200 top-1; train, the best
train_200 as the original scored it (augmented images for an augmented run, where logged); gap,
clean - test; curve, the mean test top-1 over every evaluation (the area under the test curve per
step: how fast it converged); tau, the final learned temperature, mean across layers. Per run too:
the epoch-boundary drop of the training loss (nbkit.analysis.drops).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from nbkit.analysis import tables
from nbkit.analysis.drops import boundary_drops, drop_per_run
from nbkit.analysis.significance import band, pooled_sd

OVERFIT_GAP = 0.1  # clean train_200 top-1 this far above test top-1 counts as overfitting
MEASURES = ("test", "clean", "train", "gap", "curve", "tau")


def run_measures(metrics: pl.DataFrame, runs: pl.DataFrame) -> pl.DataFrame:
    """One row per run (failed runs left out) with every measure (MEASURES), and tau_sd:
    the final temperature's std across layers."""
    rows = tables.per_run(metrics, runs)
    if rows.is_empty() or "best_test" not in rows.columns:
        return pl.DataFrame()
    rows = rows.filter(pl.col("state") != "failed")
    # a variant's runs at other settings (another length, a label) are not the variant the claim is about
    rows = rows.filter(pl.col("group").is_in(tables.main_groups(rows))).select("path", "variant", "seed", pl.col("best_test").alias("test"),
                                                           pl.col("best_train_200").alias("clean"))
    aug = tables.best_per_run(metrics, "train_200_aug")
    aug = aug.select("path", pl.col("acc_top1").alias("aug")) if not aug.is_empty() else pl.DataFrame(
        schema={"path": pl.String, "aug": pl.Float64})
    curve = (metrics.filter(pl.col("split") == "test").group_by("path")
             .agg(pl.col("acc_top1").cast(pl.Float64, strict=False).mean().alias("curve")))
    rows = (rows.join(aug, on="path", how="left").join(curve, on="path", how="left")
            .join(_taus(metrics), on="path", how="left")
            .with_columns(pl.coalesce("aug", "clean").alias("train"), (pl.col("clean") - pl.col("test")).alias("gap")))
    return rows.with_columns(pl.when(pl.col(c).is_finite()).then(pl.col(c)).alias(c) for c in [*MEASURES, "tau_sd"])


def _taus(metrics: pl.DataFrame) -> pl.DataFrame:
    """Each run's temperature at its last logged train row: mean and std across layers (tau/<i>, as
    the original's get_all_taus.py), or else the logged tau_mean and tau_std."""
    layers = [c for c in metrics.columns if c.startswith("tau/")]
    logged = [c for c in ("tau_mean", "tau_std") if c in metrics.columns]
    if "tau_mean" not in logged and not layers:
        return pl.DataFrame(schema={"path": pl.String, "tau": pl.Float64, "tau_sd": pl.Float64})
    number = lambda c: pl.col(c).cast(pl.Float64, strict=False)
    taus, sds = [], []
    if layers:
        across = pl.concat_list(number(c) for c in layers)
        taus, sds = [across.list.mean()], [across.list.std()]
    taus += [number("tau_mean")] if "tau_mean" in logged else []
    sds += [number("tau_std")] if "tau_std" in logged else []
    last = (metrics.filter(pl.col("split") == "train")
            .filter(pl.any_horizontal(number(c).is_not_null() for c in [*logged, *layers]))
            .sort("step").group_by("path").last())
    return last.select("path", pl.coalesce(taus).alias("tau"),
                       (pl.coalesce(sds) if sds else pl.lit(None, pl.Float64)).alias("tau_sd"))


@dataclass
class Measured:
    """One dataset's runs as the claims see them: each run's measures and its epoch-boundary drops."""
    runs: pl.DataFrame
    drops: pl.DataFrame
    _noise: dict = field(default_factory=dict)

    def values(self, variant: str, measure: str) -> list[float]:
        if self.runs.is_empty():
            return []
        return self.runs.filter(pl.col("variant") == variant)[measure].drop_nulls().to_list()

    def mean(self, variant: str, measure: str) -> float | None:
        v = self.values(variant, measure)
        return sum(v) / len(v) if v else None

    def noise(self, measure: str) -> tuple[float | None, int]:
        """The seeds' std of a measure pooled over every variant with two or more seeds, and its df."""
        if measure not in self._noise:
            variants = [] if self.runs.is_empty() else self.runs["variant"].unique().sort()
            groups = [self.values(v, measure) for v in variants]
            self._noise[measure] = pooled_sd(groups)
        return self._noise[measure]

    def difference_band(self, measure: str, *variants: str) -> tuple[float | None, str]:
        """Half the 95% interval of a mean (one variant) or of a difference of two, and how it was
        made; None (with the reason) when a variant has one seed or no noise can be estimated."""
        counts = [len(self.values(v, measure)) for v in variants]
        single = [v for v, n in zip(variants, counts) if n < 2]
        if single:
            return None, f"one seed ({', '.join(map(short, single))})"
        sd, df = self.noise(measure)
        if sd is None:
            return None, "no variant with two seeds to estimate the noise"
        width = band(sd, df, *counts)
        return width, f"±{width:.4f} (t 95%, df {df})"


def measured(metrics: pl.DataFrame, runs: pl.DataFrame) -> Measured:
    """What the claims need from one dataset's runs (see Measured)."""
    if metrics.is_empty() or runs.is_empty():
        return Measured(pl.DataFrame(), drop_per_run(pl.DataFrame()))
    measures = run_measures(metrics, runs)
    drops = drop_per_run(boundary_drops(metrics, runs))
    kept = measures["path"].to_list() if not measures.is_empty() else []
    return Measured(measures, drops.filter(pl.col("path").is_in(kept)))


def short(variant: str) -> str:
    return variant.replace("vitn-12x256-8x8", "vitn").replace("resnet18-", "")
