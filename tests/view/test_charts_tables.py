from pathlib import Path

import polars as pl
import pytest

from nbkit.analysis import curves, tables
from nbkit.design.comparisons import COMPARISONS
from nbkit.rundir.reader import read_runs
from nbkit.view import charts, summary
from tests.helpers import workbench_runs, write_run


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    return read_runs(workbench_runs(tmp_path_factory.mktemp("runs")))


def chart_rows(chart) -> list[dict]:
    """All data rows a chart embeds (Altair puts them under top-level `datasets`)."""
    return [row for rows in chart.to_dict()["datasets"].values() for row in rows]


def test_loss_chart_encodes_each_runs_training_loss(logs):
    metrics, runs = logs
    chart = charts.loss_chart(metrics, runs, ["resnet18"])
    rows = [r for r in chart_rows(chart) if "value" in r]
    expected = {(seed, s): 2.0 - s / 300 - seed * 0.05 for seed in (0, 1) for s in range(10, 201, 10)}
    assert {(r["seed"], r["step"]): r["value"] for r in rows} == pytest.approx(expected, rel=1e-5)
    assert not any("path" in r for r in chart_rows(chart))  # a report carries no local paths
    params = {p["name"]: p for p in chart.to_dict()["params"]}
    assert params["highlight"]["bind"] == "legend" and params["highlight"]["views"] == ["loss_lines"]
    assert params["zoom_loss"]["bind"] == "scales"
    assert params["hover_loss"]["select"]["nearest"] and params["hover_loss"]["views"] == ["loss_rules"]
    plot, readout = chart.to_dict()["hconcat"]
    assert readout["name"] == "loss_readout"
    assert {"name": "loss-lines"} in [layer.get("data") for layer in readout["layer"]]  # the lines' own data
    assert {r["name"] for r in chart_rows(chart) if "name" in r} == {"resnet18 s0", "resnet18 s1"}


def test_smoothing_is_a_debiased_ema_drawn_over_the_raw_curve(logs):
    metrics, runs = logs
    raw = curves.series(metrics, runs, "train", "loss").filter(pl.col("path") == runs["path"][0])
    smooth = curves.series(metrics, runs, "train", "loss", smoothing=0.8).filter(pl.col("path") == runs["path"][0])
    last, by_hand = 0.0, []
    for i, v in enumerate(raw["value"]):  # TensorBoard: an EMA from 0, divided by 1 - w^(i+1)
        last = 0.8 * last + 0.2 * v
        by_hand.append(last / (1 - 0.8 ** (i + 1)))
    assert smooth["value"].to_list() == pytest.approx(by_hand) and smooth["raw"].to_list() == raw["value"].to_list()
    assert smooth["value"][0] == raw["value"][0]  # no lag towards zero at the start
    chart = charts.accuracy_chart(metrics, runs, ["resnet18"], smoothing=0.8)
    layers = chart.to_dict()["vconcat"][0]["hconcat"][0]["layer"]
    assert [l["encoding"]["y"]["field"] for l in layers if l["mark"]["type"] == "line"] == ["raw", "value"]
    with pytest.raises(ValueError, match="smoothing expects a weight in"):
        curves.series(metrics, runs, "train", "loss", smoothing=1.0)


def test_seed_aggregation_gives_mean_min_and_max(logs):
    metrics, runs = logs
    df = curves.series(curves.select(metrics, ["resnet18"]), runs, "test", "acc_top1")
    agg = curves.aggregate_seeds(df).filter(pl.col("step") == 100).row(0, named=True)
    assert agg["value"] == pytest.approx(0.40 + 0.005) and agg["low"] == pytest.approx(0.40)
    assert agg["high"] == pytest.approx(0.41) and agg["seeds"] == 2
    chart = charts.accuracy_chart(metrics, runs, ["resnet18"], seeds="mean and min-max band")
    band = [r for r in chart_rows(chart) if "low" in r and r["step"] == 100 and r["value"] < 0.5]  # the test panel
    assert band and all(r["low"] == pytest.approx(0.40) and r["high"] == pytest.approx(0.41) for r in band)


def test_epoch_marks_are_multiples_of_steps_per_epoch(logs):
    metrics, runs = logs  # fixture runs have 10 steps per epoch
    assert curves.epoch_marks(runs, ["resnet18"], "step", 35)["x"].to_list() == [10.0, 20.0, 30.0]
    assert curves.epoch_marks(runs, ["resnet18"], "epoch", 35)["x"].to_list() == [1.0, 2.0, 3.0]
    assert curves.epoch_marks(runs, ["resnet18"], "wall time", 35).is_empty()
    chart = charts.loss_chart(metrics, runs, ["resnet18"])
    marks = sorted(r["x"] for r in chart_rows(chart) if set(r) == {"x"})
    assert marks == [float(k) for k in range(10, 201, 10)]


