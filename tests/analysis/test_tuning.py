"""Comparisons under tuning (nbkit.analysis.tuning): Dodge et al.'s expected best of n trials
against brute force, trials scored on val only, pruned trials out of the curves, and the verdict
on the ranking planted both ways."""

import itertools
import json

import numpy as np
import polars as pl
import pytest

from nbkit.analysis import tuning
from nbkit.rundir.reader import read_runs
from nbkit.view import present
from tests.helpers import trial_run as write_run


@pytest.mark.parametrize("scores", [[0.3], [0.1, 0.5], [0.2, 0.2, 0.7], [0.4, 0.1, 0.9, 0.1], [0.5, 0.3, 0.8, 0.6, 0.2]])
def test_expected_max_is_the_mean_best_of_every_draw(scores):
    for n in range(1, 5):
        draws = list(itertools.product(scores, repeat=n))  # every n-tuple drawn with replacement, equally likely
        brute = sum(max(d) for d in draws) / len(draws)
        assert tuning.expected_max(scores, n) == pytest.approx(brute, abs=1e-12)


def test_curve_rises_to_the_best_with_a_band_around_it():
    scores = [0.2, 0.5, 0.35, 0.6, 0.1, 0.55]
    c = tuning.curve(scores, n_max=30)
    assert c["expected"][0] == pytest.approx(np.mean(scores))
    assert (np.diff(c["expected"].to_numpy()) >= -1e-12).all() and c["expected"][-1] == pytest.approx(0.6, abs=1e-3)
    assert ((c["low"] <= c["expected"] + 1e-12) & (c["expected"] <= c["high"] + 1e-12)).all()
    with pytest.raises(ValueError, match="at least one score"):
        tuning.expected_max([], 1)


def frames(root):
    metrics, runs = read_runs(root)
    return tuning.trials(metrics, runs, present.configs(runs))


def test_a_trial_is_chosen_on_val_never_on_test(tmp_path):
    # within a run: val peaks at step 20, test only at step 40
    write_run(tmp_path, "a", 0, val={20: 0.6, 40: 0.5}, test={20: 0.40, 40: 0.90})
    # across trials: trial 1 has the test-only peak; trial 2 the best val
    write_run(tmp_path, "a", 1, val={20: 0.3, 40: 0.4}, test={20: 0.3, 40: 0.95})
    write_run(tmp_path, "a", 2, val={20: 0.7, 40: 0.65}, test={20: 0.45, 40: 0.50})
    rows = frames(tmp_path)
    first = rows.filter(pl.col("trial") == 0).row(0, named=True)
    assert (first["val_top1"], first["best_step"], first["test_top1"]) == (0.6, 20, 0.40)
    best = tuning.chosen(rows).row(0, named=True)
    assert (best["trial"], best["val_top1"], best["test_top1"]) == (2, 0.7, 0.45)
    assert best["values"] == {"warmup_max_lr": pytest.approx(3e-3), "use_augmentation": True}


def test_pruned_failed_and_running_trials_are_left_out_of_the_curves(tmp_path):
    write_run(tmp_path, "a", 0, val={20: 0.5, 40: 0.6}, test={20: 0.5, 40: 0.6})
    write_run(tmp_path, "a", 1, val={20: 0.2, 40: 0.3}, test={20: 0.2, 40: 0.3})
    write_run(tmp_path, "a", 2, val={20: 0.95}, test={20: 0.9}, state="stopped", reason="pruned by successive halving at step 20")
    write_run(tmp_path, "a", 3, val={20: 0.99}, test={20: 0.9}, state="failed", reason="loss is NaN")
    write_run(tmp_path, "a", 4, val={20: 0.98}, test={20: 0.9}, state="running")
    rows = frames(tmp_path)
    assert dict(zip(rows["trial"], rows["state"])) == {0: "complete", 1: "complete", 2: "pruned", 3: "failed",
                                                       4: "running"}
    curves = tuning.budget_curves(rows)
    assert curves["n"].to_list() == [1, 2]  # two complete trials
    assert curves["expected"][0] == pytest.approx(0.45) and curves["expected"][1] == pytest.approx(0.525)  # 0.3 only when both draws are
    best = tuning.chosen(rows).row(0, named=True)
    assert (best["trial"], best["trials"], best["pruned"], best["failed"]) == (0, 2, 1, 1)


def test_an_ordinary_run_is_no_trial(tmp_path):
    d = write_run(tmp_path, "a", 0, val={20: 0.5}, test={20: 0.5})
    cfg = json.loads((d / "config.json").read_text())
    del cfg["tune"]
    (d / "config.json").write_text(json.dumps(cfg))
    assert frames(tmp_path).is_empty()


def planted(tmp_path, a_scores, b_scores):
    for variant, scores in (("a", a_scores), ("b", b_scores)):
        for t, v in enumerate(scores):
            write_run(tmp_path, variant, t, val={40: v}, test={40: v})
    return tuning.budget_curves(frames(tmp_path))


def test_the_verdict_when_the_leader_holds_at_every_budget(tmp_path):
    curves = planted(tmp_path, [0.6, 0.62, 0.58, 0.61, 0.65, 0.6], [0.3, 0.4, 0.35, 0.5, 0.45, 0.42])
    assert tuning.budget_verdict(curves) == "a leads at every budget (1 to 6 trials)"
    table = tuning.rankings_table(curves)
    assert table["trials"].to_list() == [1, 5, 6] and table["same as at 1 trial"].all()
    assert not tuning.within_noise(curves, 6)  # far apart


def test_a_lead_within_the_bands_is_said_to_be(tmp_path):
    curves = planted(tmp_path, [0.50, 0.56, 0.47, 0.60, 0.52, 0.55], [0.49, 0.55, 0.46, 0.58, 0.51, 0.54])
    assert tuning.ranking(curves, 6) == ["a", "b"] and tuning.within_noise(curves, 6)


def test_the_verdict_when_the_order_flips(tmp_path):
    # a: steady and middling; b: mostly poor with a few excellent trials, so more trials favour b
    curves = planted(tmp_path, [0.5, 0.52, 0.5, 0.51, 0.5, 0.52], [0.1, 0.2, 0.9, 0.15, 0.85, 0.2])
    verdict = tuning.budget_verdict(curves)
    flip = next(n for n in range(1, 7) if tuning.ranking(curves, n)[0] == "b") - 1
    assert flip >= 1 and verdict.startswith(f"the order flips after {flip} trial")
    assert tuning.ranking(curves, 1) == ["a", "b"] and tuning.ranking(curves, 6) == ["b", "a"]
    assert not tuning.rankings_table(curves)["same as at 1 trial"].to_list()[-1]


def test_importance_finds_the_setting_that_matters(tmp_path):
    # val top-1 follows use_augmentation (even trials) and not the learning rate
    for t in range(8):
        write_run(tmp_path, "a", t, val={40: 0.8 if t % 2 == 0 else 0.3 + 0.01 * t}, test={40: 0.5})
    imp = dict(tuning.importance(frames(tmp_path)).select("setting", "importance").iter_rows())
    assert imp["use_augmentation"] > 0.5 > imp["warmup_max_lr"]
    assert sum(imp.values()) == pytest.approx(1.0)
