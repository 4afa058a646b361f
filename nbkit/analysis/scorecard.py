"""The original study's claims, tested on the loaded runs: the replication scorecard.

Two groups of rows. *In the original's words*: a sentence of its README, quoted whole, how it is
tested here, and on the measure the sentence is about (overfitting: the clean train_200 - test
gap; convergence: the test curve; the temperature: its value). *Read off its tables*: orderings
its tables show that it did not state. Each row has the original's number, the one measured here,
the difference (positive: the claim's way), the noise it is judged against and a verdict.

Measures are per run, each run's best evaluation as the original's tables took it (best step
picked on test), then the mean over seeds. Noise: a difference of means is judged against a t
interval (95%) on the seeds' standard deviation of that measure pooled over every variant of the
run set with two or more seeds; a variant with one seed is not judged (a sign alone says nothing).
A rank correlation is judged by an exact permutation test that keeps ties (nbkit.analysis.significance).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from nbkit.analysis.measures import OVERFIT_GAP, Measured, short
from nbkit.analysis.significance import ALPHA, kendall_test, pooled_sd, t_quantile
from nbkit.design.comparisons import get_comparison

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
# the learned temperature at the end: mean and std across layers (the original's get_all_taus.py)
ORIGINAL_TAU = {"vitn-12x256-8x8-lt": (0.9, 0.0407), "vitn-12x256-8x8-ltv": (0.892, 0.0457)}
TABLES = "read off the original's tables"
CLEARLY = 0.1  # "clearly" narrower: by at least this fraction of the baseline's gap, beyond the noise
VERDICTS = ("holds", "does not hold", "within noise", "not judged", "not measured")

# the original README's sentences, verbatim (tests check them against its text)
OVERFITS = "It appears that the ResNet model severely overfits on the CIFAR100 dataset."
INVERSE = "Models with lower training accuracy have larger test accuracy."
MIXSTYLE = "The Mix-style method [1] helps alleviate this overfitting clearly."
PUZZLE = "Why does the loss suddenly drop periodically (after each epoch) for ResNet? Is it because of memorization?"
RELATIVE = ("The use of relative positional encoding [2] has been shown to improve model convergence and enhance "
            "testing performance when the model is trained for a specific number of steps.")
DIAGONAL = "Implementing a diagonal mask [3] results in a slight improvement in performance."
TEMPERATURE = ("The learnable temperature for attention [3] does not improve performance in this particular setting, "
               "although it does result in a decrease in temperature.")
TAU_VALUES = ("Specifically, for a log version implementation, the temperature is 0.9±0.0407, and for the vanilla "
              "version, the temperature is 0.892±0.0457.")


@dataclass(frozen=True)
class Claim:
    """kind: above / not above (a's measure above b's, or not beyond the noise), narrower (a's gap
    below b's by CLEARLY of it), exceeds / under (a's measure, or the least of several, above /
    below the number b), matches (a's temperature within the original's across-layer std of its
    value), inverse (across a, higher train_200 with lower test), epoch drop (the training loss
    drops more at epoch ends than mid-epoch, runs of a), best / worst (a's test top-1 above / below
    every other member of the comparison)."""
    comparison: str
    source: str  # the original's sentence, or TABLES
    tested_as: str
    kind: str
    a: str | tuple[str, ...]
    b: str | float | None = None
    measure: str = "test"


_PLAIN_RESNETS = ("resnet18", "resnet18-tnc", "resnet18-wonorm", "resnet18-pcnorm", "resnet18-gn", "resnet34")
# the original's resnets figure (its plot.sh --filter resnet): every ResNet it ran, augmentation and constant rate too
_FIGURE_RESNETS = (*_PLAIN_RESNETS[:5], "resnet18-ms1", "resnet18-ms2", "resnet18-ms3", "resnet34",
                   "resnet18-aug", "resnet18-clr1e-4")
_VITN = "vitn-12x256-8x8"


def _mixstyle(level: int) -> Claim:
    return Claim("resnets", MIXSTYLE, f"clean train_200 - test gap of ms{level} below that of resnet18, by a tenth "
                 "of it or more", "narrower", f"resnet18-ms{level}", "resnet18", "gap")


def _temperature() -> tuple[Claim, ...]:
    """The three temperature claims for each parametrisation, grouped by claim."""
    both = (("vitn-12x256-8x8-lt", "-lt (learns log 1/tau)"), ("vitn-12x256-8x8-ltv", "-ltv (learns tau)"))
    return (*(Claim("models", TEMPERATURE, f"{name}: best test top-1 not above that of vitn", "not above", v, _VITN)
              for v, name in both),
            *(Claim("models", TEMPERATURE, f"{name}: final temperature (mean across layers) below its start, 1",
                    "under", v, 1.0, "tau") for v, name in both),
            *(Claim("models", TAU_VALUES, f"{name}: final temperature within the original std across layers of "
                    "the original value", "matches", v, None, "tau") for v, name in both))


CLAIMS: tuple[Claim, ...] = (
    Claim("resnets", OVERFITS, f"every ResNet without MixStyle: clean train_200 - test gap above {OVERFIT_GAP}",
          "exceeds", _PLAIN_RESNETS, OVERFIT_GAP, "gap"),
    Claim("resnets", INVERSE, "Kendall tau between train_200 (as the original scored it) and test top-1 below 0, "
          "over the 11 ResNets of the figure of the original", "inverse", _FIGURE_RESNETS, None, "train"),
    *(_mixstyle(level) for level in (1, 2, 3)),
    Claim("resnets", PUZZLE, "its premise, that the loss drops after each epoch: the training loss falls further "
          "below its trend just after each epoch end than at mid-epoch points (relative drop, per run); whether it "
          "is memorisation is the epochs comparison's question", "epoch drop", get_comparison("resnets").variants),
    Claim("resnets", TABLES, "MixStyle (ms2) above the baseline on test", "above", "resnet18-ms2", "resnet18"),
    Claim("resnets", TABLES, "MixStyle after layer 1 (ms1) above the baseline on test", "above", "resnet18-ms1",
          "resnet18"),
    Claim("learning", TABLES, "Augmentation gives the best test top-1", "best", "resnet18-aug"),
    Claim("learning", TABLES, "A constant learning rate of 1e-4 is worst", "worst", "resnet18-clr1e-4"),
    Claim("models", RELATIVE, "convergence: mean test top-1 over the run of vitn-ra above that of vitn", "above",
          "vitn-12x256-8x8-ra", _VITN, "curve"),
    Claim("models", RELATIVE, "best test top-1 of vitn-ra above that of vitn", "above", "vitn-12x256-8x8-ra", _VITN),
    Claim("models", DIAGONAL, "best test top-1 of vitn-dm above that of vitn", "above", "vitn-12x256-8x8-dm", _VITN),
    *_temperature(),
    Claim("models", TABLES, "toy-dilated below every other model", "worst", "toy-dilated"),
)


def _verdict(diff: float, width: float, margin: float = 0.0) -> str:
    """The claim's way (diff > margin) beyond the noise, the other way beyond it, or neither."""
    return "holds" if diff - width > margin else "does not hold" if diff + width < margin else "within noise"


