"""The tables and protocol as people read them (nbkit.view.present), runs told apart by their
settings (nbkit.rundir.reader's groups), and the launch form's defaults."""

import json

import polars as pl
import pytest

from nbkit.analysis import tables
from nbkit.rundir.reader import read_runs
from nbkit.view import launch, present
from tests.helpers import workbench_runs, write_run


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    return read_runs(workbench_runs(tmp_path_factory.mktemp("runs")))


def test_variant_table_keeps_numbers_as_numbers_and_formats_them_to_read(logs):
    metrics, runs = logs
    table = present.variant_table(tables.per_variant(metrics, runs))
    assert table.frame.columns == ["Variant", "Seeds", "Best test top-1", "± (best)", "at step", "Final test top-1",
                                   "± (final)", "train_200 top-1", "Gap", "Params", "Time", "img/s", "Precision"]
    assert table.frame.schema["Params"] == pl.Float64 and table.frame.schema["Seeds"] == pl.Int64  # sorts as numbers
    rows = {r["Variant"]: r for r in table.formatted().iter_rows(named=True)}
    assert (rows["resnet18"]["Best test top-1"], rows["resnet18"]["± (best)"], rows["resnet18"]["at step"]) == (
        "0.5050", "± 0.0071", "200")
    assert rows["vitn-12x256-8x8-ra"]["Seeds"] == "1" and rows["vitn-12x256-8x8-ra"]["± (best)"] == "—"
    assert rows["resnet18"]["Time"] == "20 s" and rows["resnet18"]["Params"] == "1,000"
    assert "None" not in str(table.formatted().rows())
    html = table.to_html()
    assert "<td class='num'>0.5050</td>" in html and "<th class='num'>Params</th>" in html


def test_large_numbers_sort_by_value_not_by_text():
    frame = pl.DataFrame({"group": ["a", "b"], "variant": ["a", "b"], "seeds": [1, 1], "parameters": [62_000, 21_800_000],
                          "best_test_mean": [0.5, 0.4], "images_per_second_mean": [900.0, 12_000.0]})
    table = present.variant_table(frame)
    ordered = table.frame.sort("Params")["Variant"].to_list()
    assert ordered == ["a", "b"] and [present.count(v) for v in table.frame.sort("Params")["Params"]] == ["62 k", "21.8 M"]


def test_the_original_tables_are_one_table_best_test_first(logs):
    metrics, runs = logs
    rows = present.original_table(*tables.original_tables(metrics), runs).formatted()
    assert rows.columns == ["Run", "Variant", "Seed", "Best train_200 top-1", "its step", "Best test top-1", "at step"]
    first = rows.row(0, named=True)
    assert (first["Run"], first["Seed"], first["Best test top-1"], first["at step"]) == ("resnet18 s1", "1", "0.5100", "200")
    failed = rows.filter(pl.col("Variant") == "vitn-12x256-8x8").row(0, named=True)
    assert failed["Best test top-1"] == "0.2500" and rows.height == 8
    only_test = present.original_table(pl.DataFrame(), tables.original_tables(metrics)[1]).formatted()
    assert only_test.row(0, named=True)["Best train_200 top-1"] == "—" and only_test.height == 8


