"""The replication scorecard: the original's sentences and numbers as its README gives them, and
every kind of verdict on planted runs (holds, does not hold, within noise, ties, one seed)."""

import json
import math
import re
from itertools import permutations

import pytest

from nbkit.analysis import claims as original
from nbkit.analysis import scorecard as claims
from nbkit.analysis.measures import measured
from nbkit.analysis.significance import kendall_null, kendall_s, kendall_tau, kendall_test, pooled_sd, t_quantile
from nbkit.cli import main
from nbkit.rundir.reader import read_runs
from nbkit.view import scorecard as scorecard_text
from tests.conftest import REPO
from tests.helpers import write_run

STUDY = REPO.parent / "shared" / "reference" / "original-study.md"
needs_study = pytest.mark.skipif(not STUDY.exists(), reason="the original study's text is in ../shared/reference")


@needs_study
def test_original_numbers_are_the_original_tables():
    rows = re.findall(r"\| logs/cifar100/([\w.-]+)/\d+ +\| (train_200|test) +\| +\d+ \| +([\d.]+) \|", STUDY.read_text())
    found = {}
    for variant, split, value in rows:
        found.setdefault(variant, {})[split] = float(value)
    assert len(found) == 19
    assert {v: (r["train_200"], r["test"]) for v, r in found.items()} == original.ORIGINAL


@needs_study
def test_every_sentence_the_original_wrote_is_quoted_whole_and_tested():
    text = STUDY.read_text()
    sections = re.findall(r"#### (?:Insights|Puzzles)\n\n((?:- .*\n)+)", text)
    sentences = [s for block in sections for line in block.splitlines()
                 for s in re.split(r"(?<=[.?])\s+(?=[A-Z])", line[2:].strip())]
    quoted = {c.source for c in original.CLAIMS if c.source != original.TABLES}
    assert len(sentences) == 9
    for sentence in sentences:  # a quote may hold two sentences of one point (the puzzle's question pair)
        assert any(sentence in q for q in quoted), sentence
    assert all(q in text for q in quoted)
    assert {c.source for c in original.CLAIMS if c.comparison == "learning"} == {original.TABLES}  # it said nothing there


def test_claims_name_variants_the_original_ran_and_known_kinds():
    for claim in original.CLAIMS:
        named = claim.a if isinstance(claim.a, tuple) else (claim.a,)
        named += (claim.b,) if isinstance(claim.b, str) else ()
        if claim.kind != "epoch drop":  # that one reads every ResNet of the comparison's runs
            assert set(named) <= set(original.ORIGINAL), claim
        assert claim.kind in claims.CHECKS and claim.measure in ("test", "gap", "loss_curve", "train", "tau")


def test_kendall_tau_b():
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / (2 * 3) ** 0.5)  # one tie in x
    assert kendall_tau([1], [2]) is None and kendall_tau([1, 1], [2, 3]) is None


@pytest.mark.parametrize("x, y", [([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]),
                                  ([1, 1, 1, 2, 3, 3], [5, 1, 1, 2, 4, 3]),  # ties in both
                                  ([1, 1, 1, 1, 0.5, 0.2], [0.3, 0.4, 0.35, 0.5, 0.45, 0.6])])
def test_the_exact_permutation_distribution_is_brute_force_enumeration(x, y):
    brute = {}
    for order in permutations(range(len(y))):
        s = kendall_s(x, [y[i] for i in order])
        brute[s] = brute.get(s, 0) + 1
    assert kendall_null(x, y) == dict(sorted(brute.items()))
    test = kendall_test(x, y)
    s = kendall_s(x, y)
    assert test.p_below == pytest.approx(sum(n for v, n in brute.items() if v <= s) / math.factorial(len(y)))
    assert test.least_p_above == pytest.approx(brute[max(brute)] / math.factorial(len(y)))


def test_ties_cap_how_small_p_can_get():
    # 8 of 9 tied at 1.0: whatever the test top-1, S takes 9 values and p cannot fall below 1/9
    test = kendall_test([1.0] * 8 + [0.6], [0.60, 0.61, 0.62, 0.63, 0.64, 0.65, 0.66, 0.67, 0.70])
    assert test.least_p_below == pytest.approx(1 / 9) and test.p_below == pytest.approx(1 / 9)


