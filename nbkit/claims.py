"""The original study's claims, in one table beside the comparisons, and a scorecard that checks
each against the loaded runs: the original's numbers, the ones measured here, the difference,
the seeds' spread and a verdict; plus the rank agreement of the two orderings of variants.

The original's numbers are its own tables (CIFAR-100, 5,000 steps, one run per variant, best
step picked on the test set); here the same measure is used: each run's best test top-1, the
mean over seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl

from . import tables
from .comparisons import COMPARISONS, get_comparison
from .escape import md_text
from .reader import read_runs
from .summary import markdown_table

# variant -> (best train_200 top-1, best test top-1) in the original's two tables
ORIGINAL: dict[str, tuple[float, float]] = {
    "resnet18-tnc": (1.0, 0.3477), "resnet18-wonorm": (1.0, 0.3572), "resnet18-pcnorm": (1.0, 0.3519),
    "resnet18": (1.0, 0.3539), "resnet18-clr1e-4": (1.0, 0.3184), "resnet34": (1.0, 0.3338),
    "resnet18-gn": (0.995, 0.3703), "resnet18-ms1": (0.975, 0.3768), "resnet18-ms2": (0.915, 0.3851),
    "vitn-12x256-8x8-ra": (0.74, 0.3877), "vitn-12x256-8x8-dm": (0.635, 0.3714),
    "vitn-12x256-8x8": (0.605, 0.367), "vitn-12x256-8x8-lt": (0.6, 0.3653), "vitn-12x256-8x8-ltv": (0.6, 0.3653),
    "resnet18-ms3": (0.585, 0.3617), "vit-aux-3x4x256-8x8": (0.455, 0.3575), "vit-12x256-8x8": (0.455, 0.345),
    "resnet18-aug": (0.405, 0.4077),  # its train_200 was scored on augmented images
    "toy-dilated": (0.19, 0.1886),
}
# the learned temperature at the end, mean +- std across layers (the original's get_all_taus.py)
ORIGINAL_TAU = {"vitn-12x256-8x8-lt": 0.9, "vitn-12x256-8x8-ltv": 0.892}
NEAR_ONE = 0.95  # train_200 top-1 at or above this counts as fitting the subset
VERDICTS = ("holds", "does not hold", "within noise", "not measured")


@dataclass(frozen=True)
class Claim:
    """kind: above (a's test top-1 above b's), best / worst (a above / below every other member),
    no better (a not above b), fits (every variant in a reaches NEAR_ONE on train_200), inverse
    (across a, higher train_200 goes with lower test: Kendall's tau below 0), smaller gap (a's clean
    train_200 - test gap below b's), tau below (a's learned temperature ends below b)."""
    comparison: str
    text: str
    kind: str
    a: str | tuple[str, ...]
    b: str | float | None = None


_RESNETS_FIT = ("resnet18", "resnet18-tnc", "resnet18-wonorm", "resnet18-pcnorm", "resnet18-gn", "resnet18-ms1",
                "resnet34")
_RESNETS = ("resnet18", "resnet18-tnc", "resnet18-wonorm", "resnet18-pcnorm", "resnet18-gn", "resnet18-ms1",
            "resnet18-ms2", "resnet18-ms3", "resnet34")

CLAIMS: tuple[Claim, ...] = (
    Claim("resnets", "ResNets without strong MixStyle fit train_200 almost perfectly: severe overfitting",
          "fits", _RESNETS_FIT),
    Claim("resnets", "Models with lower training accuracy have larger test accuracy", "inverse", _RESNETS),
    Claim("resnets", "MixStyle (ms2) helps: above the baseline", "above", "resnet18-ms2", "resnet18"),
    Claim("resnets", "MixStyle after layer 1 (ms1) is above the baseline", "above", "resnet18-ms1", "resnet18"),
    Claim("learning", "Augmentation gives the best test top-1", "best", "resnet18-aug"),
    Claim("learning", "Augmentation narrows the clean train_200 - test gap", "smaller gap", "resnet18-aug", "resnet18"),
    Claim("learning", "A constant learning rate of 1e-4 is worst", "worst", "resnet18-clr1e-4"),
    Claim("models", "Relative positional attention improves on plain vitn", "above", "vitn-12x256-8x8-ra", "vitn-12x256-8x8"),
    Claim("models", "The diagonal mask helps slightly", "above", "vitn-12x256-8x8-dm", "vitn-12x256-8x8"),
    Claim("models", "The learnable temperature (log 1/tau) does not help", "no better", "vitn-12x256-8x8-lt", "vitn-12x256-8x8"),
    Claim("models", "The learnable temperature (tau) does not help", "no better", "vitn-12x256-8x8-ltv", "vitn-12x256-8x8"),
    Claim("models", "The learned temperature falls below 1 (log 1/tau)", "tau below", "vitn-12x256-8x8-lt", 1.0),
    Claim("models", "The learned temperature falls below 1 (tau)", "tau below", "vitn-12x256-8x8-ltv", 1.0),
    Claim("models", "toy-dilated is far below every other model", "worst", "toy-dilated"),
)


def kendall_tau(x: list[float], y: list[float]) -> float | None:
    """Kendall's tau-b of two paired lists (ties handled); None with fewer than two untied pairs."""
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = _sign(x[i] - x[j]), _sign(y[i] - y[j])
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif dx == dy:
                concordant += 1
            else:
                discordant += 1
    n = concordant + discordant
    denominator = math.sqrt((n + ties_x) * (n + ties_y))
    return (concordant - discordant) / denominator if denominator else None