def test_run_table_shows_state_protocol_and_settings_that_set_a_run_apart(tmp_path):
    write_run(tmp_path, "resnet18", 0, {"test": [(100, 0.3)]}, settings={"max_iter": 100, "use_augmentation": False,
                                                                          "model": "resnet18"})
    write_run(tmp_path, "resnet18-aug", 0, {"test": [(50, 0.2)]}, state="running",
              settings={"max_iter": 5000, "use_augmentation": True, "model": "resnet18"})
    write_run(tmp_path, "toy-dilated", 0, {"test": [(100, 0.1)]}, state="failed",
              settings={"max_iter": 100, "model": "toy-dilated", "use_augmentation": False})
    metrics, runs = read_runs(tmp_path)
    cfgs = present.configs(runs)
    table = present.run_table(tables.per_run(metrics, runs), cfgs, runs)
    by = {r["Variant"]: r for r in table.formatted().iter_rows(named=True)}
    # its augmentation is what resnet18-aug is, and toy-dilated's model is its own: not differences
    assert by["resnet18-aug"]["Settings apart from the others"] == "max_iter=5000"
    assert by["toy-dilated"]["Settings apart from the others"] == "—"
    assert by["resnet18-aug"]["State"] == "running" and (by["resnet18-aug"]["Step"], by["resnet18-aug"]["of"]) == ("50", "5,000")
    assert by["resnet18"]["Protocol"] == "differs: dataset synthetic, steps 100"
    assert by["resnet18-aug"]["Protocol"] == "differs: dataset synthetic"
    assert by["toy-dilated"]["Why it ended"] == "boom" and by["resnet18"]["Why it ended"] == "—"
    assert "Device" not in table.frame.columns  # shared by every run: said once, in the protocol
    assert by["resnet18"]["Best test top-1"] == "0.3000" and by["resnet18"]["Best train_200 top-1"] == "—"
    assert by["resnet18"]["Run"] == "resnet18 s0" and by["resnet18"]["Run id"].startswith("fixture-s0")



def test_settings_apart_ignore_keys_older_runs_lack_and_what_a_files_variant_defines(tmp_path):
    """A run made before cuda_graph and model_kwargs existed lacks them (its default, not a
    difference); a comparisons file's variant records its own model_kwargs in its definition."""
    write_run(tmp_path, "resnet18", 0, {"test": [(100, 0.3)]}, settings={"max_iter": 100})
    write_run(tmp_path, "resnet18", 1, {"test": [(100, 0.3)]},
              settings={"max_iter": 100, "cuda_graph": True, "model_kwargs": {}})
    write_run(tmp_path, "small-cnn-wide", 0, {"test": [(100, 0.3)]},
              settings={"max_iter": 100, "model": "my_models:small_cnn", "model_kwargs": {"width": 64}},
              definition={"name": "small-cnn-wide", "options": {"model": "my_models:small_cnn",
                                                                "model_kwargs": {"width": 64}}})
    write_run(tmp_path, "small-cnn", 0, {"test": [(100, 0.3)]},
              settings={"max_iter": 100, "model": "my_models:small_cnn", "model_kwargs": {"width": 64}},
              definition={"name": "small-cnn", "options": {"model": "my_models:small_cnn"}})
    metrics, runs = read_runs(tmp_path)
    table = present.run_table(tables.per_run(metrics, runs), present.configs(runs), runs).formatted()
    apart = dict(zip(table["Run"], table["Settings apart from the others"]))
    assert apart["resnet18 s0"] == apart["resnet18 s1"] == apart["small-cnn-wide s0"] == "—"
    assert apart["small-cnn s0"] == "model_kwargs={'width': 64}"  # not its definition: a real difference

def test_runs_of_one_variant_and_seed_at_other_settings_are_told_apart_and_never_pooled(tmp_path):
    """Three toy-dilated seed-0 runs of 30, 400 and 1,500 steps: three groups, three lines,
    three rows; across seeds pools only a group's own runs and counts distinct seeds."""
    for steps, acc in ((30, 0.05), (400, 0.20), (1500, 0.35)):
        write_run(tmp_path, "toy-dilated", 0, {"test": [(steps, acc)]}, train=[(10, 7.0), (20, 7.01)],
                  settings={"max_iter": steps})
    write_run(tmp_path, "toy-dilated", 1, {"test": [(400, 0.22)]}, train=[(10, 7.0)], settings={"max_iter": 400})
    write_run(tmp_path, "toy-dilated", 1, {"test": [(400, 0.26)]}, train=[(10, 7.0)], settings={"max_iter": 400})
    metrics, runs = read_runs(tmp_path)
    names = sorted(runs["name"])
    assert names == ["toy-dilated · max_iter=1500 s0", "toy-dilated · max_iter=30 s0", "toy-dilated · max_iter=400 s0",
                     "toy-dilated · max_iter=400 s1 #1", "toy-dilated · max_iter=400 s1 #2"]
    table = tables.per_variant(metrics, runs).sort("group")
    rows = {r["group"]: r for r in table.iter_rows(named=True)}
    assert set(rows) == {"toy-dilated · max_iter=1500", "toy-dilated · max_iter=30", "toy-dilated · max_iter=400"}
    four = rows["toy-dilated · max_iter=400"]
    assert four["seeds"] == 2  # three runs, two seeds: seed 1's two runs count once
    assert four["best_test_mean"] == pytest.approx((0.20 + (0.22 + 0.26) / 2) / 2)
    assert rows["toy-dilated · max_iter=30"]["seeds"] == 1 and rows["toy-dilated · max_iter=30"]["best_test_std"] is None
    assert four["main"] and not rows["toy-dilated · max_iter=30"]["main"]  # the variant's group with most seeds


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