def test_t_quantiles_and_pooled_spread():
    for df, value in ((1, 12.7062), (2, 4.3027), (12, 2.1788), (30, 2.0423)):
        assert t_quantile(0.975, df) == pytest.approx(value, abs=1e-4)
    sd, df = pooled_sd([[1.0, 3.0], [2.0, 2.0, 5.0], [7.0]])  # squares 2 + 6 over 1 + 2 df
    assert df == 3 and sd == pytest.approx((8 / 3) ** 0.5)
    assert pooled_sd([[1.0], [2.0]]) == (None, 0)


def run(root, variant, tests, train_200=1.0, settings=None, **config):
    for seed, acc in enumerate(tests):
        evals = {"train_200": [(100, train_200)], "test": [(50, acc - 0.1), (100, acc)]}
        write_run(root, variant, seed, evals, settings=settings or {"max_iter": 5000}, **config)


def card_of(root, comparison):
    metrics, runs = read_runs(root)
    card = claims.scorecard(measured(metrics, runs), comparison)
    return {r["tested_as"]: r for r in card.iter_rows(named=True)}


def row(card, start):
    (found,) = [r for k, r in card.items() if k.startswith(start)]
    return found


NOISE = [0.0, 0.004]  # seed offsets: each variant's seeds' std about 0.003


def test_differences_hold_fail_or_fall_within_noise_with_welch_per_pair(tmp_path):
    run(tmp_path, "vitn-12x256-8x8", [0.40 + d for d in NOISE])
    run(tmp_path, "vitn-12x256-8x8-ra", [0.35 + d for d in NOISE])  # clearly below: does not hold
    run(tmp_path, "vitn-12x256-8x8-dm", [0.45 + d for d in NOISE])  # clearly above: holds
    run(tmp_path, "vitn-12x256-8x8-lt", [0.37 + d for d in NOISE])  # below beyond the noise: no gain holds
    run(tmp_path, "vitn-12x256-8x8-ltv", [0.43 + d for d in NOISE])  # above by 0.03: the claim of no gain fails
    run(tmp_path, "resnet18", [0.60, 0.70])  # a noisy variant elsewhere widens no band of these pairs
    card = card_of(tmp_path, "models")
    best_ra = row(card, "best test top-1 of vitn-ra")
    assert best_ra["verdict"] == "does not hold" and best_ra["difference"] == pytest.approx(-0.05)
    assert best_ra["band"] == pytest.approx(t_quantile(0.975, 2) * (0.004 ** 2 / 2) ** 0.5)  # Welch, these two only
    assert "(t 95%, 2 seeds, df 2)" in best_ra["noise"] and best_ra["original"] == "vitn-ra 0.3877, vitn 0.3670"
    assert best_ra["p"] < best_ra["p_holm"] < 0.05 and best_ra["mde"] > best_ra["band"]
    assert row(card, "best test top-1 of vitn-dm")["verdict"] == "holds"
    assert row(card, "-lt (learns log 1/tau): best")["verdict"] == "holds"
    assert row(card, "-ltv (learns tau): best")["verdict"] == "does not hold"

    small = tmp_path / "small"  # a difference the seeds' spread covers
    run(small, "vitn-12x256-8x8", [0.40, 0.41])
    run(small, "vitn-12x256-8x8-dm", [0.405, 0.415])
    run(small, "vitn-12x256-8x8-lt", [0.402, 0.412])  # no gain, nor a loss the noise can tell
    assert row(card_of(small, "models"), "best test top-1 of vitn-dm")["verdict"] == "within noise"
    assert row(card_of(small, "models"), "-lt (learns log 1/tau): best")["verdict"] == "within noise"


def test_an_exact_replication_of_no_gain_holds(tmp_path):
    """The same test top-1 as vitn, seeds a point of a thousand apart: no gain (the old rule could
    only say "within noise" here, "holds" needing a significant loss)."""
    run(tmp_path, "vitn-12x256-8x8", [0.400, 0.401])
    run(tmp_path, "vitn-12x256-8x8-lt", [0.400, 0.401])
    lt = row(card_of(tmp_path, "models"), "-lt (learns log 1/tau): best")
    assert lt["verdict"] == "holds" and lt["difference"] == pytest.approx(0.0, abs=1e-12)
    assert "a gain under 0.01 counts as none" in lt["noise"]