def tau_noise(n: int) -> float:
    """How far Kendall's tau over n pairs strays from 0 when there is no relation: 1.96 standard
    deviations of its normal approximation under independence, sqrt(2(2n+5) / (9n(n-1)))."""
    return 1.96 * math.sqrt(2 * (2 * n + 5) / (9 * n * (n - 1)))


def _sign(v: float) -> int:
    return (v > 0) - (v < 0)


def measured(metrics: pl.DataFrame, runs: pl.DataFrame) -> dict[str, dict]:
    """variant -> what the claims need: best test (mean, min, max, seeds), best and final clean
    train_200, the clean gap and the final learned temperature, each a mean over seeds."""
    table = tables.per_variant(metrics, runs)
    if table.is_empty():
        return {}
    out = {r["variant"]: r for r in table.iter_rows(named=True) if r["best_test_mean"] is not None}
    if "tau_mean" in metrics.columns:
        taus = (metrics.filter((pl.col("split") == "train") & pl.col("tau_mean").is_not_null())
                .sort("step").group_by("path", "variant").agg(pl.col("tau_mean").last())
                .group_by("variant").agg(pl.col("tau_mean").mean()))
        for variant, tau in taus.iter_rows():
            if variant in out:
                out[variant]["tau"] = tau
    return out


def _noise(*rows: dict) -> float | None:
    """The seeds' spread: the widest max - min of best test top-1 among the rows with two or more seeds."""
    spreads = [r["best_test_max"] - r["best_test_min"] for r in rows if r["seeds"] > 1]
    return max(spreads) if spreads else None


def _judge(diff: float, noise: float | None, claim_is_no_gain: bool = False) -> str:
    if noise is not None and abs(diff) <= noise:
        return "holds" if claim_is_no_gain else "within noise"
    if claim_is_no_gain:
        return "holds" if diff < 0 else "does not hold"
    return "holds" if diff > 0 else "does not hold"