def test_launch_form_defaults_follow_the_loaded_runs_and_never_name_a_path_not_here(tmp_path):
    source = tmp_path / "imgs.tar.xz"
    source.write_bytes(b"")
    for seed, where in ((0, source), (1, source), (2, source)):
        run = write_run(tmp_path / "runs", "resnet18", seed, {"test": [(200, 0.4)]}, dataset="imgs", device="cpu",
                        settings={"max_iter": 200, "eval_every": 40})
        config = json.loads((run / "config.json").read_text())
        config["dataset"]["source"] = str(where)
        (run / "config.json").write_text(json.dumps(config))
    metrics, runs = read_runs(tmp_path / "runs")
    assert launch.launch_defaults(runs, "imgs") == {"dataset": str(source), "max_iter": 200, "eval_every": 40,
                                                       "warmup": 20, "seeds": 3, "device": "cpu", "missing": None}
    source.unlink()  # runs made on another machine (the H200's data path): not offered, but said
    d = launch.launch_defaults(runs, "imgs")
    assert d["dataset"] == "" and d["missing"] == str(source)
    # no runs: the original protocol where CIFAR-100 is here; else (offline it would fail) a short synthetic run
    data = tmp_path / "data" / "cifar-100-python"
    data.mkdir(parents=True)
    (data / "train").write_bytes(b"")
    assert launch.launch_defaults(runs.clear(), None, data_dir=tmp_path / "data") == {
        "dataset": "cifar100", "max_iter": 5000, "eval_every": 100, "warmup": 500, "seeds": 2, "device": "auto",
        "missing": None}
    (data / "train").unlink()
    empty = launch.launch_defaults(runs.clear(), None, data_dir=tmp_path / "data")
    assert (empty["dataset"], empty["max_iter"], empty["warmup"]) == ("synthetic", 200, 20)
    assert launch.warmup_problem(40, 500).startswith("The warm-up (500 steps) is not shorter than the run (40 steps)")
    assert launch.warmup_problem(40, 4) is None


def test_the_runs_table_says_why_a_run_inside_its_warmup_barely_learned_and_never_none(tmp_path):
    """A 40-step run of the 500-step warm-up (top-1 0.0000 otherwise unexplained) says so under
    'Why it ended'; a done run of a full warm-up reads '—' there, never 'None'."""
    write_run(tmp_path, "resnet18", 0, {"test": [(40, 0.0)]}, settings={"max_iter": 40, "warmup_num_steps": 500})
    write_run(tmp_path, "toy-dilated", 0, {"test": [(40, 0.2)]}, settings={"max_iter": 40, "warmup_num_steps": 4})
    metrics, runs = read_runs(tmp_path)
    table = present.run_table(tables.per_run(metrics, runs), present.configs(runs), runs).formatted()
    why = dict(zip(table["Variant"], table["Why it ended"]))
    assert why["resnet18"].startswith("ends inside its learning-rate warm-up (40 of 500 steps)")
    assert why["toy-dilated"] == "—"
