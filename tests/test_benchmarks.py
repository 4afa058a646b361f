"""The study benchmark's report, from the runs a sweep leaves (the sweep itself is nbkit sweep's)."""

import importlib
import sys

from .conftest import REPO
from .helpers import write_run


def load_study():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        return importlib.import_module("study")
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def test_study_report_lists_each_runs_cost_and_marks_runs_it_did_not_time(tmp_path):
    study = load_study()
    timed = write_run(tmp_path, "resnet18", 0, {"test": [(100, 0.5)]})
    old = write_run(tmp_path, "resnet18", 1, {"test": [(100, 0.5)]})
    failed = write_run(tmp_path, "toy-dilated", 0, {"test": [(50, 0.2)]}, state="failed")
    (timed / "status.json").write_text('{"state": "done", "step": 100, "wall_seconds": 31.5, '
                                       '"images_per_second": 900.0, "gpu_memory_mb": 2048.0, "peak_rss_mb": 3100.0}')
    rows = {r["path"]: r for r in study.per_run(tmp_path, before={old})}
    mine = rows[str(timed.relative_to(tmp_path))]
    assert (mine["wall_seconds"], mine["gpu_memory_mb"], mine["peak_rss_mb"], mine["skipped"]) == (31.5, 2048.0, 3100.0, False)
    assert rows[str(old.relative_to(tmp_path))]["skipped"] and rows[str(failed.relative_to(tmp_path))]["state"] == "failed"
    totals = study.summarise(list(rows.values()))
    assert totals == {"runs": 3, "done": 2, "timed": 1, "run_seconds_max": 31.5, "gpu_memory_mb_max": 2048.0,
                      "peak_rss_mb_max": 3100.0}
