"""The tables and protocol as people read them (nbkit.present) and the launch form's defaults."""

import polars as pl
import pytest

from nbkit import present, tables, workbench
from nbkit.reader import read_runs

from .helpers import workbench_runs, write_run


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    return read_runs(workbench_runs(tmp_path_factory.mktemp("runs")))


def test_variant_table_reads_as_a_table_not_a_frame(logs):
    metrics, runs = logs
    rows = present.variant_table(tables.per_variant(metrics, runs))
    assert rows.columns == ["Variant", "Seeds", "Best test top-1 (step)", "Final test top-1",
                            "train_200 top-1", "Gap", "Params", "Time", "img/s"]
    by = {r["Variant"]: r for r in rows.iter_rows(named=True)}
    assert by["resnet18"]["Best test top-1 (step)"] == "0.5050 ± 0.0071 (200)" and by["resnet18"]["Params"] == "1,000"
    assert by["vitn-12x256-8x8-ra"]["Seeds"] == "1" and by["vitn-12x256-8x8-ra"]["Best test top-1 (step)"] == "0.3800 (100)"
    assert by["resnet18"]["Time"] == "20 s" and "None" not in str(rows.rows())


def test_the_original_tables_are_one_table_best_test_first(logs):
    metrics, runs = logs
    rows = present.original_table(*tables.original_tables(metrics))
    assert rows.columns == ["Run", "Variant", "Seed", "Best train_200 top-1", "its step", "Best test top-1", "at step"]
    first = rows.row(0, named=True)
    assert (first["Variant"], first["Seed"], first["Best test top-1"], first["at step"]) == ("resnet18", "1", "0.5100", "200")
    failed = rows.filter(pl.col("Variant") == "vitn-12x256-8x8").row(0, named=True)
    assert failed["Best test top-1"] == "0.2500" and rows.height == 8
    only_test = present.original_table(pl.DataFrame(), tables.original_tables(metrics)[1])  # no train_200 yet
    assert only_test.row(0, named=True)["Best train_200 top-1"] == "—" and only_test.height == 8


def test_run_table_shows_state_protocol_and_settings_that_set_a_run_apart(tmp_path):
    write_run(tmp_path, "resnet18", 0, {"test": [(100, 0.3)]}, settings={"max_iter": 100, "use_augmentation": False})
    write_run(tmp_path, "resnet18-aug", 0, {"test": [(50, 0.2)]}, state="running",
              settings={"max_iter": 5000, "use_augmentation": True})
    metrics, runs = read_runs(tmp_path)
    cfgs = present.configs(runs)
    rows = present.run_table(tables.per_run(metrics, runs), cfgs, runs)
    by = {r["Variant"]: r for r in rows.iter_rows(named=True)}
    assert by["resnet18-aug"]["Settings apart from the others"] == "max_iter=5000, use_augmentation=True"
    assert by["resnet18-aug"]["State"] == "running" and by["resnet18-aug"]["Step"] == "50 of 5,000"
    assert by["resnet18"]["Protocol"] == "differs: dataset synthetic, steps 100"
    assert by["resnet18-aug"]["Protocol"] == "differs: dataset synthetic"
    assert "Device" not in rows.columns  # shared by every run: said once, in the protocol
    assert by["resnet18"]["Best test top-1"] == "0.3000" and by["resnet18"]["Best train_200 top-1"] == "—"


def test_a_reduced_run_set_says_what_it_is_and_that_it_differs(tmp_path):
    label = "reduced CPU comparison: 200 steps"
    for seed in (0, 1):
        write_run(tmp_path, "resnet18", seed, {"test": [(200, 0.4)]}, dataset="cifar10-images", label=label,
                  device="cpu", settings={"max_iter": 200, "batch_size": 128, "eval_every": 40})
    metrics, runs = read_runs(tmp_path)
    text = present.protocol(runs, present.configs(runs))
    assert "**cifar10-images**: 2 run(s); 200 steps, batch 128, evaluated every 40 steps; device cpu" in text
    assert f"labelled “{label}”" in text
    assert "**Differs from the original's protocol** (cifar100, 5,000 steps, batch 128): dataset cifar10-images, steps 200" in text
    same = {"dataset": {"name": "cifar100"}, "settings": {"max_iter": 5000, "batch_size": 128}}
    assert present.protocol_gaps(same) == []


def test_launch_form_defaults_follow_the_loaded_runs(tmp_path):
    import json

    source = tmp_path / "imgs.tar.xz"
    source.write_bytes(b"")
    for seed in (0, 1, 2):
        run = write_run(tmp_path / "runs", "resnet18", seed, {"test": [(200, 0.4)]}, dataset="imgs", device="cpu",
                        settings={"max_iter": 200, "eval_every": 40})
        config = json.loads((run / "config.json").read_text())
        config["dataset"]["source"] = str(source)
        (run / "config.json").write_text(json.dumps(config))
    metrics, runs = read_runs(tmp_path / "runs")
    assert workbench.launch_defaults(runs, "imgs") == {"dataset": str(source), "max_iter": 200, "eval_every": 40,
                                                       "seeds": 3, "device": "cpu"}
    assert workbench.launch_defaults(runs.clear(), None)["max_iter"] == 5000  # no runs: the original protocol
