"""A generated table of wrong shapes written into config.json, status.json and metrics.jsonl
beside good runs: everything the notebooks, `summary` and `report` call must go on, and show
the good runs."""

import itertools
import json
import math
import re
import subprocess
import sys
import warnings
from pathlib import Path

import markdown
import polars as pl
import pytest

from nbkit.analysis import tables
from nbkit.analysis.curves import SEED_MODES, X_AXES
from nbkit.design.comparisons import COMPARISONS
from nbkit.rundir.reader import RunStore, read_runs
from nbkit.view import launch, present, report, summary, widgets, workbench
from nbkit.view.scorecard import scorecards_markdown
from nbkit.view.summary import summary_markdown, variant_markdown
from tests.helpers import write_run

WRONG = {
    "null": None, "true": True, "negative": -1, "zero": 0, "huge int": 2**70, "huge step": 10**15, "fraction": 1.5, "string": "x",
    "empty string": "", "list": [1], "empty list": [], "object": {"a": 1}, "empty object": {},
    "nan": math.nan, "infinity": math.inf, "minus infinity": -math.inf, "nan string": "NaN", "1e308": 1e308,
    "markup": "\n<script>alert(1)</script>|`", "long string": "a" * 5000,
    # strings that must stay data wherever they are shown (reports, markdown, Vega fields and expressions)
    "quotes": "bob's \"toy\"", "comment": "<!--<script>", "html": '<img src="x" onerror="alert(1)">',
    "javascript link": "[x](javascript:alert(1))",
}
ACTIVE = ("<script", "<img", "<!--", 'href="javascript')  # what must never reach rendered HTML from a run
WHOLE = {"list": "[1, 2]", "string": '"config"', "number": "3", "null": "null", "not json": "{", "binary": b"\x80\xff\x00",
         "deep": "[" * 100_000 + "]" * 100_000, "empty": ""}
CONFIG_FIELDS = ["variant", "seed", "dataset", "dataset.name", "dataset.source", "settings", "settings.max_iter",
                 "parameters", "steps_per_epoch", "label", "run_id", "world_size", "precision", "device",
                 "settings.use_augmentation", "settings.precision"]
STATUS_FIELDS = ["state", "step", "images_per_second", "reason", "wall_seconds"]
ROW_FIELDS = ["step", "split", "time", "acc_top1", "loss", "lr", "tau_mean", "grad_norm", "loss_total"]
GOOD = ("resnet18", "toy-dilated")
DATASET = "cifar10-images"  # an image folder's name: the launch form reads each run's dataset source


def good_runs(root: Path) -> None:
    """Two variants with two seeds each; resnet18 is the best at 0.51 (seed 1)."""
    for variant, base in zip(GOOD, (0.40, 0.20)):
        for seed in (0, 1):
            write_run(root, variant, seed, {"train_200": [(50, 0.5), (100, 0.9)],
                                            "test": [(50, base), (100, base + 0.1 + seed * 0.01)]},
                      train=[(10, 2.0), (20, 1.9), (50, 1.5), (100, 1.2)], dataset=DATASET)


def hostile_run(root: Path, name: str, seed: int) -> Path:
    """A valid run of variant resnet18-gn whose numbers are poor (test top-1 0.04, then 0.05: the
    damage goes into the last evaluation, so a run always keeps one it can rank by)."""
    return write_run(root, "resnet18-gn", seed, {"train_200": [(40, 0.05), (50, 0.06)], "test": [(40, 0.04), (50, 0.05)]},
                     train=[(10, 2.5), (50, 2.4)], label=name, dataset=DATASET)


def set_field(data: dict, field: str, value) -> dict:
    head, _, tail = field.partition(".")
    if tail:
        inner = data.get(head) if isinstance(data.get(head), dict) else {}
        data[head] = set_field(dict(inner), tail, value)
    else:
        data[head] = value
    return data


def write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, allow_nan=True))


def cases() -> dict[str, callable]:
    """name -> writer(root): one runs directory per kind of damage, each beside the good runs."""
    out = {}

    def fields(kind, names):
        def write(root):
            seed = 10
            for field in names:
                for value in WRONG.values():
                    run = hostile_run(root, f"{kind} {field}", seed)
                    seed += 1
                    if kind == "row":
                        rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
                        for row in rows[-2:]:  # the last evaluation rows (train_200 and test)
                            set_field(row, field, value)
                        (run / "metrics.jsonl").write_text("".join(json.dumps(r, allow_nan=True) + "\n" for r in rows))
                    else:
                        path = run / f"{kind}.json"
                        write_json(path, set_field(json.loads(path.read_text()), field, value))
        return write

    def whole(name):
        def write(root):
            seed = 10
            for label, content in WHOLE.items():
                run = hostile_run(root, label, seed)
                seed += 1
                data = content.encode() if isinstance(content, str) else content
                if name == "metrics.jsonl":
                    with open(run / name, "ab") as f:
                        f.write(data + b"\n")
                else:
                    (run / name).write_bytes(data)
        return write

    for kind, names in (("config", CONFIG_FIELDS), ("status", STATUS_FIELDS), ("row", ROW_FIELDS)):
        out[f"{kind} fields"] = fields(kind, names)  # a run per field and wrong value
    for name in ("config.json", "status.json", "metrics.jsonl"):
        out[f"whole {name}"] = whole(name)
    return out


