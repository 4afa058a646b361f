"""The comparisons for Jupyter users: an ipywidgets panel with the notebooks' charts, tables,
findings and launch form (`pip install 'nbkit[jupyter]'` for JupyterLab).

    from nbkit.jupyter import Panel
    Panel("models")            # or Panel("resnets", runs_dir="artifacts/runs")
"""

from __future__ import annotations

import ipywidgets as w
from IPython.display import Markdown, display
from markdown import markdown

from .background import launch_sweep, sweep_state
from .comparisons import get_comparison
from .curves import SEED_MODES, X_AXES, scalars
from .present import DASH
from .reader import read_runs
from .workbench import build_view, datasets, default_runs_dir, guidance, launch_defaults, variant_options


class Panel(w.VBox):
    """Pick dataset and variants, press Load; then every control redraws at once, Refresh re-reads
    the logs keeping the settings, and the launch form starts a sweep in the background."""

    def __init__(self, comparison: str = "models", runs_dir: str | None = None):
        self.comparison = get_comparison(comparison)
        self.runs_dir = w.Text(value=runs_dir or default_runs_dir(), description="runs dir", layout=w.Layout(width="60%"))
        self.dataset = w.Dropdown(description="dataset")
        self.variants = w.SelectMultiple(description="variants", rows=8)
        self.splits = w.SelectMultiple(description="top-1 on", rows=3)
        self.scalar = w.Dropdown(description="also plot")
        self.x = w.Dropdown(options=list(X_AXES), value="step", description="x axis")
        self.smoothing = w.FloatSlider(value=0.0, min=0.0, max=0.99, step=0.01, description="EMA smoothing",
                                       continuous_update=False)
        self.log_scale = w.Checkbox(value=False, description="log-scale loss")
        self.seeds = w.RadioButtons(options=list(SEED_MODES), value=SEED_MODES[0], description="seeds")
        self.load_button = w.Button(description="Load runs", button_style="primary")
        self.refresh_button = w.Button(description="Refresh", tooltip="re-read the logs, keep the settings")
        self.output = w.Output()
        self.view = None
        self.runs_dir.observe(lambda _: self.scan(), names="value")
        self.dataset.observe(lambda _: self._fill_options(), names="value")
        for control in (self.variants, self.splits, self.scalar, self.x, self.smoothing, self.log_scale, self.seeds):
            control.observe(lambda _: self.view is not None and self.show(), names="value")
        self.load_button.on_click(lambda _: self.show())
        self.refresh_button.on_click(lambda _: self.refresh())
        self._launch_form()
        super().__init__([self.runs_dir, w.HBox([self.dataset, self.x, self.scalar]), w.HBox([self.variants, self.splits]),
                          w.HBox([self.smoothing, self.log_scale, self.seeds]),
                          w.HBox([self.load_button, self.refresh_button]), self.output, self.launch_box])
        self.scan()

    def scan(self) -> None:
        """Read the runs directory and offer its datasets, variants, splits and scalars."""
        self.metrics, self.runs = read_runs(self.runs_dir.value)
        names = datasets(self.runs, self.comparison)
        self.dataset.options = names
        self.dataset.value = names[0] if names else None
        self._fill_options()

    def _fill_options(self) -> None:
        options, default = variant_options(self.runs, self.comparison, self.dataset.value)
        self.variants.options, self.variants.value = options, tuple(default)
        splits = sorted(set(self.metrics["split"].unique()) - {"train"}) if not self.metrics.is_empty() else []
        self.splits.options = splits
        self.splits.value = tuple(s for s in ("train_200", "val", "test") if s in splits)
        self.scalar.options = [DASH, *scalars(self.metrics)]
        d = launch_defaults(self.runs, self.dataset.value)
        self.launch_dataset.value, self.launch_steps.value = d["dataset"], d["max_iter"]
        self.launch_eval.value, self.launch_seeds.value, self.launch_device.value = d["eval_every"], d["seeds"], d["device"]

    def refresh(self) -> None:
        """Re-read the logs (runs still writing) and redraw; every setting stays."""
        self.metrics, self.runs = read_runs(self.runs_dir.value)
        if self.view is not None:
            self.show()
        self._show_sweep()

    def show(self) -> None:
        self.output.clear_output()
        with self.output:
            if self.runs.is_empty() or not self.variants.value:
                display(Markdown(guidance(self.comparison, self.runs_dir.value)))
                self.view = None
                return
            self.view = build_view(self.metrics, self.runs, self.dataset.value, list(self.variants.value),
                                   splits=self.splits.value, x=self.x.value, smoothing=self.smoothing.value,
                                   seeds=self.seeds.value, log_scale=self.log_scale.value,
                                   scalar=None if self.scalar.value == DASH else self.scalar.value,
                                   order=list(self.variants.options))
            display(Markdown("### This run set\n" + self.view.protocol))
            display(self.view.dashboard)
            display(Markdown("### Findings\n" + "\n".join(f"- {f}" for f in self.view.findings)))
            for title, rows in (("Per variant, across seeds", self.view.variant_rows),
                                ("The original's tables", self.view.original_rows), ("Runs", self.view.run_rows)):
                display(Markdown(f"### {title}"), rows)  # a Polars frame shows as an HTML table

    # --- launching runs ----------------------------------------------------------------------

    def _launch_form(self) -> None:
        self.launch_variants = w.SelectMultiple(options=list(self.comparison.variants),
                                                value=tuple(self.comparison.variants[:2]), description="variants", rows=5)
        self.launch_dataset = w.Text(description="dataset", layout=w.Layout(width="60%"))
        self.launch_steps = w.BoundedIntText(min=1, max=100000, description="steps")
        self.launch_eval = w.BoundedIntText(min=1, max=100000, description="eval every")
        self.launch_seeds = w.BoundedIntText(min=1, max=20, description="seeds")
        self.launch_device = w.Dropdown(options=["auto", "cpu", "cuda"], description="device")
        self.launch_button = w.Button(description="Launch runs", button_style="success")
        self.launch_status = w.HTML()
        self.launched = None
        self.launch_button.on_click(lambda _: self.launch())
        self.launch_box = w.VBox([w.HTML("<h3>Launch runs</h3>"), self.launch_variants, self.launch_dataset,
                                  w.HBox([self.launch_steps, self.launch_eval, self.launch_seeds, self.launch_device]),
                                  self.launch_button, self.launch_status])

    def launch(self) -> None:
        """Start `nbkit sweep` in the background with the form's values; show it and its runs."""
        try:
            self.launched = launch_sweep(self.runs_dir.value, list(self.launch_variants.value), self.launch_dataset.value,
                                         self.launch_steps.value, self.launch_seeds.value, self.launch_device.value,
                                         eval_every=self.launch_eval.value)
        except ValueError as e:
            self.launched = None
            self.launch_status.value = markdown(f"**Not launched:** {e}")
            return
        self._show_sweep()

    def _show_sweep(self) -> None:
        if self.launched is None:
            return
        state = sweep_state(self.launched)
        self.launch_status.value = markdown(
            f"Launched sweep (pid {self.launched['pid']}): **{state['state']}**"
            + (f"; it failed: `{state['error']}`" if state["error"] else "") + "\n"
            + "".join(f"\n- {r['variant']} seed {r['seed']}: {r['state']}, step {r['step']}"
                      + (f" ({r['reason']})" if r["reason"] else "") for r in state["runs"]))