def test_holms_correction_can_leave_a_lone_significant_row_within_noise(tmp_path):
    """Three rows of the models comparison with a p: one alone below 0.05 unadjusted, not after."""
    run(tmp_path, "vitn-12x256-8x8", [0.400, 0.410, 0.405])
    run(tmp_path, "vitn-12x256-8x8-dm", [0.413, 0.423, 0.419])  # +0.0133, p about 0.03
    run(tmp_path, "vitn-12x256-8x8-ra", [0.40, 0.44, 0.38])  # noisy: a large p
    card = card_of(tmp_path, "models")
    dm = row(card, "best test top-1 of vitn-dm")
    assert dm["p"] < 0.05 < dm["p_holm"] and dm["verdict"] == "within noise", dm
    shown = scorecard_text.scorecard_markdown(measured(*read_runs(tmp_path)), "models")
    assert f"{dm['p']:.2g} ({dm['p_holm']:.2g})" in shown and "| p (Holm)" in shown and "| mde" in shown


def test_convergence_is_read_off_the_training_loss(tmp_path):
    for seed in (0, 1, 2):
        for variant, scale in (("vitn-12x256-8x8", 1.0), ("vitn-12x256-8x8-ra", 0.8)):
            write_run(tmp_path, variant, seed, {"test": [(100, 0.4)]}, settings={"max_iter": 5000},
                      train=[(s, scale * (2.0 - s / 100) + 0.01 * seed) for s in range(10, 101, 10)])
    conv = row(card_of(tmp_path, "models"), "convergence")
    assert conv["verdict"] == "holds" and conv["difference"] > 0 and conv["original"] == "its figure only (no number)"


def test_runs_shorter_than_the_originals_are_not_comparable_and_rivals_missing_are_said(tmp_path):
    run(tmp_path, "vitn-12x256-8x8", [0.40, 0.41], settings={"max_iter": 200})
    run(tmp_path, "vitn-12x256-8x8-ra", [0.30, 0.31], settings={"max_iter": 200})
    ra = row(card_of(tmp_path, "models"), "best test top-1 of vitn-ra")
    assert ra["verdict"] == "not comparable: 200 of 5,000 steps" and "at these steps: does not hold" in ra["noise"]
    assert "200 steps (original 5,000)" in ra["conditions"] and "2 seeds (original 1)" in ra["conditions"]
    assert "synthetic (original cifar100)" in ra["conditions"]
    partly = tmp_path / "partly"
    run(partly, "toy-dilated", [0.20, 0.21])
    run(partly, "resnet18", [0.60, 0.61])
    toy = row(card_of(partly, "models"), "toy-dilated below every other model")
    assert toy["verdict"] == "partly measured: 1 of 11" and "on these rivals: holds" in toy["noise"]


def test_the_originals_own_numbers_pass_its_own_rules(tmp_path):
    """Calibration: every variant at the original's table numbers (two identical seeds: no noise,
    so each rule decides on the values), its temperatures at its stated values: no sentence of the
    original may come out "does not hold"."""
    for variant, (train_200, test) in original.ORIGINAL.items():
        run(tmp_path, variant, [test, test], train_200=train_200)
    for variant, (tau, spread) in original.ORIGINAL_TAU.items():
        for seed in (0, 1):
            write_taus(tmp_path / "taus", variant, seed, [tau - spread, tau, tau + spread], max_iter=5000)
    verdicts = {}
    for comparison in ("resnets", "learning", "models"):
        for root in (tmp_path, tmp_path / "taus"):
            for r in card_of(root, comparison).values():
                if r["verdict"] != "not measured":
                    verdicts[r["tested_as"]] = r["verdict"]
    words = {c.tested_as for c in original.CLAIMS if c.source != original.TABLES}
    judged = {k: v for k, v in verdicts.items() if k in words}
    assert len(judged) >= 9, judged  # overfitting, inverse, MixStyle, relative, diagonal, temperature x 6
    assert not [k for k, v in judged.items() if v == "does not hold"], judged
    assert not [k for k, v in judged.items() if v != "holds"], judged  # and with no noise each holds


