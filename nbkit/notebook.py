"""The comparison notebook: one source for the three comparisons. notebooks/{resnets,learning,
models}.py embed it with their comparison; run alone: marimo edit nbkit/notebook.py -- --comparison NAME."""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium", app_title="nbkit: comparison")


@app.cell
def _():
    import marimo as mo

    from nbkit import background, charts, claims, tables, workbench as wb
    from nbkit.comparisons import get_comparison
    from nbkit.escape import md_code
    from nbkit.reader import read_runs
    return background, charts, claims, get_comparison, md_code, mo, read_runs, tables, wb


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
def _(read_runs, refresh, runs_dir):
    refresh.value  # re-read the logs on every tick while runs write
    metrics, runs = read_runs(runs_dir.value)
    return metrics, runs


@app.cell
def _(comparison, mo, runs, wb):
    _datasets = wb.datasets(runs, comparison) or ["(none)"]
    dataset = mo.ui.dropdown(_datasets, value=_datasets[0], label="dataset")
    return (dataset,)


@app.cell
def _(comparison, dataset, metrics, mo, runs, wb):
    controls = wb.view_controls(metrics, runs, comparison, dataset.value)
    mo.vstack([mo.hstack([dataset, controls["x"], controls["splits"], controls["log_scale"]], justify="start"),
               controls["variants"], mo.hstack([controls["smoothing"], controls["seeds"]], justify="start")])
    return (controls,)


@app.cell
def _(comparison, controls, dataset, metrics, mo, runs, runs_dir, wb):
    _c = controls.value
    mo.stop(runs.is_empty() or metrics.is_empty() or not _c["variants"],
            mo.callout(mo.md(wb.guidance(comparison, runs_dir.value)), kind="info"))
    view = wb.build_view(metrics, runs, dataset.value, _c["variants"], splits=_c["splits"], x=_c["x"],
                         smoothing=_c["smoothing"], seeds=_c["seeds"], log_scale=_c["log_scale"])
    return (view,)


@app.cell
def _(mo, view):
    mo.vstack([mo.md("## Training loss\nDashed lines mark epoch ends: the original's open puzzle is the loss "
                     "dropping at each one."), mo.ui.altair_chart(view.charts["loss"]),
               mo.md("## Top-1 accuracy"), view.charts["accuracy"]])
    return


@app.cell
def _(mo, view):
    _tau = view.charts.get("temperature")
    mo.vstack([mo.md("## Learned attention temperature\nMean tau across layers, with a band of one standard "
                     "deviation across layers."), _tau]) if _tau is not None else None
    return


@app.cell
def _(mo, view):
    _grad = view.charts.get("gradient norm")
    mo.vstack([mo.md("## Gradient norm\nBefore clipping at 100, as the original logged it."),
               _grad]) if _grad is not None else None
    return


@app.cell
def _(mo, view):
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
def _(mo, tables, view):
    mo.vstack([
        mo.md("## Per variant, across seeds\n`best_test`: the best step chosen on test, as the original did"
              + ("; `test_at_best_val`: test top-1 at the step chosen on the val split, the honest pick."
                 if view.has_val else ".")),
        mo.ui.table(tables.display(view.variant_table), selection=None),
        mo.md("## The original's tables\nBest train_200 top-1 per run, and best test top-1 per run with its step "
              "(ties go to the earlier step)."),
        mo.hstack([mo.ui.table(tables.display(view.train_200_table.drop("path")), selection=None, label="train subset"),
                   mo.ui.table(tables.display(view.test_table.drop("path")), selection=None, label="test set")]),
    ])
    return


@app.cell
def _(comparison, dataset, mo, runs, wb):
    launch_form = wb.launch_controls(comparison, runs, dataset.value)
    launch_button = mo.ui.run_button(label="Launch runs", kind="success")
    stop_button = mo.ui.run_button(label="Stop running sweeps", kind="danger")
    mo.vstack([mo.md("## Launch runs\nStarts `nbkit sweep` in the background, here or on a Ray cluster; turn on "
                     "auto-refresh above to watch the charts fill. Finished runs are skipped, interrupted ones resume."),
               launch_form["variants"], launch_form["dataset"],
               mo.hstack([launch_form[k] for k in ("max_iter", "seeds", "device", "jobs")], justify="start"),
               mo.hstack([launch_form["backend"], launch_form["address"]], justify="start", widths=[1, 4]),
               mo.hstack([launch_button, stop_button], justify="start")])
    return launch_button, launch_form, stop_button


@app.cell
def _(background, launch_button, launch_form, md_code, mo, runs_dir):
    mo.stop(not launch_button.value)
    _info = background.launch_sweep(runs_dir.value, **launch_form.value)
    mo.md(f"Launched sweep (pid {_info['pid']}); its log: {md_code(_info['log'])}")
    return


@app.cell
def _(background, mo, runs_dir, stop_button):
    mo.stop(not stop_button.value)
    mo.md(f"Asked {background.stop_sweeps(runs_dir.value)} sweep(s) to stop; their runs checkpoint and are marked stopped.")
    return


@app.cell
def _(background, mo, refresh, runs, runs_dir, tables):
    refresh.value
    _active = background.active_sweeps(runs_dir.value)
    _running = tables.in_progress(runs)
    mo.vstack([mo.md(f"**{len(_active)} sweep(s) launched from a notebook are running on this runs directory.**"),
               mo.ui.table(_running, selection=None, label="runs in progress") if not _running.is_empty()
               else mo.md("No run in progress.")])
    return


if __name__ == "__main__":
    app.run()
