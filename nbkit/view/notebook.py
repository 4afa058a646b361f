"""The comparison notebook: one source for every comparison. notebooks/<comparison>.py are this
file under the comparison's name (links to it), so `marimo edit notebooks/models.py` opens the
*models* comparison; `-- --comparison NAME` picks another.

The cells show top down what the page shows; those that show nothing (imports, state, the poll,
the view) come last. Live updates cost nothing when nothing was written: the runs directory is held in a
reader.RunStore that one cell polls on each auto-refresh tick; only when it finds new rows does
it set the snapshot state that the view, charts and tables read. The controls are rebuilt only
when the catalogue (datasets, variants, splits, scalars) changes, from what the user chose
before; the chart is one widget that takes new data in place, keeping zoom and pan."""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="full", app_title="nbkit: comparison", css_file="comparison.css")


@app.cell(hide_code=True)
def _(comparisons_file, mo, wb):
    study, _error = wb.study_of(comparisons_file.value)
    # -- --comparison NAME, else the notebook's own name (notebooks/resnets.py: resnets), else models
    comparison_choice = mo.ui.dropdown(wb.comparison_names(study), label="comparison",
                                       value=wb.comparison_for(mo.cli_args(), globals().get("__file__"), study))
    mo.vstack([mo.hstack([comparison_choice, comparisons_file], widths=[1, 3]),
               *([mo.callout(mo.md(f"That file is not used: {wb.md_code(_error)}"), kind="danger")] if _error else [])])
    return comparison_choice, study


@app.cell(hide_code=True)
def _(comparison, mo, wb):
    mo.md(wb.intro(comparison))
    return


@app.cell(hide_code=True)
def _(comparison, dataset, get_shown, mo, wb):
    # the answer first: findings and the scorecard's verdicts, from the runs shown below
    _key, _view, _snap = get_shown()
    if _view is None:
        _out = mo.callout(mo.md(wb.guidance(comparison, str(_snap.root))), kind="info")
    else:
        _out = mo.md(wb.answer(_view, wb.verdicts(_snap, comparison, dataset.value), dataset.value,
                               wb.answer_lines(_view, comparison)))
    mo.vstack([_out, *([mo.md(wb.original(comparison))] if wb.original(comparison) else [])])
    return


@app.cell(hide_code=True)
def _(mo, store):
    runs_dir = mo.ui.text(value=str(store.root), label="runs directory", full_width=True)
    refresh = mo.ui.refresh(options=["2s", "5s", "10s", "30s"], label="auto-refresh")
    mo.hstack([runs_dir, refresh], widths=[4, 1])
    return refresh, runs_dir


@app.cell(hide_code=True)
def _(choices, comparison, dataset, first, get_catalogue, mo, widgets):
    controls = widgets.view_controls(get_catalogue(), comparison, dataset.value, choices, first.default_scalar)
    mo.vstack([mo.hstack([dataset, controls["x"], controls["splits"], controls["scalar"]], justify="start"),
               controls["variants"],
               mo.hstack([controls["smoothing"], controls["log_scale"], controls["seeds"]], justify="start")])
    return (controls,)


@app.cell(hide_code=True)
def _(get_shown, mo):
    _view = get_shown()[1]
    mo.md("## This run set\n" + _view.protocol) if _view is not None else None
    return


@app.cell(hide_code=True)
def _(LiveChart, comparison, mo, wb):
    chart = mo.ui.anywidget(LiveChart())
    mo.vstack([mo.md("## Curves\n" + wb.curves_note(comparison)), chart])
    return (chart,)


@app.cell(hide_code=True)
def _(comparison, dataset, get_shown, mo, scorecard, wb):
    _key, _view, _snap = get_shown()
    mo.md(scorecard.section(_snap.metrics, _snap.runs, comparison.name, dataset.value)) \
        if _view is not None and wb.has_claims(comparison) else None
    return