# train_200 and test top-1 per variant of the original's resnets figure
_FIGURE = dict(zip(original._FIGURE_RESNETS, [(1.0, 0.60), (0.99, 0.61), (0.97, 0.62), (0.95, 0.63), (0.93, 0.64),
                                            (0.91, 0.65), (0.89, 0.66), (0.87, 0.67), (0.85, 0.68), (0.83, 0.69),
                                            (0.81, 0.70)]))


def test_lower_train_with_higher_test_is_an_exact_permutation_test(tmp_path):
    for variant, (train_200, test) in _FIGURE.items():
        run(tmp_path / "inverse", variant, [test, test + 0.002], train_200=train_200)
        run(tmp_path / "ties", variant, [test], train_200=1.0 if variant != "resnet18-ms3" else 0.6)
        run(tmp_path / "none", variant, [test], train_200=[0.9, 0.8, 0.95, 0.85, 0.99, 0.82, 0.93, 0.88, 0.91, 0.84,
                                                           0.97][list(_FIGURE).index(variant)])
    inverse = row(card_of(tmp_path / "inverse", "resnets"), "Kendall tau")
    assert inverse["verdict"] == "holds" and inverse["here"] == "tau -1.00 over 11"
    assert inverse["p"] == pytest.approx(1 / math.factorial(11))
    assert inverse["original"] == "tau -0.72 over 11, p = 0.001"
    # 10 of 11 tied at 1.0: even a perfect ordering cannot reach p <= 0.05, so no verdict either way
    ties = row(card_of(tmp_path / "ties", "resnets"), "Kendall tau")
    assert ties["verdict"] == "not judged"
    assert "no ordering of these values reaches 0.05 (p ≥ 0.091 at best)" in ties["noise"]
    none = row(card_of(tmp_path / "none", "resnets"), "Kendall tau")
    assert none["verdict"] == "within noise" and 0.05 < none["p"] < 0.95


def test_overfitting_and_mixstyle_are_judged_on_the_clean_gap(tmp_path):
    for variant in original._PLAIN_RESNETS:
        run(tmp_path, variant, [0.60, 0.604])  # gap 0.398
    for level, train_200 in ((1, 0.90), (2, 0.88), (3, 0.86)):  # each level narrower by 0.10 to 0.14
        run(tmp_path, f"resnet18-ms{level}", [0.60, 0.604], train_200=train_200)
    card = card_of(tmp_path, "resnets")
    overfits = row(card, "every ResNet without MixStyle")
    assert overfits["verdict"] == "holds" and overfits["difference"] == pytest.approx(0.398 - 0.1)
    assert overfits["original"] == "least 0.6247 (gn) of 6"
    (ms,) = [r for r in card.values() if r["claim"] == original.MIXSTYLE]  # one row for the one sentence
    assert ms["verdict"] == "holds" and ms["difference"] == pytest.approx(0.12) and "margin 0.0398" in ms["noise"]
    assert ms["band"] < 0.02  # the levels' own spread (0.04 apart) is the method's, not noise
    assert ms["here"] == "ms1-3 0.2780 (ms1 0.2980, ms2 0.2780, ms3 0.2580), resnet18 0.3980"
    assert ms["original"] == "ms1-3 0.4505 (ms1 0.5982, ms2 0.5299, ms3 0.2233), resnet18 0.6461"

    same = tmp_path / "same"  # MixStyle's gap as the baseline's: it does not narrow it
    for variant in ("resnet18", *original.MIXSTYLES):
        run(same, variant, [0.60, 0.604])
    (ms,) = [r for r in card_of(same, "resnets").values() if r["claim"] == original.MIXSTYLE]
    assert ms["verdict"] == "does not hold"

    fits_nothing = tmp_path / "under-fit"  # no overfitting to alleviate: MixStyle is not judged
    for variant in ("resnet18", "resnet18-ms3"):
        run(fits_nothing, variant, [0.60, 0.604], train_200=0.62)
    card = card_of(fits_nothing, "resnets")
    (ms,) = [r for r in card.values() if r["claim"] == original.MIXSTYLE]
    assert ms["verdict"] == "not judged"
    assert row(card, "every ResNet without MixStyle")["verdict"] == "does not hold"


