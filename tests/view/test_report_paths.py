"""A report is shared: it names a comparisons file by its name, never by a local path."""

from nbkit.design.comparisons_file import load_study
from nbkit.rundir.reader import read_runs
from nbkit.view import report
from tests.helpers import write_run


def test_a_report_of_a_comparisons_files_comparison_holds_no_local_path(tmp_path):
    study = tmp_path / "private" / "study.toml"
    study.parent.mkdir()
    study.write_text('[variants.r18-clr]\nbase = "resnet18"\nconstant_lr = 1e-3\n\n[comparisons.mine]\n'
                     'question = "Does a constant rate help?"\nvariants = ["resnet18", "r18-clr"]\n'
                     'expected = "not in four steps"\n')
    for variant in ("resnet18", "r18-clr"):
        write_run(tmp_path / "runs", variant, 0, {"test": [(2, 0.2), (4, 0.3)]}, train=[(2, 2.0), (4, 1.9)])
    (mine,) = load_study(study).own_comparisons
    page = report.document(mine, read_runs(tmp_path / "runs"), "synthetic", script="")
    assert "not in four steps" in page and "study.toml" in page
    assert str(tmp_path) not in page