@app.cell(hide_code=True)
def _(comparison, dataset, get_shown, mo, wb):
    # sections of a comparison's own (the epochs experiment, per-layer temperatures), where its runs logged them
    _view = get_shown()[1]
    _table = lambda t: mo.ui.table(t, selection=None, show_data_types=False, show_column_summaries=False)
    mo.vstack([_part for _s in wb.sections(_view, comparison, dataset.value)
               for _part in (mo.md(f"## {_s.title}\n{_s.text}"), *([_s.chart] if _s.chart is not None else []),
                             *([_table(_s.table)] if _s.table is not None else []))]) if _view is not None else None
    return


@app.cell(hide_code=True)
def _(get_shown, mo, wb):
    _view = get_shown()[1]
    _notes = wb.notes(_view) if _view is not None else {}
    _table = lambda t: mo.ui.table(t.frame, format_mapping=t.formats, selection=None, show_data_types=False,
                                   show_column_summaries=False, page_size=25)
    mo.vstack([mo.md("## Per variant, across seeds\n" + _notes["per variant"]), _table(_view.variant_rows),
               mo.md("## The original's tables\n" + _notes["original"]), _table(_view.original_rows)]) \
        if _view is not None else None
    return


@app.cell(hide_code=True)
def _(get_rows, mo, wb):
    _view = get_rows()[1]  # its own cell: its step column moves as runs log, the tables above do not
    mo.vstack([mo.md("## Runs\n" + wb.notes(_view)["runs"]),
               mo.ui.table(_view.run_rows.frame, format_mapping=_view.run_rows.formats, selection=None,
                           show_data_types=False, show_column_summaries=False, page_size=25)]) \
        if _view is not None else None
    return


@app.cell(hide_code=True)
def _(first, mo):
    # where the runs hold tuning trials: each variant's chosen settings, one pick from the launch form
    from nbkit.view.tuning_view import presets as _presets

    _options = _presets(first.metrics, first.runs, first.configs)
    tuned_pick = mo.ui.dropdown(_options, label="launch with a tuned trial's settings") if _options else None
    tuned_pick
    return (tuned_pick,)


@app.cell(hide_code=True)
def _(comparison, first, launch, mo, study, tuned_pick):
    # built once (and again on a tuned pick): what it shows is what Launch sends, whatever the runs directory does
    launch_form = launch.launch_form(comparison, first.runs, first.dataset, first.configs, list(study.variants),
                                     preset=tuned_pick.value if tuned_pick is not None else None)
    stop_button = mo.ui.run_button(label="Stop running sweeps", kind="danger")
    mo.vstack([mo.md("## Launch runs\nStarts `nbkit sweep` in the background, here or on a Ray cluster, into the "
                     "runs directory above; its runs appear in the charts as they log. Finished runs are skipped, "
                     "interrupted ones resume. The defaults repeat the loaded runs' dataset, steps and evaluation "
                     "interval."), launch_form, stop_button])
    return launch_form, stop_button


@app.cell(hide_code=True)
def _(background, launch_form, mo, set_launched, store, study):
    mo.stop(launch_form.value is None)
    try:
        set_launched(background.launch_sweep(str(store.root), **launch_form.value,
                                             comparisons=str(study.source) if study.source else None))
    except ValueError as _e:
        mo.output.replace(mo.callout(mo.md(f"Not launched: {_e}"), kind="danger"))
    return


@app.cell(hide_code=True)
def _(background, mo, stop_button, store):
    mo.stop(not stop_button.value)
    mo.md(f"Asked {background.stop_sweeps(str(store.root))} sweep(s) to stop; their runs checkpoint and are "
          "marked stopped.")
    return


@app.cell(hide_code=True)
def _(get_launched, mo):
    # ticks while a sweep launched from this page exists: its status moves with auto-refresh off too
    sweep_tick = mo.ui.refresh(options=["1s", "2s", "5s"], default_interval="2s",
                               label="sweep status every") if get_launched() is not None else None
    sweep_tick
    return (sweep_tick,)


@app.cell(hide_code=True)
def _(get_launched, get_sweep, launch, mo):
    _sweep = get_sweep()
    mo.vstack(launch.sweep_report(get_launched(), _sweep.launched if _sweep else None, _sweep.active if _sweep else 0))
    return