def check(claim: Claim, here: dict[str, dict]) -> dict:
    """One claim against the measured variants: original, here, difference, spread, verdict."""
    row = {"comparison": claim.comparison, "claim": claim.text, "original": None, "here": None,
           "difference": None, "spread": None, "verdict": "not measured"}
    test = lambda v: here[v]["best_test_mean"]
    kind = claim.kind
    if kind in ("above", "no better"):
        a, b = claim.a, claim.b
        row["original"] = _pair(ORIGINAL, a, b, 1)
        if a in here and b in here:
            diff, noise = test(a) - test(b), _noise(here[a], here[b])
            row.update(here=f"{test(a):.4f} - {test(b):.4f}", difference=diff, spread=noise,
                       verdict=_judge(diff, noise, kind == "no better"))
    elif kind in ("best", "worst"):
        members = get_comparison(claim.comparison).variants
        others = [v for v in members if v != claim.a]
        row["original"] = _extreme(kind, claim.a, [v for v in others if v in ORIGINAL],
                                   lambda v: ORIGINAL[v][1], claim.a in ORIGINAL)
        present = [v for v in others if v in here]
        if claim.a in here and present:
            rival = (max if kind == "best" else min)(present, key=test)
            diff = test(claim.a) - test(rival) if kind == "best" else test(rival) - test(claim.a)
            noise = _noise(here[claim.a], here[rival])
            row.update(here=f"{claim.a} {test(claim.a):.4f}, {'next' if kind == 'best' else 'lowest other'}: "
                            f"{rival} {test(rival):.4f}", difference=diff, spread=noise, verdict=_judge(diff, noise))
    elif kind == "fits":
        known = [v for v in claim.a if v in ORIGINAL]
        row["original"] = f"lowest {min(ORIGINAL[v][0] for v in known):.3f} over {len(known)} variants"
        present = [v for v in claim.a if v in here and here[v]["best_train_200_mean"] is not None]
        if present:
            low = min(present, key=lambda v: here[v]["best_train_200_mean"])
            value = here[low]["best_train_200_mean"]
            row.update(here=f"lowest {value:.3f} ({low}) over {len(present)} variants", difference=value - NEAR_ONE,
                       verdict="holds" if value >= NEAR_ONE else "does not hold")
    elif kind == "inverse":
        known = [v for v in claim.a if v in ORIGINAL]
        row["original"] = _tau_text(kendall_tau([ORIGINAL[v][0] for v in known], [ORIGINAL[v][1] for v in known]), len(known))
        present = [v for v in claim.a if v in here and here[v]["best_train_200_mean"] is not None]
        tau = kendall_tau([here[v]["best_train_200_mean"] for v in present], [test(v) for v in present])
        if tau is not None and len(present) >= 3:
            noise = tau_noise(len(present))
            row.update(here=_tau_text(tau, len(present)), difference=tau, spread=noise,
                       verdict="within noise" if abs(tau) <= noise else "holds" if tau < 0 else "does not hold")
    elif kind == "smaller gap":
        a, b = claim.a, claim.b
        row["original"] = "not measured (its train_200 of augmented runs was scored on augmented images)"
        gaps = [here[v].get("gap_mean") if v in here else None for v in (a, b)]
        if None not in gaps:  # a gap at or below 0 is no overfitting: nothing left to narrow
            diff = max(gaps[0], 0.0) - max(gaps[1], 0.0)
            row.update(here=f"gap {gaps[0]:.3f} against {gaps[1]:.3f}", difference=gaps[0] - gaps[1],
                       verdict="holds" if diff < 0 else "within noise" if diff == 0 else "does not hold")
    elif kind == "tau below":
        row["original"] = f"tau {ORIGINAL_TAU[claim.a]:.3f}" if claim.a in ORIGINAL_TAU else None
        tau = here.get(claim.a, {}).get("tau")
        if tau is not None:
            row.update(here=f"tau {tau:.3f}", difference=tau - claim.b, verdict="holds" if tau < claim.b else "does not hold")
    else:
        raise ValueError(f"unknown claim kind {kind!r}")
    return row


def _pair(table: dict, a: str, b: str, column: int) -> str | None:
    if a not in table or b not in table:
        return None
    x, y = table[a][column], table[b][column]
    return f"{x:.4f} - {y:.4f} = {x - y:+.4f}"


def _extreme(kind: str, a: str, others: list[str], value, known: bool) -> str | None:
    if not known or not others:
        return None
    rival = (max if kind == "best" else min)(others, key=value)
    return f"{a} {value(a):.4f}, {'next' if kind == 'best' else 'lowest other'}: {rival} {value(rival):.4f}"


def _tau_text(tau: float | None, n: int) -> str | None:
    return None if tau is None else f"Kendall tau {tau:+.2f} over {n} variants"


