"""The study benchmark's report, from the runs a sweep leaves (the sweep itself is nbkit sweep's)."""

import importlib
import sys

from .conftest import REPO
from .helpers import write_run


def load(name):
    """A benchmark script as a module (they import each other by file name, as when run)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def test_study_report_lists_each_runs_cost_and_marks_runs_it_did_not_time(tmp_path):
    study = load("study")
    timed = write_run(tmp_path, "resnet18", 0, {"test": [(100, 0.5)]})
    old = write_run(tmp_path, "resnet18", 1, {"test": [(100, 0.5)]}, pack_size=2)
    failed = write_run(tmp_path, "toy-dilated", 0, {"test": [(50, 0.2)]}, state="failed")
    (timed / "status.json").write_text('{"state": "done", "step": 100, "wall_seconds": 31.5, '
                                       '"images_per_second": 900.0, "gpu_memory_mb": 2048.0, "peak_rss_mb": 3100.0}')
    rows = {r["path"]: r for r in study.per_run(tmp_path, before={old})}
    mine = rows[str(timed.relative_to(tmp_path))]
    assert (mine["wall_seconds"], mine["gpu_memory_mb"], mine["peak_rss_mb"], mine["skipped"]) == (31.5, 2048.0, 3100.0, False)
    assert mine["pack_size"] == 1 and rows[str(old.relative_to(tmp_path))]["pack_size"] == 2
    assert rows[str(old.relative_to(tmp_path))]["skipped"] and rows[str(failed.relative_to(tmp_path))]["state"] == "failed"
    totals = study.summarise(list(rows.values()))
    assert totals == {"runs": 3, "done": 2, "timed": 1, "run_seconds_max": 31.5, "gpu_memory_mb_max": 2048.0,
                      "peak_rss_mb_max": 3100.0}


def test_accuracy_comparison_flags_a_variant_that_moved_more_than_the_tolerance(tmp_path, capsys):
    compare = load("compare_runs")
    base, new = tmp_path / "base", tmp_path / "new"
    for seed, (a, b) in enumerate([(0.50, 0.52), (0.54, 0.53)]):  # means 0.52 against 0.525: +0.5 points
        write_run(base, "resnet18", seed, {"test": [(50, 0.1), (100, a)]})
        write_run(new, "resnet18", seed, {"test": [(50, 0.1), (100, b)]})
    write_run(base, "toy-dilated", 0, {"test": [(100, 0.30)]})
    write_run(new, "toy-dilated", 0, {"test": [(100, 0.27)]})  # -3 points
    write_run(new, "toy-dilated", 1, {"test": [(50, 0.9)]}, state="failed")  # left out
    write_run(new, "resnet50", 0, {"test": [(100, 0.4)]})  # only in one
    table = {r["variant"]: r for r in compare.compare(str(base), str(new)).iter_rows(named=True)}
    assert abs(table["resnet18"]["difference"] - 0.005) < 1e-9 and table["resnet18"]["seeds"] == 2
    assert abs(table["toy-dilated"]["difference"] + 0.03) < 1e-9 and table["toy-dilated"]["seeds_new"] == 1
    assert table["resnet50"]["difference"] is None
    assert compare.main([str(base), str(new)]) == 1
    out = capsys.readouterr().out
    assert "| toy-dilated | 1 / 1 | 30.00 | 27.00 | -3.00 **over** |" in out
    assert "2 variants in both; 1 differ by more than 1.5 points: toy-dilated" in out
    assert compare.main([str(base), str(new), "--tolerance", "0.05"]) == 0


def test_refresh_benchmark_measures_an_idle_and_a_one_row_refresh():
    refresh = load("refresh")
    result = refresh.measure(3, repeats=1)  # 3 runs of the original protocol's shape
    assert result["runs"] == 3 and result["rows"] == 3 * (500 + 100 + 1)  # the appended row read, once
    assert result["no_change_s"] >= 0 and result["new_row_refresh_s"] >= result["new_row_poll_s"] > 0