def _pair_check(claim: Claim, here: Measured, row: dict) -> None:
    """above, not above, narrower: a against b on the claim's measure."""
    a, b, m = claim.a, claim.b, claim.measure
    row["original"] = _original_pair(claim)
    ma, mb = here.mean(a, m), here.mean(b, m)
    if ma is None or mb is None:
        return
    diff = mb - ma if claim.kind == "narrower" else ma - mb
    row.update(here=f"{short(a)} {ma:.4f}, {short(b)} {mb:.4f}", difference=diff)
    width, row["noise"] = here.difference_band(m, a, b)
    if width is None:
        row["verdict"] = "not judged"
    elif claim.kind == "not above":  # no improvement: a above b beyond the noise contradicts it; below, holds
        row.update(band=width, verdict=_verdict(-diff, width))
    elif claim.kind == "narrower" and mb < OVERFIT_GAP:  # no overfitting to alleviate
        row.update(band=width, verdict="not judged",
                   noise=f"{short(b)} does not overfit here (gap below {OVERFIT_GAP}): nothing to narrow")
    else:
        margin = CLEARLY * mb if claim.kind == "narrower" else 0.0
        row.update(band=width, verdict=_verdict(diff, width, margin))
        if margin:
            row["noise"] += f"; margin {margin:.4f}"


def _original_pair(claim: Claim) -> str | None:
    a, b = claim.a, claim.b
    if claim.measure == "curve":
        return "its figure only (no number)"
    if a not in ORIGINAL or b not in ORIGINAL:
        return None
    value = (lambda v: ORIGINAL[v][0] - ORIGINAL[v][1]) if claim.measure == "gap" else (lambda v: ORIGINAL[v][1])
    return f"{short(a)} {value(a):.4f}, {short(b)} {value(b):.4f}"