def scorecard(here: dict[str, dict], comparison: str) -> pl.DataFrame:
    """Every claim of the comparison, checked against what one dataset's runs measured (`measured`)."""
    rows = [check(c, here) for c in CLAIMS if c.comparison == comparison]
    schema = {"comparison": pl.String, "claim": pl.String, "original": pl.String, "here": pl.String,
              "difference": pl.Float64, "spread": pl.Float64, "verdict": pl.String}
    return pl.DataFrame(rows, schema=schema)


def rank_agreement(here: dict[str, dict], comparison: str) -> tuple[float | None, int]:
    """Kendall's tau between the original's ordering of the comparison's variants by test top-1 and
    the one measured here (`measured`), over the variants both have; and how many that is."""
    both = [v for v in get_comparison(comparison).variants if v in here and v in ORIGINAL]
    return kendall_tau([ORIGINAL[v][1] for v in both], [here[v]["best_test_mean"] for v in both]), len(both)


def scorecard_markdown(here: dict[str, dict], comparison: str) -> str:
    """The scorecard as a markdown table with a line on rank agreement (the note on what the
    numbers are is NOTE)."""
    card = scorecard(here, comparison)
    if card.is_empty():  # the epochs comparison answers a question the original asked, not a claim
        return "The original made no claim to check for this comparison."
    shown = card.with_columns(
        *(pl.col(c).map_elements(lambda v, f=f: "—" if v is None else format(v, f), return_dtype=pl.String, skip_nulls=False)
          for c, f in (("difference", "+.4f"), ("spread", ".4f"))),
        *(pl.col(c).fill_null("—") for c in ("original", "here")))
    tau, n = rank_agreement(here, comparison)
    agreement = (f"Rank agreement with the original's ordering by test top-1: Kendall tau {tau:+.2f} over {n} "
                 "variants both have." if tau is not None else
                 "Rank agreement with the original's ordering: not measured (fewer than two variants both have).")
    counts = ", ".join(f"{k} {v}" for k, v in card["verdict"].value_counts(sort=True).iter_rows())
    return "\n\n".join([f"{md_text(counts)}. {agreement}",
                        markdown_table(shown, ["claim", "original", "here", "difference", "spread", "verdict"], "lllrrl")])


NOTE = ("Numbers are best test top-1 per run (the best step picked on test, as the original did), mean over "
        "seeds; spread is the widest max - min across seeds (for a rank correlation: how far Kendall tau strays "
        "from 0 by chance, 95%); *within noise*: the difference is no larger than that spread. The original "
        "ran CIFAR-100 for 5,000 steps, one run per variant: compare orderings and signs, not the values, where "
        "these runs use another dataset or protocol.")


def of_dataset(metrics: pl.DataFrame, runs: pl.DataFrame, dataset: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    if runs.is_empty() or metrics.is_empty():
        return metrics, runs
    return metrics.filter(pl.col("dataset") == dataset), runs.filter(pl.col("dataset") == dataset)


def section(metrics: pl.DataFrame, runs: pl.DataFrame, comparison: str, dataset: str) -> str:
    """The notebook's and report's scorecard section (markdown) on one dataset's runs."""
    metrics, runs = of_dataset(metrics, runs, dataset)
    head = (f"## Replication scorecard\nDoes each claim the original made for this comparison hold on the "
            f"{md_text(dataset)} runs loaded here?\n\n")
    if runs.is_empty() or metrics.is_empty():
        return head + "No runs to check the claims against yet."
    return head + scorecard_markdown(measured(metrics, runs), comparison) + "\n\n" + NOTE


def scorecards_markdown(runs_dir, dataset: str | None = None) -> str:
    """Every comparison's scorecard on one dataset's runs (default: the dataset with most runs)."""
    metrics, runs = read_runs(runs_dir, dataset)
    if runs.is_empty() or metrics.is_empty():
        return f"No runs with metrics under {runs_dir}."
    dataset = dataset or runs.group_by("dataset").len().sort(["len", "dataset"], descending=[True, False])["dataset"][0]
    here = measured(*of_dataset(metrics, runs, dataset))
    return "\n\n".join([*(f"## Scorecard: {name} (dataset {md_text(dataset)})\n\n" + scorecard_markdown(here, name)
                           for name in COMPARISONS), NOTE])
