"""The comparisons for Jupyter users: a small ipywidgets panel with the notebooks' charts and tables.

    from nbkit.jupyter import Panel
    Panel("models")            # or Panel("resnets", runs_dir="artifacts/runs")
"""

from __future__ import annotations

import ipywidgets as w
from IPython.display import Markdown, display

from .comparisons import get_comparison
from .curves import SEED_MODES, X_AXES
from .reader import read_runs
from .tables import display as rounded
from .workbench import build_view, datasets, default_runs_dir, guidance, variant_options


class Panel(w.VBox):
    """Pick dataset and variants, press Load, see loss/top-1 charts, tables and findings."""

    def __init__(self, comparison: str = "models", runs_dir: str | None = None):
        self.comparison = get_comparison(comparison)
        self.runs_dir = w.Text(value=runs_dir or default_runs_dir(), description="runs dir", layout=w.Layout(width="60%"))
        self.dataset = w.Dropdown(description="dataset")
        self.variants = w.SelectMultiple(description="variants", rows=8)
        self.x = w.Dropdown(options=list(X_AXES), value="step", description="x axis")
        self.smoothing = w.FloatSlider(value=0.0, min=0.0, max=0.95, step=0.05, description="loss EMA")
        self.log_scale = w.Checkbox(value=False, description="log-scale loss")
        self.seeds = w.RadioButtons(options=list(SEED_MODES), value=SEED_MODES[0], description="seeds")
        self.load_button = w.Button(description="Load runs", button_style="primary")
        self.output = w.Output()
        self.view = None
        self.runs_dir.observe(lambda _: self.scan(), names="value")
        self.dataset.observe(lambda _: self._fill_variants(), names="value")
        self.load_button.on_click(lambda _: self.show())
        super().__init__([self.runs_dir, w.HBox([self.dataset, self.x, self.log_scale]), self.variants,
                          w.HBox([self.smoothing, self.seeds]), self.load_button, self.output])
        self.scan()

    def scan(self) -> None:
        """Read the runs directory and offer its datasets and variants."""
        self.metrics, self.runs = read_runs(self.runs_dir.value)
        names = datasets(self.runs, self.comparison)
        self.dataset.options = names
        self.dataset.value = names[0] if names else None
        self._fill_variants()

    def _fill_variants(self) -> None:
        options, default = variant_options(self.runs, self.comparison, self.dataset.value)
        self.variants.options = options
        self.variants.value = tuple(default)

    def show(self) -> None:
        self.output.clear_output()
        with self.output:
            if self.runs.is_empty() or not self.variants.value:
                display(Markdown(guidance(self.comparison, self.runs_dir.value)))
                self.view = None
                return
            self.view = build_view(self.metrics, self.runs, self.dataset.value, list(self.variants.value),
                                   x=self.x.value, smoothing=self.smoothing.value, seeds=self.seeds.value,
                                   log_scale=self.log_scale.value)
            for chart in self.view.charts.values():
                display(chart)
            display(Markdown("### Findings\n" + "\n".join(f"- {f}" for f in self.view.findings)))
            display(rounded(self.view.variant_table))
            display(rounded(self.view.test_table.drop("path")))
