"""What a user imports comes from `nbkit` itself, and the usage its docstring shows runs."""

import sys

import nbkit


def test_every_public_name_resolves_and_import_nbkit_loads_nothing_heavy():
    import subprocess

    code = "import sys, nbkit; print('torch' in sys.modules, 'polars' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split() == \
        ["False", "False"]
    for name in nbkit.__all__:
        assert getattr(nbkit, name) is not None, name
    assert set(nbkit.__all__) <= set(dir(nbkit))


def test_the_docstrings_usage_reads_tables_and_charts_and_names_the_real_functions():
    from nbkit.training import trainer
    from nbkit.view import report
    from tests.conftest import REPO

    assert nbkit.train is trainer.train and nbkit.write_report is report.write_report
    name, settings = nbkit.resolve("toy-dilated", dataset="synthetic", max_iter=40)
    assert (name, settings.max_iter, settings.dataset) == ("toy-dilated", 40, "synthetic")
    metrics, runs = nbkit.read_runs(REPO / "artifacts" / "runs-h200")
    assert "resnet18" in nbkit.per_variant(metrics, runs)["variant"].to_list()
    card = nbkit.scorecard(nbkit.measured(metrics, runs), "resnets")
    assert card.height and "verdict" in card.columns
    assert nbkit.loss_chart(metrics, runs).to_dict()["datasets"]
    assert nbkit.create_model("resnet18-ms1", 100) is not None