def test_epoch_axis_divides_steps_and_says_so(logs):
    metrics, runs = logs
    df = curves.series(metrics, runs, "test", "acc_top1", x="epoch")
    assert (df["x"] == df["step"] / 10).all()
    import vl_convert as vlc

    spec = charts.loss_chart(metrics, runs, ["resnet18"], x="epoch").to_dict()
    assert ">epoch</text>" in vlc.vegalite_to_svg(spec)  # the axis is titled, whatever layer shares it


def test_temperature_chart_only_where_runs_learned_one(logs):
    metrics, runs = logs
    assert charts.temperature_chart(metrics, runs, ["resnet18"]) is None
    chart = charts.temperature_chart(metrics, runs, ["vitn-12x256-8x8-lt"])
    rows = [r for r in chart_rows(chart) if "low" in r and r["step"] == 100]
    assert {(r["seed"], round(r["value"], 6), round(r["high"] - r["value"], 6)) for r in rows} == {
        (0, 0.9, 0.02), (1, 0.9, 0.03)}


def test_colours_follow_the_runs_directory_not_the_comparison(tmp_path):
    """A group keeps its colour in every notebook and report of a runs directory; the variants
    with runs take the strongest colours, in the registry's order; seeds differ by dash."""
    from nbkit.design.variants import VARIANTS

    for variant in ("toy-dilated", "resnet18-pcnorm", "resnet18"):
        write_run(tmp_path, variant, 0, {"test": [(10, 0.5)]}, train=[(10, 1.0)])
    write_run(tmp_path, "resnet18", 1, {"test": [(10, 0.5)]}, train=[(10, 1.0)], settings={"max_iter": 99})
    metrics, runs = read_runs(tmp_path)
    palette = charts.colours(runs, list(VARIANTS))
    assert list(palette) == ["resnet18 · max_iter=10", "resnet18-pcnorm", "toy-dilated", "resnet18 · max_iter=99"]
    assert list(palette.values()) == list(charts.PALETTE[:4])  # toy-dilated and pcnorm: blue and orange apart
    one = charts.loss_chart(metrics, runs, ["toy-dilated"], palette=palette).to_dict()
    lines = next(l for l in one["hconcat"][0]["layer"] if l.get("name") == "loss_lines")["encoding"]
    assert lines["color"]["scale"] == {"domain": ["toy-dilated"], "range": [palette["toy-dilated"]]}
    assert lines["color"]["legend"]["values"] == ["toy-dilated"] and lines["strokeDash"]["field"] == "seed"
    assert len(set(charts.PALETTE[:23])) == 23


def test_y_range_fits_what_is_shown_per_split(logs):
    metrics, runs = logs
    chart = charts.accuracy_chart(metrics, runs, ["resnet18"], splits=("train_200", "test")).to_dict()
    exprs = [next(l for l in p["hconcat"][0]["layer"] if l.get("name", "").endswith("_lines"))["encoding"]["y"]
             ["scale"]["domain"]["expr"] for p in chart["vconcat"]]
    domains = [next(p["value"] for p in chart["params"] if p["name"] == e) for e in exprs]  # a parameter each
    test = curves.series(curves.select(metrics, ["resnet18"]), runs, "test", "acc_top1")["value"]
    low, high = domains[1]
    assert test.min() - 0.011 < low < test.min() and test.max() < high < test.max() + 0.011  # not 0 to 1
    assert domains[0] != domains[1]
    flat = pl.DataFrame({"step": [1, 2], "value": [0.0, 0.0]})
    assert curves.y_domain(flat, bounds=(0.0, 1.0)) == [0.0, 0.05]  # top-1 all 0: not -0.01 to 0.01
    assert curves.y_domain(flat.with_columns(pl.lit(1.0).alias("value")), bounds=(0.0, 1.0)) == [0.95, 1.0]


def test_any_logged_scalar_can_be_plotted(logs):
    metrics, runs = logs
    options = curves.scalars(metrics)
    assert {"train lr", "train loss", "test loss", "train_200 acc_top1", "train tau_mean"} <= set(options)
    assert not {o for o in options if o.split(" ")[1] in ("step", "time", "seed")}
    chart = charts.scalar_chart(metrics, runs, "train lr", ["resnet18"])
    assert {r["value"] for r in chart_rows(chart) if "value" in r} == {1e-3}
    with pytest.raises(ValueError, match="no logged scalar 'train momentum'; the logs hold test loss, test acc_top1"):
        charts.scalar_chart(metrics, runs, "train momentum")


