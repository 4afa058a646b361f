"""The comparisons for Jupyter users: an ipywidgets panel with what the notebooks show (the
question and its answer, the run set, the live chart, the scorecard, tables, launch and stop)
for JupyterLab (`pip install 'nbkit[jupyter]'`).

    from nbkit import Panel
    Panel("models")            # or Panel("resnets", runs_dir="artifacts/runs")

Every string from a runs directory reaches the page escaped (markdown through md_text, HTML
through html.escape): an HTML widget sets innerHTML. The chart carries Vega with it, so the
panel works offline."""

from __future__ import annotations

import asyncio
import html

import ipywidgets as w

from nbkit.analysis.curves import SEED_MODES, X_AXES
from nbkit.design.comparisons_file import load_study
from nbkit.rundir.reader import RunStore
from nbkit.sweeps import background
from nbkit.view import scorecard
from nbkit.view.escape import markdown_html
from nbkit.view.launch import launch_defaults, launch_summary
from nbkit.view.livechart import LiveChart
from nbkit.view.present import DASH, Table
from nbkit.view.tuning_view import presets
from nbkit.view.workbench import (
    Choices,
    answer,
    answer_lines,
    chart_key,
    comparison_of,
    curves_note,
    default_runs_dir,
    guidance,
    has_claims,
    intro,
    notes,
    original,
    sections,
    snapshot,
    verdicts,
    view_of,
)

REFRESH_SECONDS = 2.0


def _md(text: str) -> str:
    """Markdown as HTML with nothing active in it (raw HTML shown as text, no javascript: links):
    an HTML widget sets innerHTML."""
    return markdown_html(text)