def write_curve(root, variant, seed, drop_at_epoch_end, rng):
    """A falling training loss logged every 2 steps, 20 steps an epoch; optionally 15% lower
    after each epoch end (the original's puzzle), with a little noise."""
    rows = []
    for s in range(2, 201, 2):
        epoch = (s - 1) // 20  # a row at step s is the mean of steps s-2 and s-1
        loss = 2.0 * math.exp(-s / 300) * (0.85 ** epoch if drop_at_epoch_end else 1.0)
        rows.append((s, loss * (1 + 0.01 * rng.uniform(-1, 1))))
    write_run(root, variant, seed, {"test": [(200, 0.5)]}, train=rows, steps_per_epoch=20)


def test_the_epoch_end_drop_against_the_mid_epoch_placebo(tmp_path):
    import random
    rng = random.Random(0)
    for variant in ("resnet18", "resnet18-gn", "resnet34"):
        for seed in (0, 1):
            write_curve(tmp_path / "drops", variant, seed, True, rng)
            write_curve(tmp_path / "smooth", variant, seed, False, rng)
    drops = row(card_of(tmp_path / "drops", "resnets"), "its premise")
    assert drops["verdict"] == "holds" and drops["difference"] > 0.1 and "(6 runs)" in drops["here"]
    smooth = row(card_of(tmp_path / "smooth", "resnets"), "its premise")
    assert smooth["verdict"] == "within noise" and abs(smooth["difference"]) < 0.02
    one = tmp_path / "one"
    write_curve(one, "resnet18", 0, True, rng)
    assert row(card_of(one, "resnets"), "its premise")["verdict"] == "not judged"


def write_taus(root, variant, seed, layers, max_iter=5000):
    run_dir = write_run(root, variant, seed, {"test": [(100, 0.4)]}, train=[(100, 1.0)],
                        settings={"max_iter": max_iter})
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 100, "split": "train", "time": 10, **{f"tau/{i}": t for i, t in enumerate(layers)},
                            "tau_mean": 0.0}) + "\n")  # the per-layer values win over a logged mean


def test_the_learned_temperature_is_its_value_across_layers(tmp_path):
    write_taus(tmp_path, "vitn-12x256-8x8-lt", 0, [0.86, 0.90, 0.94])
    write_taus(tmp_path, "vitn-12x256-8x8-lt", 1, [0.88, 0.90, 0.92])
    write_taus(tmp_path, "vitn-12x256-8x8-ltv", 0, [0.70, 0.72, 0.74])
    write_taus(tmp_path, "vitn-12x256-8x8-ltv", 1, [0.72, 0.74, 0.76])
    write_taus(tmp_path, "vitn-12x256-8x8-ltv", 2, [0.71, 0.73, 0.75])  # three seeds: df 2 can reach p < 0.05
    card = card_of(tmp_path, "models")
    lt = row(card, "-lt (learns log 1/tau): final temperature (mean over seeds) within")
    assert lt["verdict"] == "holds" and lt["here"] == "0.900 ± 0.0300 across layers"
    assert lt["original"] == "0.900 ± 0.0407 across layers" and lt["difference"] == pytest.approx(0.0407)
    assert row(card, "-ltv (learns tau): final temperature (mean over seeds) within")["verdict"] == "does not hold"
    for name in ("-lt (learns log 1/tau)", "-ltv (learns tau)"):
        assert row(card, f"{name}: final temperature (mean across layers) below")["verdict"] == "holds"

    near = tmp_path / "near"  # just outside the original's spread, by less than the seeds' own noise
    write_taus(near, "vitn-12x256-8x8-ltv", 0, [0.84] * 3)
    write_taus(near, "vitn-12x256-8x8-ltv", 1, [0.85] * 3)
    write_taus(near, "vitn-12x256-8x8-lt", 0, [0.80] * 3)  # one seed, outside: no noise to judge by
    card = card_of(near, "models")
    assert row(card, "-ltv (learns tau): final temperature (mean over seeds) within")["verdict"] == "within noise"
    assert row(card, "-lt (learns log 1/tau): final temperature (mean over seeds) within")["verdict"] == "not judged"