def test_dashboard_links_the_legend_across_panels_and_compiles(logs):
    import vl_convert as vlc


    metrics, runs = logs
    from nbkit.view import comparison_view

    view = comparison_view.build_view(metrics, runs, "synthetic", ["resnet18", "vitn-12x256-8x8-lt"], scalar="test loss")
    spec = view.dashboard.to_dict()
    highlight = [p for p in spec["params"] if p["name"] == "highlight"]
    assert len(highlight) == 1 and highlight[0]["views"] == [
        "loss_lines", "top1_0_lines", "top1_1_lines", "tau_lines", "scalar_lines"]
    assert "signals" in vlc.vegalite_to_vega(spec)  # Vega accepts it (a selection defined twice is refused)


def test_thinning_keeps_steps_aligned_and_each_last_point():
    df = pl.DataFrame({"path": ["a"] * 1000 + ["b"] * 400, "step": list(range(1000)) + list(range(400)),
                       "value": [0.0] * 1400})
    thin = curves.thin(df, max_points=250)
    a, b = (thin.filter(pl.col("path") == p)["step"].to_list() for p in "ab")
    assert a[-1] == 999 and b[-1] == 399 and len(a) <= 251
    assert set(b[:-1]) <= set(a)  # the same steps in every run: the hover readout lines up


def test_per_variant_table_matches_hand_computation(logs):
    metrics, runs = logs
    table = tables.per_variant(metrics, runs)
    assert set(table["variant"]) == {"resnet18", "toy-dilated", "vitn-12x256-8x8-lt", "vitn-12x256-8x8-ra"}  # failed excluded
    r = table.filter(pl.col("variant") == "resnet18").row(0, named=True)
    finals = [0.30 + 0.2 + 0.0, 0.30 + 0.2 + 0.01]  # test top-1 at step 200, seeds 0 and 1
    assert r["seeds"] == 2
    assert r["final_test_mean"] == pytest.approx(sum(finals) / 2)
    assert r["final_test_std"] == pytest.approx(pl.Series(finals).std())
    assert r["best_test_mean"] == pytest.approx(0.505) and r["best_test_step_mean"] == 200
    train_200 = [min(1.0, 0.30 + 0.5), min(1.0, 0.31 + 0.5)]
    assert r["gap_mean"] == pytest.approx(sum(t - f for t, f in zip(train_200, finals)) / 2)
    assert r["parameters"] == 1000 and r["images_per_second_mean"] == 100.0
    assert table["variant"][0] == "resnet18"  # sorted by best test top-1


def test_findings_name_the_best_variant_and_judge_the_margin(logs):
    metrics, runs = logs
    table = tables.per_variant(metrics, runs, ["resnet18", "toy-dilated", "vitn-12x256-8x8-lt"])
    text = " ".join(summary.findings(table, tables.per_run(metrics, runs), baseline="toy-dilated"))
    assert "**resnet18** has the best test top-1: 0.5050" in text
    assert "margin over toy-dilated is +0.2000, larger than the seeds' spread (0.0100)" in text
    assert "Lowest test top-1: **toy-dilated**" in text


def test_val_split_puts_test_at_best_val_beside_best_on_test(tmp_path):
    write_run(tmp_path, "resnet18", 0, {"val": [(100, 0.5), (200, 0.4)], "test": [(100, 0.30), (200, 0.35)],
                                       "train_200": [(100, 0.9), (200, 1.0)]})
    metrics, runs = read_runs(tmp_path)
    row = tables.per_variant(metrics, runs).row(0, named=True)
    assert row["best_test_mean"] == pytest.approx(0.35) and row["test_at_best_val_mean"] == pytest.approx(0.30)
    text = " ".join(summary.findings(tables.per_variant(metrics, runs), tables.per_run(metrics, runs)))
    assert "flatters test top-1 by 0.0500 on average over picking it on the val split (1 of 1 variant(s)" in text
    assert "at least 0.1 for resnet18 (1.000 against 0.350)" in text
    write_run(tmp_path, "toy-dilated", 0, {"test": [(100, 0.2)]})  # no val split: it takes no part
    metrics, runs = read_runs(tmp_path)
    text = " ".join(summary.findings(tables.per_variant(metrics, runs), tables.per_run(metrics, runs)))
    assert "flatters test top-1 by 0.0500 on average over picking it on the val split (1 of 2 variant(s)" in text