CASES = cases()


def everything_a_view_shows(root: Path):
    """What the notebooks, `summary` and `report` call, with every chart option."""
    metrics, runs = read_runs(root)
    comparison = COMPARISONS["resnets"]
    dataset = workbench.datasets(runs, comparison)[0]
    _, chosen = workbench.variant_options(runs, comparison, dataset)
    from nbkit.view import comparison_view

    views = [comparison_view.build_view(metrics, runs, dataset, chosen, x=x, seeds=seeds, smoothing=0.5, log_scale=True)
             for x, seeds in zip(X_AXES, itertools.cycle(SEED_MODES))]  # every x axis, every seed mode
    for view in views:
        for chart in view.charts.values():
            chart.to_dict()
        for table in (view.variant_rows, view.run_rows, view.original_rows):
            table.to_html()
        workbench.sections(view)
    store = RunStore(root)
    store.poll()
    snap = workbench.snapshot(store, comparison)  # what the live notebook holds, and its controls
    controls = widgets.view_controls(snap.catalogue, comparison, dataset, workbench.Choices(), snap.default_scalar)
    workbench.view_of(snap, dataset, controls.value)
    launch.launch_form(comparison, runs, dataset)
    page = report.document(comparison, (metrics, runs), script="")  # what `nbkit report` writes, charts' code aside
    page = re.sub(r"<script>(vegaEmbed\(.*?)?</script>", "", page, flags=re.S)  # its own scripts
    markdown_text = "\n\n".join([summary_markdown(root), variant_markdown(root), scorecards_markdown(root),
                                  present.protocol(runs, present.configs(runs)),  # every dataset's, not the shown one's
                                  *summary.findings(tables.per_variant(metrics, runs), tables.per_run(metrics, runs))])
    return runs, views[0], markdown_text, page + markdown.markdown(markdown_text, extensions=["tables"])


@pytest.mark.parametrize("case", list(CASES))
def test_wrong_shapes_never_break_a_view_and_good_runs_stay_shown(case, tmp_path):
    good_runs(tmp_path)
    CASES[case](tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs, view, text, shown = everything_a_view_shows(tmp_path)
        metrics, _ = read_runs(tmp_path)
    good = runs.filter(runs["variant"].is_in(GOOD))
    assert good.height == 4 and set(good["state"]) == {"done"}
    best = view.variant_table.row(0, named=True)
    assert best["variant"] == "resnet18" and best["best_test_mean"] == pytest.approx(0.505), view.variant_table
    assert "| resnet18 " in text
    hostile = tables.per_run(metrics, runs).filter(~pl.col("variant").is_in(GOOD))
    assert all(v is not None and v >= 0.04 for v in hostile["best_test"]), hostile  # a damaged row never wins
    assert not [a for a in ACTIVE if a in shown], [shown[max(0, shown.find(a) - 200):shown.find(a) + 80] for a in ACTIVE]


def test_a_damaged_record_is_named_in_one_warning(tmp_path):
    good_runs(tmp_path)
    run = hostile_run(tmp_path, "one", 10)
    (run / "status.json").write_text('["done", 100]')
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 60, "split": "test", "acc_top1": "high"}\n')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics, runs = read_runs(tmp_path)
    messages = [str(w.message) for w in caught]
    assert any(m.startswith(f"{run / 'status.json'}: skipping a status that is a list") for m in messages), messages
    assert any(m.startswith(f"{run / 'metrics.jsonl'}:7: ignoring 'acc_top1' ('high'; expected a number")
               for m in messages), messages
    assert len(messages) == 2
    assert runs.height == 5 and metrics.filter(metrics["step"] == 60).height == 1