def _extreme_check(claim: Claim, here: Measured, row: dict) -> None:
    """best / worst: a's test top-1 against the closest other member of the comparison."""
    best = claim.kind == "best"
    others = [v for v in get_comparison(claim.comparison).variants if v != claim.a]
    pick = max if best else min
    known = [v for v in others if v in ORIGINAL]
    if claim.a in ORIGINAL and known:
        rival = pick(known, key=lambda v: ORIGINAL[v][1])
        row["original"] = f"{short(claim.a)} {ORIGINAL[claim.a][1]:.4f}, {short(rival)} {ORIGINAL[rival][1]:.4f}"
    present = [v for v in others if here.mean(v, "test") is not None]
    mine = here.mean(claim.a, "test")
    if mine is None or not present:
        return
    rival = pick(present, key=lambda v: here.mean(v, "test"))
    theirs = here.mean(rival, "test")
    row.update(here=f"{short(claim.a)} {mine:.4f}, {short(rival)} {theirs:.4f}",
               difference=mine - theirs if best else theirs - mine)
    width, row["noise"] = here.difference_band("test", claim.a, rival)
    row.update(band=width, verdict="not judged" if width is None else _verdict(row["difference"], width))


def _level_check(claim: Claim, here: Measured, row: dict) -> None:
    """exceeds / under: a's measure (the least of several for exceeds) against the number b."""
    names = claim.a if isinstance(claim.a, tuple) else (claim.a,)
    m = claim.measure
    if m == "gap":
        known = [v for v in names if v in ORIGINAL]
        low = min(known, key=lambda v: ORIGINAL[v][0] - ORIGINAL[v][1])
        row["original"] = f"least {ORIGINAL[low][0] - ORIGINAL[low][1]:.4f} ({short(low)}) of {len(known)}"
    elif claim.a in ORIGINAL_TAU:
        row["original"] = "{:.3f} ± {:.4f} across layers".format(*ORIGINAL_TAU[claim.a])
    present = [v for v in names if here.mean(v, m) is not None]
    if not present:
        return
    v = min(present, key=lambda v: here.mean(v, m)) if claim.kind == "exceeds" else present[0]
    value = here.mean(v, m)
    diff = value - claim.b if claim.kind == "exceeds" else claim.b - value
    where = f" ({short(v)}) of {len(present)}" if len(names) > 1 else ""
    row.update(here=f"{'least ' if len(names) > 1 else ''}{value:.4f}{where}", difference=diff)
    width, row["noise"] = here.difference_band(m, v)
    row.update(band=width, verdict="not judged" if width is None else _verdict(diff, width))


def _matches_check(claim: Claim, here: Measured, row: dict) -> None:
    """a's final temperature within the original's std across layers of the original's value."""
    value, spread = ORIGINAL_TAU[claim.a]
    row["original"] = f"{value:.3f} ± {spread:.4f} across layers"
    tau = here.mean(claim.a, "tau")
    if tau is None:
        return
    sds = here.values(claim.a, "tau_sd")
    width, seeds = here.difference_band("tau", claim.a)
    off = abs(tau - value) - spread  # how far outside the original's spread (negative: inside)
    row.update(here=f"{tau:.3f}" + (f" ± {sum(sds) / len(sds):.4f} across layers" if sds else ""),
               difference=tau - value, band=spread,
               noise=f"±{spread:.4f} (the original's std across layers); the mean here {seeds}")
    if width is None:
        row["verdict"] = "holds" if off <= 0 else "not judged"
    else:
        row["verdict"] = "holds" if off <= 0 else "does not hold" if off > width else "within noise"


def _inverse_check(claim: Claim, here: Measured, row: dict) -> None:
    """Across the variants of a: Kendall tau between train_200 and test top-1, exact permutation test."""
    known = [v for v in claim.a if v in ORIGINAL]
    theirs = kendall_test([ORIGINAL[v][0] for v in known], [ORIGINAL[v][1] for v in known])
    row["original"] = f"tau {theirs.tau:+.2f} over {theirs.n}, p = {theirs.p_below:.2g}"
    present = [v for v in claim.a if here.mean(v, "train") is not None and here.mean(v, "test") is not None]
    if len(present) < 3:
        return
    test = kendall_test([here.mean(v, "train") for v in present], [here.mean(v, "test") for v in present])
    if test.tau is None:
        row.update(here=f"no tau over {len(present)}: every train_200 ties", noise="all tied",
                   verdict="not judged")
        return
    row.update(here=f"tau {test.tau:+.2f} over {test.n}", p=test.p_below,
               noise=f"p = {test.p_below:.2g} for tau below 0, {test.p_above:.2g} for above (exact permutation, "
                     "one-sided each)")
    if test.least_p_below > ALPHA:  # ties or too few variants: no pairing could reach significance
        row.update(noise=row["noise"] + f"; no ordering of these values reaches {ALPHA} (p ≥ "
                         f"{test.least_p_below:.2g} at best)", verdict="not judged")
    else:
        row["verdict"] = ("holds" if test.p_below <= ALPHA else "does not hold" if test.p_above <= ALPHA
                          else "within noise")