def test_no_val_split_no_word_on_picking_the_step_on_it(tmp_path):
    """Runs without a val split: the answer says nothing of it (it said "flatters ... by 0.0000")."""
    write_run(tmp_path, "resnet18", 0, {"test": [(100, 0.30), (200, 0.35)], "train_200": [(200, 1.0)]})
    write_run(tmp_path, "toy-dilated", 0, {"test": [(100, 0.20)], "train_200": [(100, 0.3)]})
    metrics, runs = read_runs(tmp_path)
    text = " ".join(summary.findings(tables.per_variant(metrics, runs), tables.per_run(metrics, runs)))
    assert "**resnet18** has the best test top-1" in text and "flatters" not in text and "val split" not in text
    write_run(tmp_path, "resnet18-gn", 0, {"val": [(100, 0.5)], "test": [(100, 0.4)]})  # the same step either way
    metrics, runs = read_runs(tmp_path)
    text = " ".join(summary.findings(tables.per_variant(metrics, runs), tables.per_run(metrics, runs)))
    assert "**resnet18-gn** has the best test top-1" in text and "flatters" not in text  # not "by 0.0000"


def test_runs_not_yet_evaluated_count_for_nothing(tmp_path, capsys):
    """Every run looks like this for its first eval_every steps: the view, findings and
    `summary --by-variant` go on, and a seed without a test evaluation is not counted."""
    from nbkit.cli import main

    steps = {"max_iter": 100}
    for variant, acc in (("resnet18-gn", 0.40), ("resnet18", 0.30)):
        write_run(tmp_path, variant, 0, {"train_200": [(100, 0.9)], "test": [(100, acc)]}, settings=steps)
        write_run(tmp_path, variant, 1, {}, train=[(10, 2.0)], state="running", settings=steps)
    write_run(tmp_path, "vitn-12x256-8x8", 0, {}, train=[(10, 2.0)], state="running", settings=steps)
    metrics, runs = read_runs(tmp_path)
    table = tables.per_variant(metrics, runs)
    assert dict(table.select("variant", "seeds").rows()) == {"resnet18-gn": 1, "resnet18": 1, "vitn-12x256-8x8": 0}
    text = " ".join(summary.findings(table, tables.per_run(metrics, runs)))
    assert "**resnet18-gn** has the best test top-1: 0.4000 (best step, mean of 1 seed)" in text
    assert "margin over resnet18 is +0.1000, with one seed each, the seeds' spread is unknown" in text
    assert "Lowest test top-1: **resnet18** at 0.3000" in text
    assert main(["summary", "--runs-dir", str(tmp_path), "--by-variant"]) == 0
    row = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("| vitn-12x256-8x8"))
    assert [c.strip() for c in row.strip("|").split("|")][:3] == ["vitn-12x256-8x8", "0", "—"]


def test_overfitting_finding_rests_on_the_train_200_test_gap(tmp_path):
    """A variant at 1.0 on both splits does not overfit (the old finding said it did)."""
    write_run(tmp_path, "toy-dilated", 0, {"train_200": [(100, 1.0)], "test": [(100, 1.0)]})
    write_run(tmp_path, "resnet18", 0, {"train_200": [(100, 0.99)], "test": [(100, 0.60)]})
    write_run(tmp_path, "resnet18-aug", 0, {"train_200": [(100, 0.65)], "test": [(100, 0.62)]})
    metrics, runs = read_runs(tmp_path)
    text = " ".join(summary.findings(tables.per_variant(metrics, runs), tables.per_run(metrics, runs)))
    assert "exceeds test top-1 by at least 0.1 for resnet18 (0.990 against 0.600)" in text
    assert "toy-dilated (" not in text
    assert "The smallest gap is toy-dilated's (0.000)" in text


def test_original_train_table_scores_augmented_runs_as_the_original_did(tmp_path):
    write_run(tmp_path, "resnet18", 0, {"train_200": [(100, 0.99)], "test": [(100, 0.60)]})
    new = write_run(tmp_path, "resnet18-aug", 0, {"train_200": [(100, 0.70)], "train_200_aug": [(100, 0.41)],
                                                  "test": [(100, 0.62)]}, settings={"use_augmentation": True})
    old = write_run(tmp_path, "resnet18-aug", 1, {"train_200": [(100, 0.72)], "test": [(100, 0.61)]},
                    settings={"use_augmentation": True})
    metrics, runs = read_runs(tmp_path)
    train_200, _ = tables.original_tables(metrics, runs)
    rows = {Path(r["path"]): (r["split"], r["acc_top1"]) for r in train_200.iter_rows(named=True)}
    assert rows[new] == ("train_200_aug", 0.41) and rows[old] == ("train_200 (clean)", 0.72)
    assert ("train_200", 0.99) in rows.values()
    # the generalisation gap stays on the clean score
    gap = tables.per_variant(metrics, runs).filter(pl.col("variant") == "resnet18-aug")["gap_mean"][0]
    assert gap == pytest.approx(((0.70 - 0.62) + (0.72 - 0.61)) / 2)