class Panel(w.VBox):
    """Pick dataset, variants and how to draw them; every control redraws at once. Refresh (or
    auto-refresh) reads what the runs wrote since, keeping the settings and the chart's zoom; the
    launch form starts a sweep in the background and Stop ends the sweeps launched from a notebook."""

    def __init__(self, comparison: str = "models", runs_dir: str | None = None, comparisons: str | None = None):
        """comparison: one of nbkit's, a comparisons file's (comparisons: its path), or "all runs"."""
        self.study = load_study(comparisons)
        self.comparison = comparison_of(comparison, self.study)
        self.store = RunStore(runs_dir or default_runs_dir())
        self.choices = Choices()
        self.view = None
        self._refreshing = None
        self._quiet = False  # set while the panel itself fills the controls: they redraw once, after
        self.runs_dir = w.Text(value=str(self.store.root), description="runs dir", layout=w.Layout(width="60%"))
        self.auto = w.ToggleButton(value=False, description="auto-refresh", tooltip=f"every {REFRESH_SECONDS:g} s")
        self.refresh_button = w.Button(description="Refresh", tooltip="read what the runs wrote since; keep the settings")
        self.dataset = w.Dropdown(description="dataset")
        self.variants = w.SelectMultiple(description="variants", rows=8)
        self.splits = w.SelectMultiple(description="top-1 on", rows=3)
        self.scalar = w.Dropdown(description="also plot")
        self.x = w.Dropdown(options=list(X_AXES), value="step", description="x axis")
        self.smoothing = w.FloatSlider(value=0.0, min=0.0, max=0.99, step=0.01, description="EMA smoothing",
                                       continuous_update=False)
        self.log_scale = w.Checkbox(value=False, description="log-scale loss")
        self.seeds = w.RadioButtons(options=list(SEED_MODES), value=SEED_MODES[0], description="seeds")
        self.head, self.answer, self.protocol = w.HTML(_md(intro(self.comparison))), w.HTML(), w.HTML()
        self.chart = LiveChart()
        self.scorecard, self.sections, self.tables = w.HTML(), w.VBox(), w.HTML()
        self._launch_form()
        self.runs_dir.observe(lambda _: self.refresh(), names="value")
        self.dataset.observe(lambda _: None if self._quiet else self._fill_options(), names="value")
        for control in (self.variants, self.splits, self.scalar, self.x, self.smoothing, self.log_scale, self.seeds):
            control.observe(lambda _: self.show(), names="value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.auto.observe(lambda change: self._auto(change["new"]), names="value")
        super().__init__([self.head, self.answer, w.HBox([self.runs_dir, self.refresh_button, self.auto]),
                          w.HBox([self.dataset, self.x, self.scalar]), w.HBox([self.variants, self.splits]),
                          w.HBox([self.smoothing, self.log_scale, self.seeds]), self.protocol,
                          w.HTML(_md("### Curves\n" + curves_note(self.comparison))), self.chart, self.scorecard,
                          self.sections, self.tables, self.launch_box])
        self.store.poll()
        self._take(snapshot(self.store, self.comparison))

    # --- reading and drawing ------------------------------------------------------------------

    def refresh(self) -> bool:
        """Read what changed (another runs directory, new rows, new runs); redraw only if anything did."""
        moved = self.store.open(self.runs_dir.value)
        changed = self.store.poll() or moved
        if changed:
            self._take(snapshot(self.store, self.comparison))
        self._show_sweep()
        return changed

    def _take(self, snap) -> None:
        """A new snapshot: offer its datasets (keeping the chosen one), then draw."""
        self.snap = snap
        names = list(snap.catalogue.datasets)
        keep = self.dataset.value if self.dataset.value in names else (names[0] if names else None)
        self._quiet = True
        try:
            if list(self.dataset.options) != names:
                self.dataset.options = names
            self.dataset.value = keep
        finally:
            self._quiet = False
        self._fill_options()

    def _fill_options(self) -> None:
        """The controls' options for the chosen dataset; what the user picked stays where still offered."""
        cat = self.snap.catalogue
        options = cat.options(self.dataset.value) or list(self.comparison.variants)
        picked = self.choices.variants(options, self.comparison)
        self._quiet = True
        try:
            self.variants.options, self.variants.value = options, tuple(picked)
            splits = list(cat.splits)
            chosen = [s for s in self.splits.value if s in splits] or [s for s in ("train_200", "val", "test") if s in splits]
            self.splits.options, self.splits.value = splits, tuple(chosen)
            scalar = self.scalar.value
            self.scalar.options = [DASH, *cat.scalars]
            self.scalar.value = scalar if scalar in self.scalar.options else (self.snap.default_scalar or DASH)
            d = launch_defaults(self.snap.runs, self.dataset.value, self.snap.configs)
            if not self.launched:
                self.launch_dataset.value, self.launch_steps.value = d["dataset"], d["max_iter"]
                self.launch_eval.value, self.launch_seeds.value, self.launch_device.value = (d["eval_every"], d["seeds"],
                                                                                             d["device"])
                self.launch_warmup.value = d["warmup"]
            self.presets = presets(self.snap.metrics, self.snap.runs, self.snap.configs)
            self.launch_preset.options = [DASH, *self.presets]
        finally:
            self._quiet = False
        self.show()

    def controls(self) -> dict:
        return {"variants": list(self.variants.value), "splits": list(self.splits.value), "x": self.x.value,
                "smoothing": self.smoothing.value, "seeds": self.seeds.value, "log_scale": self.log_scale.value,
                "scalar": None if self.scalar.value == DASH else self.scalar.value}

    def show(self) -> None:
        if self._quiet:
            return
        controls = self.controls()
        self.choices.remember(self.dataset.value, controls, list(self.variants.options))
        self.view = view_of(self.snap, self.dataset.value, controls)
        self.chart.show(self.view.dashboard if self.view is not None else {},
                        chart_key(self.dataset.value, controls))
        if self.view is None:
            self.answer.value = _md(guidance(self.comparison, str(self.store.root)))
            self.protocol.value = self.scorecard.value = self.tables.value = ""
            self.sections.children = ()
            return
        view, dataset = self.view, self.dataset.value
        self.answer.value = _md(answer(view, verdicts(self.snap, self.comparison, dataset), dataset,
                                       answer_lines(view, self.comparison)) + "\n\n" + original(self.comparison))
        self.protocol.value = _md("### This run set\n" + view.protocol)
        self.scorecard.value = _md(scorecard.section(self.snap.metrics, self.snap.runs, self.comparison.name, dataset)) \
            if has_claims(self.comparison) else ""
        self.sections.children = [w.VBox([w.HTML(_md(f"### {s.title}\n{s.text}")),
                                          *([LiveChart(s.chart.to_dict())] if s.chart is not None else []),
                                          *([w.HTML(Table(s.table).to_html())] if s.table is not None else [])])
                                  for s in sections(view, self.comparison, dataset)]
        said = notes(view, sortable=False)
        self.tables.value = "".join(_md(f"### {title}\n{said[key]}") + f"<div style='overflow-x:auto'>{t.to_html()}</div>"
                                    for title, key, t in (("Per variant, across seeds", "per variant", view.variant_rows),
                                                          ("The original's tables", "original", view.original_rows),
                                                          ("Runs", "runs", view.run_rows)))

    def _auto(self, on: bool) -> None:
        """Poll every REFRESH_SECONDS while on (a few stat calls when nothing was written)."""
        if self._refreshing is not None:
            self._refreshing.cancel()
            self._refreshing = None
        if on:
            self._refreshing = asyncio.get_event_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            self.refresh()

    # --- launching and stopping runs -------------------------------------------------------------

    def _launch_form(self) -> None:
        choices = list(self.comparison.variants) or list(self.study.variants)  # "all runs": any variant
        self.launch_variants = w.SelectMultiple(options=choices, value=tuple(choices[:2]), description="variants",
                                                rows=5)
        self.launch_dataset = w.Text(description="dataset", layout=w.Layout(width="60%"))
        self.launch_steps = w.BoundedIntText(min=1, max=100000, value=5000, description="steps")
        self.launch_eval = w.BoundedIntText(min=1, max=100000, value=100, description="eval every")
        self.launch_warmup = w.BoundedIntText(min=0, max=100000, value=500, description="warm-up")
        self.launch_seeds = w.BoundedIntText(min=1, max=20, value=2, description="seeds")
        self.launch_device = w.Dropdown(options=["auto", "cpu", "cuda"], description="device")
        self.launch_settings = w.Text(description="settings", placeholder="KEY=VALUE ... (e.g. a tuned trial's)",
                                      layout=w.Layout(width="60%"))
        # "launch with these settings": a tuned trial's variant and settings fill the form in one pick
        self.presets: dict[str, dict] = {}
        self.launch_preset = w.Dropdown(options=[DASH], description="tuned trial", layout=w.Layout(width="60%"))
        self.launch_preset.observe(lambda _: self.use_preset(), names="value")
        self.launch_button = w.Button(description="Launch runs", button_style="success")
        self.stop_button = w.Button(description="Stop running sweeps", button_style="danger")
        self.launch_status = w.HTML()
        self.launched = None
        self.launch_button.on_click(lambda _: self.launch())
        self.stop_button.on_click(lambda _: self.stop())
        self.launch_box = w.VBox([w.HTML("<h3>Launch runs</h3>"), self.launch_variants, self.launch_dataset,
                                  w.HBox([self.launch_steps, self.launch_eval, self.launch_warmup, self.launch_seeds,
                                          self.launch_device]),
                                  self.launch_preset, self.launch_settings,
                                  w.HBox([self.launch_button, self.stop_button]), self.launch_status])

    def use_preset(self) -> None:
        """The picked tuned trial's variant and settings, in the launch form."""
        preset = self.presets.get(self.launch_preset.value)
        if preset is None:
            return
        options = list(self.launch_variants.options)
        self.launch_variants.options = options + [v for v in preset["variants"] if v not in options]
        self.launch_variants.value = tuple(preset["variants"])
        self.launch_settings.value = preset["settings"]

    def launch(self) -> None:
        """Start `nbkit sweep` in the background with the form's values; show it and its runs."""
        try:
            self.launched = background.launch_sweep(str(self.store.root), list(self.launch_variants.value),
                                                    self.launch_dataset.value, self.launch_steps.value,
                                                    self.launch_seeds.value, self.launch_device.value,
                                                    eval_every=self.launch_eval.value, warmup=self.launch_warmup.value,
                                                    settings=self.launch_settings.value,
                                                    comparisons=str(self.study.source) if self.study.source else None)
        except ValueError as e:
            self.launched = None
            self.launch_status.value = f"<p><strong>Not launched:</strong> {html.escape(str(e))}</p>"
            return
        self._show_sweep()

    def stop(self) -> None:
        stopped = background.stop_sweeps(str(self.store.root))
        self.launch_status.value = (f"<p>Asked {stopped} sweep(s) to stop; their runs checkpoint and are marked "
                                    "stopped.</p>")

    def _show_sweep(self) -> None:
        if self.launched is None:
            return
        state = background.sweep_state(self.launched)
        rows = "".join(f"<li>{html.escape(str(r['variant']))} seed {html.escape(str(r['seed']))}: "
                       f"{html.escape(str(r['state']))}, step {html.escape(str(r['step']))}"
                       + (f" ({html.escape(str(r['reason']))})" if r["reason"] else "") + "</li>" for r in state["runs"])
        error = f"; it failed: <code>{html.escape(state['error'])}</code>" if state["error"] else ""
        self.launch_status.value = (f"<p>Launched sweep (pid {self.launched['pid']}): <strong>{html.escape(state['state'])}"
                                    f"</strong>{error}</p>{_md(launch_summary(self.launched.get('request') or {}))}"
                                    f"<ul>{rows}</ul>")