def test_rank_agreement_says_when_too_few_variants_can_tell(tmp_path):
    run(tmp_path, "resnet18", [0.60, 0.62, 0.61])
    run(tmp_path, "resnet18-aug", [0.70, 0.71, 0.705])
    run(tmp_path, "resnet18-clr1e-4", [0.55, 0.56, 0.555])
    here = measured(*read_runs(tmp_path))
    assert claims.agreement_text(here, "learning") == ("Kendall tau +1.00 over 3 variants: too few to tell "
                                                       "(p cannot go below 0.17)")
    card = card_of(tmp_path, "learning")
    assert row(card, "Augmentation gives the best")["verdict"] == "holds"
    assert row(card, "A constant learning rate")["verdict"] == "holds"
    for k, variant in enumerate(original._PLAIN_RESNETS[1:] + ("resnet18-ms1",)):  # the original's order, mostly
        run(tmp_path, variant, [0.50 + 0.01 * k, 0.505 + 0.01 * k])
    text = claims.agreement_text(measured(*read_runs(tmp_path)), "resnets")
    assert text.startswith("Kendall tau") and "over 7 variants, p = " in text


def test_summary_prints_the_overview_and_every_scorecard(tmp_path, capsys):
    run(tmp_path, "resnet18", [0.60, 0.62], train_200=0.99)
    run(tmp_path, "resnet18-ms2", [0.66, 0.67], train_200=0.9)
    assert main(["summary", "--runs-dir", str(tmp_path), "--scorecard"]) == 0
    out = capsys.readouterr().out
    assert "## Scorecard overview (dataset synthetic)" in out and "## Scorecard: resnets (dataset synthetic)" in out
    assert "| The Mix-style method &#91;1&#93; helps alleviate this overfitting clearly." in out
    assert "| MixStyle (ms2) above the baseline on test" in out and "ms2 0.3851, resnet18 0.3539" in out


def test_the_notebook_section_names_its_dataset_and_groups(tmp_path):
    run(tmp_path, "resnet18", [0.60, 0.62])
    metrics, runs = read_runs(tmp_path)
    text = scorecard_text.section(metrics, runs, "resnets", "synthetic")
    assert text.startswith("## Replication scorecard") and "| the original's words" in text
    assert "| read off the original's tables" in text and scorecard_text.NOTE in text
    assert "No runs to check" in scorecard_text.section(metrics, runs, "resnets", "cifar100")


@pytest.mark.parametrize("runs_dir", ["artifacts/runs-h200", "artifacts/runs"])
def test_the_readme_scorecard_tables_are_the_commands_output(runs_dir, capsys):
    assert main(["summary", "--runs-dir", str(REPO / runs_dir), "--scorecard"]) == 0
    out = capsys.readouterr().out
    overview = out.split("## Scorecard overview")[1].split("\n\n")[1]
    assert overview in (REPO / "README.md").read_text(), f"regenerate the README's table for {runs_dir}"


def test_a_variants_runs_at_other_settings_do_not_speak_for_it(tmp_path):
    """Two seeds of resnet18 at 100 steps and one stray 20-step run: the claims see the two."""
    from nbkit.analysis.measures import measured

    for seed, acc in ((0, 0.40), (1, 0.42)):
        write_run(tmp_path, "resnet18", seed, {"train_200": [(100, 0.9)], "test": [(100, acc)]},
                  settings={"max_iter": 100})
    write_run(tmp_path, "resnet18", 0, {"train_200": [(20, 0.1)], "test": [(20, 0.05)]}, settings={"max_iter": 20})
    here = measured(*read_runs(tmp_path))
    assert sorted(here.values("resnet18", "test")) == [0.40, 0.42]


@pytest.mark.parametrize("comparison", ["resnets", "learning", "models"])
def test_the_scorecard_renders_as_tables_in_marimo_whatever_the_quotes_hold(comparison):
    """The original's words hold footnote marks ("[2]") that marimo's markdown read as LaTeX
    (\\[ ... \\]) once backslash-escaped, which cut the table: every row must stay a table row."""
    mo = pytest.importorskip("marimo")
    here = measured(*read_runs(REPO / "artifacts" / "runs-h200"))
    text = scorecard_text.scorecard_markdown(here, comparison)
    html = mo.md(text).text
    assert "marimo-tex" not in html and "arithmatex" not in html
    rows = [l for l in text.splitlines() if l.startswith("| ") and not l.startswith("| :")]
    assert html.count("<tr>") == len(rows)
