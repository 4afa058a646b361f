"""The epochs comparison's numbers and views on planted run logs: a staircase is found where it was
planted and nowhere else, the held-out rows and the seen groups come through, the findings say
what the numbers say, and the charts render."""

import math
import random

import polars as pl
import pytest

from nbkit.analysis import epochs, epochs_answer
from nbkit.rundir.reader import read_runs
from nbkit.rundir.runlog import RunWriter, new_run_dir
from nbkit.rundir.schema import SEEN_GROUPS
from nbkit.view import charts
from nbkit.view.epochs_view import Section, drop_table, held_out_chart, sections

SPE, L, STEPS = 20, 2, 160  # 8 epochs, a train row every 2 steps


def smooth(t):
    return 2.0 * math.exp(-t / 60) + 0.4


def staircase(t):
    return smooth(t) * 0.85 ** (t // SPE)  # 15% lower after every epoch end


def write_planted(root, variant, seed, train_curve, held_curve=smooth, seen_rows=None, spe=SPE, steps=STEPS,
                  train_200=None, **settings):
    """A run whose train rows are means of train_curve over their steps (with a little noise),
    val_dense rows of held_curve within 6 steps of each epoch end, and the seen probe's columns."""
    rng = random.Random(seed)
    run = new_run_dir(root, "cifar10", variant, f"planted-s{seed}")
    w = RunWriter(run)
    w.config({"variant": variant, "seed": seed, "dataset": {"name": "cifar10"}, "run_id": run.name,
              "settings": {"max_iter": steps, "log_every": L, **settings}, "steps_per_epoch": spe})
    rows = []
    for s in range(L, steps + 1, L):
        loss = sum(train_curve(t) for t in range(s - L, s)) / L * (1 + rng.gauss(0, 0.002))
        rows.append({"step": s, "split": "train", "time": s / 10, "loss": loss,
                     **(seen_rows(s, loss) if seen_rows else {})})
        if s >= spe - 6 and min(s % spe, spe - s % spe) <= 6:
            rows.append({"step": s, "split": "val_dense", "loss": held_curve(s)})
    rows.append({"step": steps, "split": "test", "loss": 1.0, "acc_top1": 0.5})
    if train_200 is not None:
        rows.append({"step": steps, "split": "train_200", "loss": 0.5, "acc_top1": train_200})
    w.metrics(rows)
    w.status("done", steps)
    w.close()


def epoch_groups(s, loss):
    """Epoch sampling: every example of epoch k was seen k - 1 times."""
    g = SEEN_GROUPS[min((s - 1) // SPE, 3)]
    return {f"seen_loss/{g}": loss, **{f"seen_share/{h}": float(h == g) for h in SEEN_GROUPS}}


def mixed_groups(s, loss):
    """Replacement: a share unseen that shrinks as training goes on, its loss 20% above the seen ones'."""
    unseen = math.exp(-s / SPE)
    seen_loss = loss / (unseen * 1.2 + (1 - unseen))
    return {"seen_loss/0": seen_loss * 1.2, "seen_share/0": unseen, "seen_loss/1": seen_loss,
            "seen_share/1": 1 - unseen, "seen_share/2": 0.0, "seen_share/3+": 0.0}


SWITCH = 4  # the disjoint runs' switch: the end of epoch 4, step 80


def rises(t):
    """The disjoint half under memorisation: the staircase, then up to the held-out level (smooth)."""
    return staircase(t) if t < SWITCH * SPE else smooth(t)


def falls(t):
    """The disjoint half if the drop were in the network: the loss keeps falling at the switch."""
    return staircase(t) * (0.7 if t >= SWITCH * SPE else 1.0)


SEEDS = (0, 1, 2)


def plant_controls(root, seeds=SEEDS, disjoint=rises):
    for seed in seeds:
        write_planted(root, "resnet18", seed, staircase, seen_rows=epoch_groups)
        write_planted(root, "resnet18-replacement", seed, smooth, seen_rows=mixed_groups)
        if disjoint:
            write_planted(root, "resnet18-disjoint", seed, disjoint, sampling="disjoint", switch_epoch=SWITCH)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    plant_controls(root)
    for seed in SEEDS:
        write_planted(root, "resnet18-fixed", seed, smooth)
        write_planted(root, "toy-dilated", seed, smooth)
    return read_runs(root)


def test_the_staircase_is_found_where_it_was_planted_and_nowhere_else(planted):
    metrics, runs = planted
    v = {r["variant"]: r for r in epochs.verdicts(epochs.drops.boundary_drops(metrics, runs)).iter_rows(named=True)}
    assert 0.12 < v["resnet18"]["boundary_drop_mean"] < 0.18 and v["resnet18"]["stands_out"]
    for smooth_one in ("resnet18-replacement", "resnet18-fixed", "toy-dilated"):
        assert abs(v[smooth_one]["boundary_drop_mean"]) < 0.02 and not v[smooth_one]["stands_out"], smooth_one


def test_every_boundary_is_overlaid_on_its_trend(planted):
    metrics, runs = planted
    train = epochs.aligned(metrics, runs)
    base = train.filter((pl.col("variant") == "resnet18") & (pl.col("seed") == 0))
    assert sorted(base["boundary"].unique()) == list(range(SPE, STEPS + 1, SPE))
    assert sorted(base["offset"].unique()) == [-4.5, -2.5, -0.5, 1.5, 3.5, 5.5]  # rows' centres, window 6
    before = base.filter(pl.col("offset") < 0)
    after = base.filter((pl.col("offset") > 0) & (pl.col("boundary") < STEPS))
    assert before["deviation"].abs().max() < 0.02  # the trend is fitted there
    assert after["deviation"].max() < -0.1  # 15% below it after every end
    flat = train.filter(pl.col("variant") == "toy-dilated")
    assert flat["deviation"].abs().max() < 0.03


def test_the_held_out_rows_show_no_drop_where_the_training_loss_drops(planted):
    metrics, runs = planted
    held = epochs.held_out_drops(metrics, runs)
    assert set(held["kind"]) == {"boundary"} and held.height > 0
    assert held.filter(pl.col("variant") == "resnet18")["relative"].abs().max() < 0.02
    aligned = epochs.aligned(metrics, runs, epochs.HELD_OUT)
    assert sorted(aligned["offset"].unique()) == [-4, -2, 0, 2, 4, 6]  # point evaluations at their steps


def test_the_seen_gap_is_measured_where_seen_and_unseen_share_a_window(planted):
    metrics, _ = planted
    gap = {r["variant"]: r for r in epochs.seen_gap(metrics).iter_rows(named=True)}
    assert set(gap) == {"resnet18-replacement"}  # epoch sampling never mixes the groups in one window
    assert gap["resnet18-replacement"]["gap"] == pytest.approx(1 - 1 / 1.2, rel=1e-3)
    late = [smooth(s) for s in range(STEPS // 2 + 1, STEPS + 1) if min(s % SPE, SPE - s % SPE) <= 6 and s % L == 0]
    assert gap["resnet18-replacement"]["held"] == pytest.approx(sum(late) / len(late))  # val_dense, second half
    series = epochs.seen_series(metrics).filter(pl.col("variant") == "resnet18")
    first = series.filter(pl.col("step") <= SPE).drop_nulls("loss")
    assert set(first["group"]) == {"0"}
    assert set(series.filter(pl.col("step") > 3 * SPE).drop_nulls("loss")["group"]) == {"3+"}


def test_the_findings_say_memorisation_when_every_control_agrees_beyond_chance(planted):
    metrics, runs = planted
    text = epochs_answer.findings(metrics, runs)
    assert text[-1].startswith("**Verdict: memorisation: every control agrees, each beyond chance with seeds as the "
                               "unit.**"), text[-1]
    assert "Holm-adjusted over 4" in text[-1]
    assert any(line.startswith("**Held-out images**") and "the difference is beyond chance" in line for line in text)
    switch = next(line for line in text if line.startswith("**The disjoint half**"))
    assert "the loss rose to" in switch and "The rise is beyond chance" in switch
    # the rise goes to the held-out level: the planted held-out curve just after the switch
    rows = epochs.switch(metrics, runs)
    assert rows.height == len(SEEDS) and (rows["relative"] < -0.3).all()
    assert rows["after"].mean() == pytest.approx(rows["held"].mean(), rel=0.05)
    support = next(line for line in text if "seen against unseen" in line)
    assert support.startswith("**Supporting evidence, not a test") and "17% lower for the seen ones" in support


def test_the_disjoint_half_that_falls_at_the_switch_rules_memorisation_out(tmp_path):
    plant_controls(tmp_path, disjoint=falls)
    text = epochs_answer.findings(*read_runs(tmp_path))
    switch = next(line for line in text if line.startswith("**The disjoint half**"))
    assert "is absent: the loss fell" in switch
    assert text[-1].startswith("**Verdict: not memorisation.**") and "the loss fell" in text[-1], text[-1]


def test_without_the_disjoint_half_the_verdict_is_only_consistent(tmp_path):
    plant_controls(tmp_path, disjoint=None)
    verdict = epochs_answer.findings(*read_runs(tmp_path))[-1]
    assert verdict.startswith("**Verdict: consistent with memorisation.**")
    assert "the rise at the disjoint switch has no runs" in verdict


def test_the_findings_do_not_claim_what_the_numbers_lack(planted):
    metrics, runs = planted
    no_held = metrics.filter(pl.col("split") != "val_dense")
    assert "do not settle it" in epochs_answer.findings(no_held, runs)[-1]
    flat = metrics.filter(pl.col("variant") != "resnet18")
    assert epochs_answer.findings(flat, runs.filter(pl.col("variant") != "resnet18"))[0].startswith("No resnet18 run")
    held_drops_too = metrics.with_columns(
        pl.when(pl.col("split") == "val_dense")  # scored after step s: the weights that trained on batch s - 1
        .then(pl.col("step").map_elements(lambda s: staircase(s - 1), return_dtype=pl.Float64))
        .otherwise(pl.col("loss")).alias("loss"))
    assert epochs_answer.findings(held_drops_too, runs)[-1].startswith("**Verdict: not memorisation alone.**")


def test_a_clear_null_settles_nothing(tmp_path):
    for seed in SEEDS:
        write_planted(tmp_path, "resnet18", seed, smooth)
        write_planted(tmp_path, "resnet18-replacement", seed, smooth)
    text = epochs_answer.findings(*read_runs(tmp_path))
    assert text[-1].startswith("**Verdict: the data do not settle it.**") and "not beyond chance" in text[-1]
    assert "large, but" not in text[0]


def test_a_single_seed_is_not_tested(tmp_path):
    plant_controls(tmp_path, seeds=(0,))
    text = epochs_answer.findings(*read_runs(tmp_path))
    assert "one run: whether it stands out from chance needs two or more" in text[0]
    assert text[-1].startswith("**Verdict: the data do not settle it.**")
    assert drop_table(*read_runs(tmp_path), ["resnet18"])["beyond chance"][0] == "— (one seed)"


def by_seed(curves):
    """A curve per seed: the drop at epoch ends of seed k is curves[k]'s."""
    return lambda seed: curves[seed % len(curves)]


def stairs(factor):
    return lambda t: smooth(t) * factor ** (t // SPE)


def test_pseudo_replicated_boundaries_are_not_beyond_chance(tmp_path):
    """Forty epoch ends a run, two seeds that disagree (a 30% drop and a 2% one): counted as points
    the ends would stand out by far; with the seed as the unit they do not."""
    steps = 40 * SPE
    for seed, factor in ((0, 0.7), (1, 0.98)):
        write_planted(tmp_path, "resnet18", seed, stairs(factor), steps=steps)
    metrics, runs = read_runs(tmp_path)
    points = epochs.drops.boundary_drops(metrics, runs)
    at = points.filter(pl.col("kind") == "boundary")["relative"]
    assert at.len() >= 70 and at.mean() > 0.05  # many points, a clear mean drop
    row = epochs.verdicts(points).row(0, named=True)
    assert row["seeds"] == 2 and row["stands_out"] is False and row["p"] > 0.05
    text = epochs_answer.findings(metrics, runs)
    assert "not beyond chance" in text[0] and text[-1].startswith("**Verdict: the data do not settle it.**")


def test_a_control_within_noise_makes_the_verdict_only_consistent(tmp_path):
    """The training loss drops 15% at every end of every seed; the held-out images drop 14% for one
    seed, rise 10% for another and stay flat for the third: below the training drop on average, but
    not beyond chance with three seeds."""
    for seed, held in zip(SEEDS, (stairs(0.86), stairs(1.1), smooth)):
        write_planted(tmp_path, "resnet18", seed, staircase, held_curve=held)
        write_planted(tmp_path, "resnet18-replacement", seed, smooth, seen_rows=mixed_groups)
        write_planted(tmp_path, "resnet18-disjoint", seed, rises, sampling="disjoint", switch_epoch=SWITCH)
    text = epochs_answer.findings(*read_runs(tmp_path))
    held = next(line for line in text if line.startswith("**Held-out images**"))
    assert "is within noise" in held, held
    assert text[-1].startswith("**Verdict: consistent with memorisation.**"), text[-1]
    assert "training against held-out drop is within noise" in text[-1]


def test_the_sections_come_in_order_with_their_charts_and_table(planted, tmp_path):
    metrics, runs = planted
    out = sections(metrics, runs, "cifar10")
    assert all(isinstance(s, Section) for s in out)
    assert [s.title for s in out] == ["The experiment", "Training loss, epoch ends marked",
                                      "Loss by how often the examples were trained on", "Every epoch end overlaid",
                                      "Held-out images at the same steps",
                                      "The disjoint half: a switch to never-seen images", "The drop at epoch ends",
                                      "Findings"]
    assert all(isinstance(s.chart, charts.Spec) for s in out[1:6])
    table = out[6].table
    assert table["variant"].to_list() == ["resnet18", "resnet18-fixed", "resnet18-replacement", "resnet18-disjoint",
                                          "toy-dilated"]
    first = table.row(0, named=True)
    assert first["beyond chance"].startswith("yes (p = ") and first["held-out images"].startswith(("+0.", "-0."))
    out[3].chart.save(tmp_path / "aligned.png")  # Vega-Lite that renders
    assert (tmp_path / "aligned.png").stat().st_size > 10_000
    assert sections(metrics, runs, "cifar100")[-1].title == "No runs yet"


def test_the_drop_table_keeps_the_comparisons_order(planted):
    metrics, runs = planted
    table = drop_table(metrics, runs, ["toy-dilated", "resnet18"])
    assert table["variant"].to_list()[:2] == ["toy-dilated", "resnet18"]


def test_the_verdict_says_the_drop_needs_no_reshuffle_when_a_fixed_order_keeps_it(tmp_path):
    plant_controls(tmp_path)
    for seed in SEEDS:
        write_planted(tmp_path, "resnet18-fixed", seed, staircase)
    verdict = epochs_answer.findings(*read_runs(tmp_path))[-1]
    assert verdict.startswith("**Verdict: memorisation") and "the loss lies -14." in verdict
    assert "not clearly smaller (p = " in verdict and "the drop stays without the reshuffle" in verdict


def test_a_large_fixed_order_drop_that_seeds_disagree_on_says_both(tmp_path):
    """The chart beside it shows a clear drop: the words say it is large and why it is not beyond chance."""
    plant_controls(tmp_path)
    for seed, factor in zip(SEEDS, (0.5, 1.0, 0.9)):
        write_planted(tmp_path, "resnet18-fixed", seed, stairs(factor))
    metrics, runs = read_runs(tmp_path)
    verdict = epochs_answer.findings(metrics, runs)[-1]
    assert "large, but not beyond chance with the seed as the unit" in verdict
    assert "whether the drop needs the reshuffle is open" in verdict
    row = drop_table(metrics, runs, ["resnet18-fixed"]).row(0, named=True)
    assert row["beyond chance"].startswith("no (p = ") and row["beyond chance"].endswith("large, seeds disagree")
    assert row["at epoch ends (against trend)"].startswith("-")  # the sign the charts draw


@pytest.mark.parametrize("replacement, says, also", [
    (staircase, "**Verdict: not the data order.**", "drops at the same steps about as much"),
    (None, "**Verdict: the data do not settle it.**", "without a resnet18-replacement run"),
], ids=["replacement drops too", "no replacement run"])
def test_the_verdict_needs_each_control(tmp_path, replacement, says, also):
    for seed in SEEDS:
        write_planted(tmp_path, "resnet18", seed, staircase)
        if replacement:
            write_planted(tmp_path, "resnet18-replacement", seed, replacement, seen_rows=mixed_groups)
    verdict = epochs_answer.findings(*read_runs(tmp_path))[-1]
    assert verdict.startswith(says) and also in verdict, verdict


def test_the_loss_by_count_is_compared_at_the_same_weights(planted):
    metrics, _ = planted
    counts = epochs.seen_by_count(metrics)
    assert counts["variant"].unique().to_list() == ["resnet18-replacement"]  # the only runs that mix the groups
    once = counts.row(0, named=True)
    assert once["group"] == "1" and once["ratio"] == pytest.approx(1 / 1.2, rel=1e-6)
    assert counts.height == 1  # twice and three times hold no examples in these runs


def test_the_held_out_legend_is_drawn_whole(planted):
    """The legend's labels as rendered (SVG text), not the spec: no label clipped to 'held-out images (n…'."""
    import vl_convert

    metrics, runs = planted
    train, held = epochs.aligned(metrics, runs), epochs.aligned(metrics, runs, epochs.HELD_OUT)
    svg = vl_convert.vegalite_to_svg(held_out_chart(train, held, ["resnet18"]).spec)
    assert "held-out images (never trained on)" in svg and "training batches" in svg
    assert "…" not in svg


def test_the_loss_around_an_epoch_end_is_read_off_the_train_rows(planted):
    """The README's "mean training loss over the N steps before and after the end of epoch k"."""
    metrics, runs = planted
    row = lambda s: (staircase(s - 2) + staircase(s - 1)) / 2  # a train row: the mean of its two steps
    before, after = epochs.around_end(metrics, runs, "resnet18", 4, 10)
    assert before == pytest.approx(sum(row(s) for s in range(72, 81, 2)) / 5, rel=0.01)
    assert after == pytest.approx(sum(row(s) for s in range(82, 91, 2)) / 5, rel=0.01)
    assert after < 0.9 * before  # the planted 15% step
    assert epochs.around_end(metrics, runs, "resnet50", 4, 10) is None


def test_the_supporting_evidence_is_computed_and_labelled(planted, tmp_path):
    """Dose-response: the more a variant overfits, the larger its drop; the seen-count prediction
    of the drop at the first epoch end. Both shown as supporting evidence, not counted."""
    variants = ("resnet18", "resnet18-fixed", "resnet18-replacement", "resnet18-half", "toy-dilated")
    for seed in (0, 1):
        for k, variant in enumerate(variants):  # drops of 20%, 15%, 10%, 5%, 0%; gaps 0.4 down to 0
            write_planted(tmp_path, variant, seed, stairs(0.8 + 0.05 * k), train_200=0.9 - 0.1 * k)
    metrics, runs = read_runs(tmp_path)
    both, test = epochs.dose_response(metrics, runs)
    assert both.height == 5 and test.tau == pytest.approx(1.0) and test.p_above == pytest.approx(1 / 120)
    flat = tmp_path / "flat"  # the drop unrelated to the gap
    for seed in (0, 1):
        for k, variant in enumerate(variants):
            write_planted(flat, variant, seed, stairs((0.9, 0.8, 1.0, 0.85, 0.95)[k]), train_200=0.9 - 0.1 * k)
    assert epochs.dose_response(*read_runs(flat))[1].p_above > 0.05
    text = epochs_answer.findings(metrics, runs)
    assert any(line.startswith("**Supporting evidence, not a test of the verdict: dose and response**")
               and "Kendall tau +1.00" in line for line in text)

    metrics, runs = planted  # replacement: once-seen examples have 1/1.2 of the unseen loss
    (first,) = epochs.predicted_drops(metrics, epochs.drops.boundary_drops(metrics, runs), "resnet18",
                                      "resnet18-replacement")
    assert first["epoch"] == 1 and first["predicted"] == pytest.approx(1 - 1 / 1.2, rel=1e-3)
    assert first["measured"] == pytest.approx(0.15, abs=0.02)  # the planted staircase
    line = next(x for x in epochs_answer.findings(metrics, runs) if "seen-count prediction" in x)
    assert line.startswith("**Supporting evidence, not a test") and "17% at the end of epoch 1" in line
