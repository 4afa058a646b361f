"""What the scorecard measures in each run, and the noise it judges differences of them against.

Per run (failed runs left out, and of each variant only its main group: tables.main_groups), each
taken as the original's tables took it: test is the best test top-1 (best step picked on test);
clean, the best clean train_200 top-1; train, the best
train_200 as the original scored it (augmented images for an augmented run, where logged); gap,
clean - test (best minus best: the scorecard's "best-step gap"); curve, the mean test top-1 over
every evaluation; loss_curve, the mean training loss over every train row (the area under the
training-loss curve per step: how fast it converged, as the original's loss figure shows it);
tau, the final learned temperature, mean across layers. Per run too: the epoch-boundary drop of the
training loss (nbkit.analysis.drops).

Noise is per comparison, with the seed as the unit: Welch's t for a difference of two variants'
means (each its own spread: pooled over variants, one noisy variant, such as resnet18-aug's
train_200, would set every band), Student's t for one variant's mean against a number.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from nbkit.analysis import tables
from nbkit.analysis.drops import boundary_drops, drop_per_run
from nbkit.analysis.significance import TTest, band, one_sample, pooled_sd, t_test, welch

OVERFIT_GAP = 0.1  # clean train_200 top-1 this far above test top-1 counts as overfitting
MEASURES = ("test", "clean", "train", "gap", "curve", "loss_curve", "tau")


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
    loss = (metrics.filter(pl.col("split") == "train").group_by("path")
            .agg(pl.col("loss").cast(pl.Float64, strict=False).mean().alias("loss_curve")))
    rows = (rows.join(aug, on="path", how="left").join(curve, on="path", how="left")
            .join(loss, on="path", how="left")
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
    setting: dict = field(default_factory=dict)  # dataset, precision, steps, schedule of the runs (see `measured`)

    def values(self, variant: str, measure: str) -> list[float]:
        if self.runs.is_empty():
            return []
        return self.runs.filter(pl.col("variant") == variant)[measure].drop_nulls().to_list()

    def mean(self, variant: str, measure: str) -> float | None:
        v = self.values(variant, measure)
        return sum(v) / len(v) if v else None

    def values_of(self, variants: str | tuple[str, ...], measure: str) -> list[float]:
        """The runs of one variant, or of several taken together (one sample)."""
        names = variants if isinstance(variants, tuple) else (variants,)
        return [x for v in names for x in self.values(v, measure)]

    def difference(self, measure: str, a: str | tuple[str, ...], b: str) -> TTest | None:
        """Welch's t of mean(a) - mean(b) over seeds; None when either has one seed."""
        return welch(self.values_of(a, measure), self.values_of(b, measure))

    def levels_difference(self, measure: str, b: str, levels: tuple[str, ...]) -> TTest | None:
        """mean(b) - the mean of the levels' means (several variants of one method, each level
        weighted alike), with the seeds' spread of each (Welch-Satterthwaite df): the spread between
        levels is the method's, not noise. None when any has one seed."""
        groups = [self.values(v, measure) for v in levels]
        base = self.values(b, measure)
        if len(base) < 2 or any(len(g) < 2 for g in groups):
            return None
        k = len(groups)
        var = lambda xs: sum((x - sum(xs) / len(xs)) ** 2 for x in xs) / (len(xs) - 1)
        parts = [(var(g) / len(g) / k ** 2, len(g) - 1) for g in groups] + [(var(base) / len(base), len(base) - 1)]
        se2 = sum(q for q, _ in parts)
        df = se2 ** 2 / sum(q ** 2 / d for q, d in parts) if se2 > 0 else sum(d for _, d in parts)
        diff = sum(base) / len(base) - sum(sum(g) / len(g) for g in groups) / k
        return t_test(diff, se2 ** 0.5, df, min(len(base), *(len(g) for g in groups)))

    def against(self, measure: str, a: str, number: float, sign: float = 1.0) -> TTest | None:
        """Student's t of sign x (mean(a) - number) over a's seeds; None with one seed."""
        return one_sample([sign * (x - number) for x in self.values(a, measure)])

    def seeds(self, *variants: str | tuple[str, ...]) -> int:
        """The fewest seeds of the variants (each of a tuple counted alone)."""
        names = [n for v in variants for n in (v if isinstance(v, tuple) else (v,))]
        return min((len(self.values(n, "test")) for n in names), default=0)

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
    return Measured(measures, drops.filter(pl.col("path").is_in(kept)), setting=setting_of(runs, kept))


def setting_of(runs: pl.DataFrame, kept: list[str]) -> dict:
    """What the runs' conditions are, for each verdict to name what differs from the original's:
    datasets, precisions, the fewest steps, and whether every run used the original's schedule."""
    mine = runs.filter(pl.col("path").is_in(kept)) if kept else runs.clear()
    col = lambda c: sorted({str(v) for v in mine[c].drop_nulls()}) if c in mine.columns else []
    steps = mine["max_iter"].drop_nulls() if "max_iter" in mine.columns else pl.Series([], dtype=pl.Int64)
    original = "original_schedule" in mine.columns and mine.height and bool(mine["original_schedule"].fill_null(False).all())
    return {"datasets": col("dataset"), "precisions": col("precision"),
            "steps": int(steps.min()) if len(steps) else None, "original_schedule": bool(original)}


def short(variant: str) -> str:
    return variant.replace("vitn-12x256-8x8", "vitn").replace("resnet18-", "")