def _drop_check(claim: Claim, here: Measured, row: dict) -> None:
    """Per run: the mean relative drop at epoch ends minus that at mid-epoch points (the placebo);
    its mean over the runs of a, against a t interval over those runs."""
    row["original"] = "seen in its loss figure (no number)"
    drops = here.drops.filter(pl.col("variant").is_in(list(claim.a)) & pl.col("boundary_drop").is_not_null()
                              & pl.col("placebo_drop").is_not_null())
    drops = (drops.with_columns((pl.col("boundary_drop") - pl.col("placebo_drop")).alias("d"))
             .filter(pl.col("d").is_finite()))
    if drops.is_empty():
        return
    d, n = drops["d"].to_list(), drops.height
    mean = sum(d) / n
    row.update(here=f"{drops['boundary_drop'].mean():.3f} at epoch ends, {drops['placebo_drop'].mean():.3f} "
                    f"mid-epoch ({n} runs)", difference=mean)
    if n < 2:
        row.update(noise="one run", verdict="not judged")
        return
    sd, df = pooled_sd([d])
    width = t_quantile(1 - ALPHA / 2, df) * sd / n ** 0.5
    row.update(band=width, noise=f"±{width:.4f} (t 95% over runs, df {df})", verdict=_verdict(mean, width))


CHECKS = {"above": _pair_check, "not above": _pair_check, "narrower": _pair_check, "best": _extreme_check,
          "worst": _extreme_check, "exceeds": _level_check, "under": _level_check, "matches": _matches_check,
          "inverse": _inverse_check, "epoch drop": _drop_check}


def check(claim: Claim, here: Measured) -> dict:
    """One claim against the measured runs: original, here, difference, noise, verdict."""
    if claim.kind not in CHECKS:
        raise ValueError(f"unknown claim kind {claim.kind!r}; expected one of {', '.join(CHECKS)}")
    row = {"comparison": claim.comparison, "group": "tables" if claim.source == TABLES else "words",
           "claim": claim.source, "tested_as": claim.tested_as, "original": None, "here": None, "difference": None,
           "band": None, "p": None, "noise": None, "verdict": "not measured"}
    CHECKS[claim.kind](claim, here, row)
    return row


SCHEMA = {"comparison": pl.String, "group": pl.String, "claim": pl.String, "tested_as": pl.String,
          "original": pl.String, "here": pl.String, "difference": pl.Float64, "band": pl.Float64, "p": pl.Float64,
          "noise": pl.String, "verdict": pl.String}


def scorecard(here: Measured, comparison: str) -> pl.DataFrame:
    """Every claim of the comparison, checked against one dataset's runs (`measured`)."""
    return pl.DataFrame([check(c, here) for c in CLAIMS if c.comparison == comparison], schema=SCHEMA)


def rank_agreement(here: Measured, comparison: str):
    """Kendall's test between the original's ordering of the comparison's variants by test top-1
    and the one measured here, over the variants both have (None with fewer than two)."""
    both = [v for v in get_comparison(comparison).variants if v in ORIGINAL and here.mean(v, "test") is not None]
    if len(both) < 2:
        return None
    return kendall_test([ORIGINAL[v][1] for v in both], [here.mean(v, "test") for v in both])


def agreement_text(here: Measured, comparison: str) -> str:
    test = rank_agreement(here, comparison)
    if test is None or test.tau is None:
        return "not measured (fewer than two variants both have)"
    said = f"Kendall tau {test.tau:+.2f} over {test.n} variants"
    if test.least_p_above > ALPHA:
        return f"{said}: too few to tell (p cannot go below {test.least_p_above:.2g})"
    return f"{said}, p = {test.p_above:.2g}"


def of_dataset(metrics: pl.DataFrame, runs: pl.DataFrame, dataset: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    if runs.is_empty() or metrics.is_empty():
        return metrics, runs
    return metrics.filter(pl.col("dataset") == dataset), runs.filter(pl.col("dataset") == dataset)