def test_per_layer_temperature_is_read_at_each_runs_last_logged_step(logs):
    metrics, _ = logs
    layers = curves.layer_temperatures(metrics)
    assert set(layers["layer"]) == {0, 1, 2} and set(layers["variant"]) == {"vitn-12x256-8x8-lt"}
    last = layers.filter(pl.col("layer") == 2).row(0, named=True)
    assert last["tau"] == pytest.approx(1 - last["step"] / 1000 + 0.01)
    assert chart_rows(charts.layer_temperature_chart(metrics)) and charts.layer_temperature_chart(
        metrics, ["resnet18"]) is None


def test_gradient_norm_is_charted_by_default_where_runs_logged_it(logs):
    from nbkit.view import widgets, workbench

    metrics, runs = logs
    assert workbench.default_scalar(metrics) == "train grad_norm"
    cat = workbench.catalogue(metrics, runs, COMPARISONS["models"])
    controls = widgets.view_controls(cat, COMPARISONS["models"], "synthetic", workbench.Choices(),
                                     workbench.default_scalar(metrics))
    assert controls["scalar"].value == "train grad_norm"
    shown = charts.main_charts(metrics, runs, ["vitn-12x256-8x8-lt", "resnet18"], scalar="train grad_norm")
    assert {r["group"] for r in chart_rows(shown["scalar"]) if "group" in r} == {"vitn-12x256-8x8-lt"}
    without = metrics.filter(pl.col("variant") == "resnet18").drop("grad_norm")
    assert workbench.default_scalar(without) is None


def test_the_loss_range_leaves_out_a_long_runs_start_but_draws_a_short_run_whole():
    """A 5,000-step run's first tenth (loss far above where it settles) is outside the fitted
    range; a 200-step run of 20 points keeps its first point inside it."""
    long = pl.DataFrame({"path": "a", "step": list(range(10, 5001, 10)), "value": [7.0] + [2.0] * 499})
    short = pl.DataFrame({"path": "b", "step": list(range(10, 201, 10)), "value": [6.0] + [3.0] * 19})
    low, high = curves.y_domain(long, skip_start=0.1)
    assert high < 7.0
    low, high = curves.y_domain(pl.concat([long, short]), skip_start=0.1)
    assert high > 6.0 and low < 2.0  # the short run's first point and the long run's settled loss


def test_the_top1_panels_follow_a_new_evaluation_and_not_a_new_training_row(tmp_path):
    """The top-1 panels are kept while only training rows arrive (a live page's refresh), and built
    again, with the new point drawn, when an evaluation arrives."""
    import json

    run = write_run(tmp_path, "resnet18", 0, {"test": [(10, 0.3), (20, 0.35)]}, train=[(s, 2.0 - s / 100) for s in range(1, 21)])

    def test_points():
        metrics, runs = read_runs(tmp_path)
        spec = charts.dashboard(charts.main_charts(metrics, runs, ["resnet18"], splits=("test",))).to_dict()
        return sorted((r["step"], r["value"]) for r in spec["datasets"]["top1_0-lines"])

    before = test_points()
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 21, "split": "train", "time": 2.1, "loss": 1.7}) + "\n")
    assert test_points() == before == [(10, 0.3), (20, 0.35)]
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 30, "split": "test", "time": 3.0, "acc_top1": 0.4, "loss": 1.0}) + "\n")
    assert test_points() == [(10, 0.3), (20, 0.35), (30, 0.4)]


def test_many_lines_share_a_points_budget_and_few_keep_theirs():
    """A hundred runs of 500 points are drawn with about 120 points each (a panel's budget of
    12,000), every run's last point kept; two runs keep their 250 (and the last)."""
    many = pl.DataFrame({"path": [f"r{i}" for i in range(100) for _ in range(500)],
                         "step": [s for _ in range(100) for s in range(500)], "value": [0.0] * 50_000})
    thin = curves.thin(many)
    per_line = thin.group_by("path").agg(pl.len(), pl.col("step").max())
    assert per_line["len"].max() <= 121 and thin.height <= 12_100 and set(per_line["step"]) == {499}
    few = many.filter(pl.col("path").is_in(["r0", "r1"]))
    assert curves.thin(few).group_by("path").len()["len"].to_list() == [251, 251]  # every other one, and the last
