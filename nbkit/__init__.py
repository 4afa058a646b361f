"""nbkit: a workbench for comparing image-classification models.

Its parts, along the path the data take (each a subpackage; a part imports only the parts below it,
checked by `lint-imports` in `make test`):

    nbkit.cli        the command line: nbkit variants | train | sweep | summary | report
    nbkit.view       how it is shown: charts, the live chart, the notebook, the Jupyter panel, reports
    nbkit.sweeps     many runs: a sweep's processes, background launch, Ray
    nbkit.analysis   what runs say: tables, curves, measures, the scorecard, the epochs experiment
    nbkit.training   one run: the trainer and its loop, the step, data, packed runs, probes, torchrun
    nbkit.rundir     the run folder: its files, schema, checkpoints, safe reads, the runs reader
    nbkit.design     what is compared: settings, variants, comparisons, your comparisons file, models
    nbkit.errors     how things go wrong: error types, exit codes, signals, text safe for a terminal

What a user or a notebook needs is here, at the top (internal modules may move):

    import nbkit
    nbkit.VARIANTS, nbkit.get_variant("resnet18"), nbkit.COMPARISONS      the variants and comparisons
    model = nbkit.create_model("resnet18-ms1", 100)                       a variant's network
    study = nbkit.load_study("examples/my-study.toml")                    your comparisons file
    name, settings = nbkit.resolve("toy-dilated", dataset="synthetic", max_iter=40)
    run_dir = nbkit.train(name, settings, runs_dir="runs")               one run (`nbkit sweep`: many)
    metrics, runs = nbkit.read_runs("runs")                               every logged point, one row per run
    nbkit.per_variant(metrics, runs)                                      the per-variant table
    nbkit.scorecard(nbkit.measured(metrics, runs), "resnets")             the replication scorecard
    nbkit.loss_chart(metrics, runs), nbkit.accuracy_chart(metrics, runs)  Altair charts
    nbkit.write_report("models", "runs", "reports")                       an offline HTML report
    nbkit.Panel("models", runs_dir="runs")                                the Jupyter panel

Names load on first use (PEP 562): reading runs, sweeping on the CPU and the notebooks never import
torch, which takes seconds.
"""

__version__ = "0.1.0"

# name -> the module that holds it
_HOMES = {
    "Settings": "nbkit.design.settings",
    "VARIANTS": "nbkit.design.variants", "get_variant": "nbkit.design.variants", "resolve": "nbkit.design.variants",
    "COMPARISONS": "nbkit.design.comparisons", "get_comparison": "nbkit.design.comparisons",
    "load_study": "nbkit.design.comparisons_file",
    "create_model": "nbkit.design.models", "variant_table": "nbkit.design.models",
    "load_dataset": "nbkit.training.data",
    "train": "nbkit.training.trainer",
    "run_sweep": "nbkit.sweeps.sweep",
    "read_runs": "nbkit.rundir.reader", "RunStore": "nbkit.rundir.reader",
    "per_variant": "nbkit.analysis.tables", "per_run": "nbkit.analysis.tables",
    "measured": "nbkit.analysis.measures", "scorecard": "nbkit.analysis.scorecard",
    "loss_chart": "nbkit.view.charts", "accuracy_chart": "nbkit.view.charts",
    "Panel": "nbkit.view.panel",
    "write_report": "nbkit.view.report",
}

__all__ = sorted(_HOMES)


def __getattr__(name):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'nbkit' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_HOMES])