@app.cell(hide_code=True)
def _():
    import marimo as mo

    from nbkit.rundir import reader
    from nbkit.sweeps import background
    from nbkit.view import launch, pagekey, scorecard, widgets
    from nbkit.view import workbench as wb
    from nbkit.view.livechart import LiveChart
    return LiveChart, background, launch, mo, pagekey, reader, scorecard, wb, widgets


@app.cell(hide_code=True)
def _(mo):
    comparisons_file = mo.ui.text(value=mo.cli_args().get("comparisons") or "", full_width=True,
                                  label="comparisons file of your own (TOML or YAML; empty: nbkit's)",
                                  placeholder="e.g. examples/my-study.toml")
    return (comparisons_file,)


@app.cell(hide_code=True)
def _(comparison_choice, study, wb):
    comparison = wb.comparison_of(comparison_choice.value, study)
    return (comparison,)


@app.cell(hide_code=True)
def _(comparison, mo, reader, wb):
    # the runs directory, read once here; the poll below brings it up to date
    store = reader.RunStore(wb.default_runs_dir(mo.cli_args()))
    store.poll()
    first = wb.snapshot(store, comparison)
    get_snapshot, set_snapshot = mo.state(first)
    get_catalogue, set_catalogue = mo.state(first.catalogue)
    get_launched, set_launched = mo.state(None)  # the sweep launched from this page
    get_sweep, set_sweep = mo.state(None)  # its state, and how many launched sweeps run here
    choices = wb.Choices()  # what the user chose, kept while the controls are rebuilt
    get_shown, set_shown = mo.state((None, None, first))  # (key, view, snapshot) the text and tables show
    get_rows, set_rows = mo.state((None, None))  # (key, view) the Runs table shows
    return (choices, first, get_catalogue, get_launched, get_rows, get_shown, get_snapshot, get_sweep,
            set_catalogue, set_launched, set_rows, set_shown, set_snapshot, set_sweep, store)


@app.cell(hide_code=True)
def _(background, comparison, get_catalogue, get_launched, get_snapshot, get_sweep, launch, refresh, runs_dir,
      set_catalogue, set_snapshot, set_sweep, store, sweep_tick, wb):
    # every tick: a few stat calls; new state (and so a redraw) only where something changed
    refresh.value, sweep_tick.value if sweep_tick is not None else None
    _moved = store.open(runs_dir.value)
    if store.poll() or _moved or store.version != get_snapshot().version:
        _snap = wb.snapshot(store, comparison)
        set_snapshot(_snap)
        if _snap.catalogue != get_catalogue():
            set_catalogue(_snap.catalogue)
    _sweep = launch.sweep_status(background, get_launched(), store.root)
    if _sweep != get_sweep():
        set_sweep(_sweep)
    return


@app.cell(hide_code=True)
def _(choices, get_catalogue, widgets):
    dataset = widgets.dataset_control(get_catalogue(), choices)
    return (dataset,)


@app.cell(hide_code=True)
def _(choices, controls, dataset, get_catalogue, get_snapshot, wb):
    # the view: rebuilt when the snapshot or a control changes, never on a tick that found nothing
    _c = controls.value
    choices.remember(dataset.value, _c, get_catalogue().options(dataset.value))
    view = wb.view_of(get_snapshot(), dataset.value, _c)
    return (view,)


@app.cell(hide_code=True)
def _(chart, controls, dataset, view, wb):
    # new data go into the chart in place: zoom, pan and the legend highlight stay
    chart.widget.show(view.dashboard if view is not None else {}, wb.chart_key(dataset.value, controls.value))
    return


@app.cell(hide_code=True)
def _(comparison, dataset, get_rows, get_shown, get_snapshot, pagekey, set_rows, set_shown, view):
    # the text, sections and tables redraw when their numbers move (at evaluations), not on every new row
    _key = pagekey.numbers_key(view, dataset.value, comparison.name)
    if _key is None or _key != get_shown()[0]:
        set_shown((_key, view, get_snapshot()))
    _rows = pagekey.runs_key(view)
    if _rows is None or _rows != get_rows()[0]:
        set_rows((_rows, view))
    return


if __name__ == "__main__":
    app.run()
