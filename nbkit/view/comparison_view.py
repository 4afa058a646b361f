"""The view of one comparison: for a dataset and a set of variants, its charts (built at once)
and its tables, findings and protocol (built when first read), which the notebooks, the Jupyter
panel and the reports all show."""

from __future__ import annotations

import functools

import polars as pl

from nbkit.analysis import tables
from nbkit.view import charts, present, summary


def registry_order() -> list[str]:
    """Every variant the registry knows, in its order: the order colours are handed out in."""
    from nbkit.design.variants import VARIANTS

    return list(VARIANTS)


class View:
    """Everything a comparison shows for one dataset and a set of variants: its charts at once;
    its tables, findings and protocol when first read (a live page reads them only when their
    inputs moved, nbkit.view.pagekey, so a new training row costs the charts alone)."""

    def __init__(self, metrics: pl.DataFrame, runs: pl.DataFrame, charts_: dict, variants: list[str], cfgs: dict,
                 palette: dict, baseline: str = "resnet18", own: bool = False):
        self.metrics, self.runs, self.charts, self.variants = metrics, runs, charts_, list(variants)
        self.cfgs, self.palette, self.baseline, self.own = cfgs, palette, baseline, own

    @property
    def dashboard(self) -> charts.Spec:
        """Every chart in one, with one legend whose click highlights a group in all of them."""
        return charts.dashboard(self.charts)

    @functools.cached_property
    def run_table(self) -> pl.DataFrame:  # full precision (nbkit.analysis.tables); the *_rows below are for reading
        return tables.per_run(self.metrics, self.runs)

    @functools.cached_property
    def variant_table(self) -> pl.DataFrame:
        return tables.per_variant(self.metrics, self.runs, self.variants)

    @functools.cached_property
    def _original(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        return tables.original_tables(self.metrics, self.runs)

    @property
    def train_200_table(self) -> pl.DataFrame:
        return self._original[0]

    @property
    def test_table(self) -> pl.DataFrame:
        return self._original[1]

    @functools.cached_property
    def findings(self) -> list[str]:
        return summary.findings(self.variant_table, self.run_table, self.baseline)

    @functools.cached_property
    def has_val(self) -> bool:
        return not self.metrics.is_empty() and "val" in set(self.metrics["split"].unique())

    @functools.cached_property
    def variant_rows(self) -> present.Table:
        return present.variant_table(self.variant_table)

    @functools.cached_property
    def run_rows(self) -> present.Table:
        return present.run_table(self.run_table, self.cfgs, self.runs)

    @functools.cached_property
    def original_rows(self) -> present.Table:
        return present.original_table(*self._original, self.runs)

    @functools.cached_property
    def protocol(self) -> str:
        return present.protocol(self.runs, self.cfgs, against_original=not self.own)


def build_view(metrics: pl.DataFrame, runs: pl.DataFrame, dataset: str, variants: list[str],
               splits=("train_200", "test"), x: str = "step", smoothing: float = 0.0,
               seeds: str = "each run", log_scale: bool = False, scalar: str | None = None,
               palette: dict | None = None, width: int = charts.WIDTH, cfgs: dict | None = None,
               baseline: str = "resnet18", own: bool = False) -> View:
    """Everything a comparison shows, for one dataset and a set of variants. palette: each group's
    colour (charts.colours of the whole runs directory, so it is the same in every view of it);
    cfgs: the runs' config.json by path when already read (nbkit.rundir.reader.RunStore.configs);
    baseline: the variant the findings measure margins against; own: a comparison of the user's
    (nothing is measured against the original's protocol)."""
    palette = palette if palette is not None else charts.colours(runs, registry_order())
    runs = runs.filter((pl.col("dataset") == dataset) & pl.col("variant").is_in(variants)) if not runs.is_empty() else runs
    paths = runs["path"].to_list() if not runs.is_empty() else []
    metrics = metrics.filter(pl.col("path").is_in(paths)) if not metrics.is_empty() else metrics
    shown = charts.main_charts(metrics, runs, variants, splits, x, smoothing, seeds, log_scale, scalar, palette, width)
    cfgs = {p: cfgs.get(p) or {} for p in paths} if cfgs is not None else present.configs(runs)
    return View(metrics, runs, shown, variants, cfgs, palette, baseline, own)


