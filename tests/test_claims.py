"""The replication scorecard: the original's numbers as its tables give them, and a verdict per claim."""

import re

import pytest

from nbkit import claims
from nbkit.cli import main
from nbkit.comparisons import COMPARISONS
from nbkit.reader import read_runs

from .conftest import REPO
from .helpers import write_run

STUDY = REPO.parent / "shared" / "reference" / "original-study.md"


@pytest.mark.skipif(not STUDY.exists(), reason="the original study's text is in ../shared/reference")
def test_original_numbers_are_the_original_tables():
    rows = re.findall(r"\| logs/cifar100/([\w.-]+)/\d+ +\| (train_200|test) +\| +\d+ \| +([\d.]+) \|", STUDY.read_text())
    found = {}
    for variant, split, value in rows:
        found.setdefault(variant, {})[split] = float(value)
    assert len(found) == 19
    assert {v: (r["train_200"], r["test"]) for v, r in found.items()} == claims.ORIGINAL


def test_every_claim_names_members_of_its_comparison():
    for claim in claims.CLAIMS:
        members = COMPARISONS[claim.comparison].variants
        named = claim.a if isinstance(claim.a, tuple) else (claim.a,)
        named += (claim.b,) if isinstance(claim.b, str) else ()
        assert set(named) <= set(members), claim
        assert claim.kind in ("above", "no better", "best", "worst", "fits", "inverse", "smaller gap", "tau below")


def test_kendall_tau_b():
    assert claims.kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    assert claims.kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert claims.kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / (3 * 2) ** 0.5)  # one tie in x
    assert claims.kendall_tau([1], [2]) is None and claims.kendall_tau([1, 1], [2, 3]) is None
    assert claims.tau_noise(9) == pytest.approx(1.96 * (46 / 648) ** 0.5)


def test_a_weak_rank_correlation_is_within_noise(tmp_path):
    resnets = ["resnet18", "resnet18-tnc", "resnet18-wonorm", "resnet18-pcnorm"]
    for variant, (train_200, test) in zip(resnets, [(0.99, 0.60), (0.98, 0.62), (0.97, 0.61), (0.96, 0.63)]):
        run(tmp_path, variant, [test], train_200=train_200)
    metrics, runs = read_runs(tmp_path)
    card = {r["claim"]: r for r in claims.scorecard(claims.measured(metrics, runs), "resnets").iter_rows(named=True)}
    inverse = card["Models with lower training accuracy have larger test accuracy"]
    assert inverse["difference"] == pytest.approx(-4 / 6) and inverse["spread"] == pytest.approx(claims.tau_noise(4))
    assert inverse["verdict"] == "within noise"  # -0.67 over 4 variants: chance can do that


def run(root, variant, tests, train_200=1.0):
    for seed, acc in enumerate(tests):
        write_run(root, variant, seed, {"train_200": [(100, train_200)], "test": [(100, acc)]})


def test_verdicts_from_the_runs(tmp_path):
    run(tmp_path, "resnet18", [0.60, 0.62], train_200=0.99)
    run(tmp_path, "resnet18-aug", [0.70, 0.71], train_200=0.72)  # best, and narrows the gap
    run(tmp_path, "resnet18-clr1e-4", [0.61, 0.63])  # 'worst' by 0.01: inside resnet18's 0.02 spread
    metrics, runs = read_runs(tmp_path)
    card = {r["claim"]: r for r in claims.scorecard(claims.measured(metrics, runs), "learning").iter_rows(named=True)}
    best = card["Augmentation gives the best test top-1"]
    assert best["verdict"] == "holds" and best["difference"] == pytest.approx(0.705 - 0.62)
    assert best["spread"] == pytest.approx(0.02) and best["original"] == "resnet18-aug 0.4077, next: resnet18 0.3539"
    worst = card["A constant learning rate of 1e-4 is worst"]
    assert worst["verdict"] == "within noise" and worst["difference"] == pytest.approx(0.61 - 0.62)
    assert card["Augmentation narrows the clean train_200 - test gap"]["verdict"] == "holds"
    models = claims.scorecard(claims.measured(metrics, runs), "models")
    assert set(models.filter(models["claim"] != "toy-dilated is far below every other model")["verdict"]) == {"not measured"}
    tau, n = claims.rank_agreement(claims.measured(metrics, runs), "learning")
    assert n == 3 and tau == pytest.approx(1 / 3)  # original: aug > resnet18 > clr; here: aug > clr > resnet18


def test_a_gain_against_the_claim_does_not_hold_and_no_gain_holds(tmp_path):
    run(tmp_path, "vitn-12x256-8x8", [0.40, 0.41])
    run(tmp_path, "vitn-12x256-8x8-ra", [0.35, 0.36])  # below vitn by more than the spread
    run(tmp_path, "vitn-12x256-8x8-lt", [0.405, 0.415])  # not above vitn beyond the spread
    metrics, runs = read_runs(tmp_path)
    card = {r["claim"]: r["verdict"] for r in claims.scorecard(claims.measured(metrics, runs), "models").iter_rows(named=True)}
    assert card["Relative positional attention improves on plain vitn"] == "does not hold"
    assert card["The learnable temperature (log 1/tau) does not help"] == "holds"


def test_summary_prints_the_scorecard(tmp_path, capsys):
    run(tmp_path, "resnet18", [0.60, 0.62], train_200=0.99)
    run(tmp_path, "resnet18-ms2", [0.66, 0.67], train_200=0.9)
    assert main(["summary", "--runs-dir", str(tmp_path), "--scorecard"]) == 0
    out = capsys.readouterr().out
    assert "## Scorecard: resnets (dataset synthetic)" in out
    assert "| MixStyle (ms2) helps: above the baseline" in out and "0.3851 - 0.3539 = +0.0312" in out
    assert "Kendall tau +1.00 over 2 variants" in out