def test_figures_of_a_report_on_a_damaged_runs_directory(tmp_path):
    from nbkit.view.report import export_figures

    good_runs(tmp_path / "runs")
    for case in ("config fields", "row fields", "whole status.json"):
        CASES[case](tmp_path / "runs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        written = export_figures(tmp_path / "runs", tmp_path / "figures")
    assert {p.name for p in written} >= {"resnets-loss.png", "resnets-accuracy.svg"}


def test_an_oversized_metrics_file_is_read_up_to_a_bound(tmp_path, monkeypatch):
    from nbkit.rundir import runlog

    run = hostile_run(tmp_path, "big", 10)
    with open(run / "metrics.jsonl", "a") as f:
        for step in range(60, 10_000):
            f.write(json.dumps({"step": step, "split": "train", "loss": 1.0}) + "\n")
    monkeypatch.setattr(runlog, "MAX_METRICS_BYTES", 4096)
    with pytest.warns(UserWarning, match="reading only its first 0 MiB"):
        rows = runlog.read_metrics(run / "metrics.jsonl")
    assert 0 < len(rows) < 100 and rows[-1]["step"] < 200  # whole rows, stopped at the bound


def test_the_notebook_and_summary_stay_up_on_every_damage_at_once(tmp_path):
    """All the damaged runs of the table in one runs directory: the comparison notebook runs
    headless and `nbkit summary --by-variant` prints the good runs."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    good_runs(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n, write in enumerate(CASES.values()):
            write(tmp_path / f"part{n}")
    for part in tmp_path.glob("part*"):  # merge the parts: every damaged run beside the good ones
        for run in part.glob(f"{DATASET}/*/*"):
            target = tmp_path / DATASET / run.parent.name / f"{part.name}-{run.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            run.rename(target)
    env = {**os.environ, "NBKIT_RUNS_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, str(REPO / "notebooks" / "resnets.py")], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = variant_markdown(tmp_path)
    assert next(l for l in table.splitlines() if l.startswith("| resnet18 ")).split("|")[2].strip() == "2"


def test_a_variant_whose_losses_are_all_non_finite_keeps_its_legend_entry(tmp_path):
    good_runs(tmp_path)
    write_run(tmp_path, "resnet18-gn", 0, {"train_200": [(50, 0.3)], "test": [(50, 0.2)]},
              train=[(10, math.nan), (50, math.inf)], dataset=DATASET)  # its accuracy is drawn, its loss is not
    metrics, runs = read_runs(tmp_path)
    from nbkit.view import comparison_view

    view = comparison_view.build_view(metrics, runs, DATASET, ["resnet18", "toy-dilated", "resnet18-gn"])

    def legends(node):
        if isinstance(node, dict):
            legend = (node.get("encoding") or {}).get("color", {}).get("legend")
            return ([legend["values"]] if isinstance(legend, dict) else []) + [
                v for k, child in node.items() if k != "datasets" for v in legends(child)]
        return [v for child in node for v in legends(child)] if isinstance(node, list) else []

    found = legends(view.dashboard.to_dict())
    # every panel's legend lists what any panel draws, in the palette's (the registry's) order
    assert found and all(values == ["resnet18", "resnet18-gn", "toy-dilated"] for values in found), found


def test_special_files_links_and_huge_files_in_run_folders_are_refused_not_waited_on(tmp_path):
    """A FIFO (which would block a reader for ever), a link to /dev/zero (endless), a sparse file of
    a GiB, a link out of the runs directory and a label that is not UTF-8, each in one run's
    files: the views read the good runs at once, and the runs whose files are only odd stay."""
    import os
    import threading

    good_runs(tmp_path)
    plants = [("status.json", os.mkfifo), ("metrics.jsonl", os.mkfifo), ("checkpoint.pt", os.mkfifo),
              ("config.json", lambda p: os.symlink("/dev/zero", p)), ("status.json", lambda p: os.symlink("/dev/zero", p)),
              ("config.json", lambda p: (open(p, "wb").close(), os.truncate(p, 1 << 30))),
              ("config.json", lambda p: os.symlink(tmp_path / "outside.json", p))]
    for n, (name, plant) in enumerate(plants):
        target = hostile_run(tmp_path, f"odd{n}", 10 + n) / name
        target.unlink(missing_ok=True)
        plant(target)
    (tmp_path / "outside.json").write_text(json.dumps({"variant": "resnet50", "seed": 0}))
    odd = hostile_run(tmp_path, "odd label", 30)  # a label byte that is not UTF-8: the run stays, its label mended
    config = (odd / "config.json").read_bytes().replace(b'"odd label"', b'"odd \xff label"')
    (odd / "config.json").write_bytes(config)

    found = {}

    def read():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            found["frames"] = read_runs(tmp_path)
            found["summary"] = summary_markdown(tmp_path)
            found["warnings"] = [str(w.message) for w in caught]

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=120)
    assert not reader.is_alive(), "a view waited on a file planted in a run folder"
    _, runs = found["frames"]
    assert set(runs["variant"]) >= set(GOOD) and "resnet50" not in set(runs["variant"])  # no config read through a link
    assert "odd \ufffd label" in runs["label"].to_list()
    assert any("not a regular file" in w for w in found["warnings"])
    assert any("larger than" in w for w in found["warnings"])


# --- huge step values: the work a view does is bounded by the rows, never by the values in them ----

STEP_SPLITS = ("train", "train_200", "test", "val", "val_dense", "held_out")  # every kind of row nbkit logs
MEMORY_LIMIT = 2 << 30  # the address space a child gets: a view that builds a boundary per epoch runs out


def _in_a_child(code: str, root: Path) -> subprocess.CompletedProcess:
    """code run in a child whose address space is capped at MEMORY_LIMIT (with ROOT the runs directory)."""
    from tests.conftest import REPO

    prelude = (f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT}))\n"
               f"from pathlib import Path\nROOT = Path({str(root)!r})\n")
    return subprocess.run([sys.executable, "-c", prelude + code], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def huge_step_runs(root: Path, step: int) -> None:
    """The good runs, and a run per kind of row with one row of that kind logged at `step`."""
    good_runs(root)
    for n, split in enumerate(STEP_SPLITS):
        run = hostile_run(root, f"huge {split} step", 40 + n)
        with open(run / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": step, "split": split, "loss": 0.5, "acc_top1": 0.01}) + "\n")


def test_a_huge_step_in_any_kind_of_row_is_left_out_once_under_a_memory_limit(tmp_path):
    """Step 10^15 in a row of every kind: every view stage, the scorecard and the epochs sections
    run in a child with 2 GiB of address space; each such row is named in one warning."""
    huge_step_runs(tmp_path, 10**15)
    done = _in_a_child("""
import warnings
from nbkit.analysis import epochs_answer
from nbkit.rundir.reader import read_runs
from nbkit.view import epochs_view
from tests.rundir.test_hostile_runs import DATASET, everything_a_view_shows
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    runs, view, text, shown = everything_a_view_shows(ROOT)  # summary --scorecard and report among them
    metrics, runs = read_runs(ROOT)
    epochs_view.sections(metrics, runs, DATASET)
    epochs_answer.findings(metrics, runs)
print(sorted({str(w.message) for w in caught if "step" in str(w.message)}))
print("best", view.variant_table.row(0, named=True)["variant"])
""", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    said, best = done.stdout.strip().splitlines()[-2:]
    assert best == "best resnet18"
    named = [m for m in eval(said) if "ignoring" in m or "skipping" in m]
    assert len(named) == len(STEP_SPLITS) and all("metrics.jsonl:" in m and "0..10000000000" in m for m in named), said


def test_epoch_boundaries_come_from_the_logged_rows_not_from_a_huge_step(tmp_path):
    """A step within the bound (10^9, ten thousand times a run's length) still costs no more
    than a row: the boundary drops and the aligned rows are those of the run without it."""
    write_run(tmp_path, "toy-dilated", 0, {"val_dense": [(s, 2.0 - s / 1000) for s in range(5, 401, 5)]},
              train=[(s, 2.0 - s / 1000 - 0.1 * (s % 40 < 10)) for s in range(10, 401, 10)],
              dataset=DATASET, steps_per_epoch=40)
    done = _in_a_child("""
import json
from nbkit.analysis import drops, epochs
from nbkit.rundir.reader import read_runs
metrics, runs = read_runs(ROOT)
def results(m):
    return [drops.boundary_drops(m, runs).to_dicts(), epochs.aligned(m, runs, "train").to_dicts(),
            epochs.aligned(m, runs, "val_dense").to_dicts()]
clean = results(metrics)
(run,) = ROOT.glob("*/*/*")
with open(run / "metrics.jsonl", "a") as f:
    for split in ("train", "val_dense"):
        f.write(json.dumps({"step": 10**9, "split": split, "loss": 0.5}) + "\\n")
metrics, runs = read_runs(ROOT)
assert metrics["step"].max() == 10**9
print(results(metrics) == clean, len(clean[0]) > 0, len(clean[1]) > 0, len(clean[2]) > 0)
""", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["True"] * 4


def test_runs_whose_rows_never_logged_time_loss_or_top1_still_read_summarise_and_report(tmp_path):
    """Each of these is optional per row: a runs directory where no row has one is still shown."""
    import json

    from nbkit.cli import main

    run = write_run(tmp_path / "runs", "resnet18", 0, {"train_200": [(10, 0.5)], "test": [(10, 0.4)]},
                    train=[(5, 2.0), (10, 1.5)])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    (run / "metrics.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k != "time"}) + "\n"
                                               for r in rows))
    metrics, _ = read_runs(tmp_path / "runs")
    assert metrics["time"].null_count() == metrics.height
    assert main(["summary", "--runs-dir", str(tmp_path / "runs")]) == 0
    assert main(["report", "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    assert "resnet18" in (tmp_path / "out" / "models.html").read_text()
