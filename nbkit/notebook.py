"""The comparison notebook: one source for the three comparisons. notebooks/{resnets,learning,
models}.py embed it with their comparison; run alone: marimo edit nbkit/notebook.py -- --comparison NAME.

Widgets live in cells that read the runs directory once (first_runs); only the cell that
re-reads the logs depends on auto-refresh, so a refresh redraws charts and tables and keeps
every setting."""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium", app_title="nbkit: comparison")


@app.cell
def _():
    import marimo as mo

    from nbkit import background, charts, claims, workbench as wb
    from nbkit.comparisons import get_comparison
    from nbkit.escape import md_code
    from nbkit.reader import read_runs
    return background, charts, claims, get_comparison, md_code, mo, read_runs, wb


@app.cell
def _(mo):
    # the notebooks in notebooks/ set this when they embed this one; run directly: -- --comparison NAME
    comparison_name = mo.cli_args().get("comparison") or "models"
    return (comparison_name,)


@app.cell
def _(comparison_name, get_comparison):
    comparison = get_comparison(comparison_name)
    return (comparison,)


@app.cell
def _(comparison, mo, wb):
    mo.md(wb.intro(comparison))
    return


@app.cell
def _(mo, wb):
    runs_dir = mo.ui.text(value=wb.default_runs_dir(mo.cli_args()), label="runs directory", full_width=True)
    refresh = mo.ui.refresh(options=["2s", "5s", "10s", "30s"], label="auto-refresh")
    mo.hstack([runs_dir, refresh], widths=[4, 1])
    return refresh, runs_dir


@app.cell
def _(read_runs, runs_dir):
    # the first read: what the controls offer (a refresh does not rebuild them)
    first_metrics, first_runs = read_runs(runs_dir.value)
    return first_metrics, first_runs


@app.cell
def _(comparison, first_runs, mo, wb):
    _datasets = wb.datasets(first_runs, comparison) or ["(none)"]
    dataset = mo.ui.dropdown(_datasets, value=_datasets[0], label="dataset")
    return (dataset,)


@app.cell
def _(comparison, dataset, first_metrics, first_runs, mo, wb):
    controls = wb.view_controls(first_metrics, first_runs, comparison, dataset.value)
    colour_order = wb.variant_options(first_runs, comparison, dataset.value)[0]  # a variant keeps its colour
    mo.vstack([mo.hstack([dataset, controls["x"], controls["splits"], controls["scalar"]], justify="start"),
               controls["variants"],
               mo.hstack([controls["smoothing"], controls["log_scale"], controls["seeds"]], justify="start")])
    return colour_order, controls


@app.cell
def _(read_runs, refresh, runs_dir):
    refresh.value  # re-read the logs on every tick while runs write
    metrics, runs = read_runs(runs_dir.value)
    return metrics, runs


@app.cell
def _(colour_order, comparison, controls, dataset, metrics, mo, runs, runs_dir, wb):
    _c = controls.value
    mo.stop(runs.is_empty() or metrics.is_empty() or not _c["variants"],
            mo.callout(mo.md(wb.guidance(comparison, runs_dir.value)), kind="info"))
    view = wb.build_view(metrics, runs, dataset.value, _c["variants"], splits=_c["splits"], x=_c["x"],
                         smoothing=_c["smoothing"], seeds=_c["seeds"], log_scale=_c["log_scale"],
                         scalar=None if _c["scalar"] == "(none)" else _c["scalar"], order=colour_order)
    return (view,)


@app.cell
def _(mo, view):
    mo.md("## This run set\n" + view.protocol)
    return


@app.cell
def _(mo, view, wb):
    mo.vstack([mo.md("## Curves\n" + wb.notes(view)["curves"]), view.dashboard])
    return


@app.cell
def _(mo, view):
    # sections that build on the findings (a scorecard, per-layer views) go in cells right after this one
    mo.md("## Findings\n" + "\n".join(f"- {f}" for f in view.findings))
    return


@app.cell
def _(claims, comparison, dataset, metrics, mo, runs):
    mo.md(claims.section(metrics, runs, comparison.name, dataset.value))
    return


@app.cell
def _(charts, mo, view):
    _layers = charts.layer_temperature_chart(view.metrics)
    mo.vstack([mo.md("## Learned temperature per layer\nEach layer's tau at the run's last logged step."),
               _layers]) if _layers is not None else None
    return


@app.cell
def _(mo, view, wb):
    _notes = wb.notes(view)
    _table = lambda rows: mo.ui.table(rows, selection=None, show_data_types=False, show_column_summaries=False,
                                      page_size=25)
    mo.vstack([mo.md("## Per variant, across seeds\n" + _notes["per variant"]), _table(view.variant_rows),
               mo.md("## The original's tables\n" + _notes["original"]), _table(view.original_rows),
               mo.md("## Runs\n" + _notes["runs"]), _table(view.run_rows)])
    return


@app.cell
def _(comparison, dataset, first_runs, mo, wb):
    launch_form = wb.launch_controls(comparison, first_runs, dataset.value)
    launch_button = mo.ui.run_button(label="Launch runs", kind="success")
    stop_button = mo.ui.run_button(label="Stop running sweeps", kind="danger")
    mo.vstack([mo.md("## Launch runs\nStarts `nbkit sweep` in the background, here or on a Ray cluster; turn on "
                     "auto-refresh above to watch the charts fill. Finished runs are skipped, interrupted ones resume. "
                     "The defaults repeat the loaded runs' dataset, steps and evaluation interval."),
               launch_form["variants"], launch_form["dataset"],
               mo.hstack([launch_form[k] for k in ("max_iter", "eval_every", "seeds", "device", "jobs")],
                         justify="start"),
               mo.hstack([launch_form["backend"], launch_form["address"]], justify="start", widths=[1, 4]),
               mo.hstack([launch_button, stop_button], justify="start")])
    return launch_button, launch_form, stop_button


@app.cell
def _(mo):
    # the sweep launched from this page: kept while the form is edited again (a run button is true only once)
    get_launched, set_launched = mo.state(None)
    return get_launched, set_launched


@app.cell
def _(background, launch_button, launch_form, mo, runs_dir, set_launched):
    mo.stop(not launch_button.value)
    try:
        set_launched(background.launch_sweep(runs_dir.value, **launch_form.value))
    except ValueError as _e:
        mo.output.replace(mo.callout(mo.md(f"Not launched: {_e}"), kind="danger"))
    return


@app.cell
def _(background, mo, runs_dir, stop_button):
    mo.stop(not stop_button.value)
    mo.md(f"Asked {background.stop_sweeps(runs_dir.value)} sweep(s) to stop; their runs checkpoint and are marked stopped.")
    return


@app.cell
def _(background, get_launched, md_code, mo, refresh, runs_dir, wb):
    refresh.value
    mo.vstack(wb.sweep_report(background.active_sweeps(runs_dir.value), get_launched(), md_code))
    return


if __name__ == "__main__":
    app.run()
