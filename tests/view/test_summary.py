import warnings

import pytest

from nbkit.analysis.tables import best_per_run, original_tables
from nbkit.cli import main
from nbkit.rundir.reader import read_runs
from nbkit.rundir.runlog import read_metrics
from tests.helpers import write_run


@pytest.fixture
def fixture_runs(tmp_path):
    write_run(tmp_path, "resnet18", 0, {"train_200": [(100, 0.5), (200, 1.0), (300, 1.0)],
                                        "test": [(100, 0.30), (200, 0.35), (300, 0.35)]})
    write_run(tmp_path, "resnet18-ms2", 0, {"train_200": [(100, 0.4), (200, 0.9), (300, 0.915)],
                                            "test": [(100, 0.31), (200, 0.3851), (300, 0.38)]})
    write_run(tmp_path, "toy-dilated", 1, {"train_200": [(100, 0.1)], "test": [(100, 0.1886)]}, state="failed")
    return tmp_path


def test_best_tables_pick_the_earlier_step_on_ties(fixture_runs):
    metrics, runs = read_runs(fixture_runs)
    train_200, test = original_tables(metrics)
    assert train_200.select("variant", "step", "acc_top1").rows() == [
        ("resnet18", 200, 1.0), ("resnet18-ms2", 300, 0.915), ("toy-dilated", 100, 0.1)]
    assert test.select("variant", "step", "acc_top1").rows() == [
        ("resnet18-ms2", 200, 0.3851), ("resnet18", 200, 0.35), ("toy-dilated", 100, 0.1886)]
    assert dict(runs.select("variant", "state").rows()) == {"resnet18": "done", "resnet18-ms2": "done", "toy-dilated": "failed"}


def test_summary_prints_the_two_tables(fixture_runs, capsys):
    assert main(["summary", "--runs-dir", str(fixture_runs)]) == 0
    out = capsys.readouterr().out
    assert "#### Train Subset Results" in out and "#### Test Set Results" in out
    assert "| synthetic/resnet18-ms2/fixture-s0 | test  |  200 |   0.3851 |" in out
    lines = out.splitlines()
    test_rows = [l for l in lines[lines.index("#### Test Set Results"):] if l.startswith("| synthetic")]
    assert [r.split("/")[1] for r in test_rows] == ["resnet18-ms2", "resnet18", "toy-dilated"]


def test_summary_with_no_runs_says_how_to_get_some(tmp_path, capsys):
    assert main(["summary", "--runs-dir", str(tmp_path)]) == 0
    assert "python -m nbkit train" in capsys.readouterr().out


def test_reader_skips_cut_and_garbage_lines_with_a_warning(fixture_runs):
    run = next(fixture_runs.glob("synthetic/resnet18/*"))
    path = run / "metrics.jsonl"
    good = len(read_metrics(path))
    with open(path, "a") as f:
        f.write("garbage\n{\"step\": 400, \"split\": \"test\", \"acc")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = read_metrics(path)
    assert len(rows) == good
    assert any("metrics.jsonl:7" in str(w.message) and "unreadable" in str(w.message) for w in caught)
    assert any("incomplete last line" in str(w.message) for w in caught)


def test_reader_ignores_unknown_keys_and_runs_without_metrics(fixture_runs):
    run = next(fixture_runs.glob("synthetic/resnet18/*"))
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 400, "split": "test", "acc_top1": 0.2, "brand_new": 1}\n')
    (fixture_runs / "synthetic" / "resnet50" / "starting").mkdir(parents=True)
    (fixture_runs / "synthetic" / "resnet50" / "starting" / "config.json").write_text('{"variant": "resnet50"}')
    metrics, runs = read_runs(fixture_runs)
    assert runs.height == 4 and "brand_new" in metrics.columns
    assert best_per_run(metrics, "test").height == 3


def test_summary_by_variant_gives_mean_and_std_across_seeds(tmp_path, capsys):
    write_run(tmp_path, "resnet18", 0, {"train_200": [(100, 0.9)], "test": [(100, 0.30)]})
    write_run(tmp_path, "resnet18", 1, {"train_200": [(100, 0.8)], "test": [(100, 0.40)]})
    assert main(["summary", "--runs-dir", str(tmp_path), "--by-variant"]) == 0
    row = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("| resnet18"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:5] == ["resnet18", "2", "0.3500 ± 0.0707", "0.3500 ± 0.0707", "0.5"]


def test_undefined_values_read_as_a_dash_not_none(tmp_path, capsys):
    write_run(tmp_path, "resnet18", 0, {"test": [(100, 0.30)]})  # no train_200: the gap is undefined
    assert main(["summary", "--runs-dir", str(tmp_path), "--by-variant"]) == 0
    row = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("| resnet18"))
    assert "None" not in row and [c.strip() for c in row.strip("|").split("|")][4] == "—"


def test_a_row_without_a_measured_accuracy_never_wins_best(tmp_path):
    from nbkit.analysis.tables import per_run, per_variant
    from nbkit.view import present
    from nbkit.view.summary import findings

    run = write_run(tmp_path, "resnet18", 0, {"train_200": [(50, 0.5)], "test": [(50, 0.40)]})
    with open(run / "metrics.jsonl", "a") as f:  # a diverged evaluation, and one out of range
        f.write('{"step": 100, "split": "test", "acc_top1": NaN, "loss": 1.0}\n'
                '{"step": 150, "split": "test", "acc_top1": 1.5, "loss": 1.0}\n')
    write_run(tmp_path, "resnet18", 1, {"train_200": [(50, 0.6)], "test": [(50, 0.42)]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics, runs = read_runs(tmp_path)
    table = per_variant(metrics, runs)
    row = table.row(0, named=True)
    assert row["seeds"] == 2 and row["best_test_mean"] == pytest.approx(0.41) and row["final_test_mean"] == pytest.approx(0.41)
    assert present.variant_table(table).formatted().row(0, named=True)["Seeds"] == "2"
    assert findings(table, per_run(metrics, runs))[0].startswith("**resnet18** has the best test top-1: 0.4100")


@pytest.mark.parametrize("runs_dir", ["artifacts/runs-h200", "artifacts/runs"])
def test_the_shipped_runs_read_as_the_readme_shows_them(runs_dir, capsys):
    """The README's per-variant tables of the shipped runs are this command's output, whatever
    moves inside nbkit: every shipped run reads the same."""
    from tests.conftest import REPO

    assert main(["summary", "--runs-dir", str(REPO / runs_dir), "--by-variant"]) == 0
    table = "\n".join(line for line in capsys.readouterr().out.splitlines() if line.startswith("|"))
    assert table.count("\n") > 5 and table in (REPO / "README.md").read_text(), \
        f"regenerate the README's table for {runs_dir}"


def test_the_answer_counts_a_partly_measured_claim_by_its_kind(tmp_path):
    """The H200 *models* runs judge one claim on 1 of its 11 rivals: the answer's line counts it
    as "partly measured 1" (the scorecard's words), not as a verdict of its own ("partly measured:
    1 of 11 1"), in the report a user opens."""
    from tests.conftest import REPO

    assert main(["report", "--runs-dir", str(REPO / "artifacts" / "runs-h200"), "--comparison", "models",
                 "--out", str(tmp_path)]) in (0, None)
    text = (tmp_path / "models.html").read_text()
    line = next(part for part in text.split("<li>") if "checked on these runs" in part)
    assert "partly measured 1" in line and "of 11 1" not in line, line
