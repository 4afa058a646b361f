"""The original study's claims, tested on the loaded runs: the replication scorecard.

Two groups of rows. *In the original's words*: a sentence of its README, quoted whole, how it is
tested here, and on the measure the sentence is about (overfitting: the best-step gap, best clean
train_200 - best test; convergence: the training loss over the run, as the original's figure; the
temperature: its value), one row per sentence (MixStyle's levels beside its one row). *Read off its
tables*: orderings its tables show that it did not state. Each row has the original's number, the
one measured here, the difference (positive: the claim's way), its test, the conditions that differ
from the original's, and a verdict.

Measures are per run, each run's best evaluation as the original's tables took it (best step
picked on test), then the mean over seeds. The seed is the unit: a difference of two variants is
Welch's t (each its own spread: pooling over variants let one noisy variant set every band), a
variant against a number Student's t; a claim of no gain is a non-superiority test (a gain under
NO_GAIN counts as none); the temperature's value is judged by the seeds' spread against the
original's stated ±. Each row's two-sided p is Holm-adjusted over the comparison's rows with a p,
and the verdict read off the adjusted one; mde is the smallest effect the seeds would find (four
times in five). A variant with one seed is not judged (a sign alone says nothing). A rank
correlation is judged by an exact permutation test that keeps ties (nbkit.analysis.significance).
Calibration: the original's own numbers, run through every rule, give none of its sentences a
"does not hold" (tests/analysis/test_scorecard.py).
"""

from __future__ import annotations

import math

import polars as pl

from nbkit.analysis.claims import (
    CLAIMS,
    CLEARLY,
    NO_GAIN,
    ORIGINAL,
    ORIGINAL_STEPS,
    ORIGINAL_TAU,
    TABLES,
    Claim,
)
from nbkit.analysis.measures import OVERFIT_GAP, Measured, short
from nbkit.analysis.significance import ALPHA, TTest, holm, kendall_test, one_sample, t_quantile, t_sf
from nbkit.design.comparisons import get_comparison
from nbkit.design.variants import VARIANTS


def _judge(row: dict, test: TTest | None, margin: float = 0.0, why: str = "") -> None:
    """A difference (the claim's way positive) with its seed-level t test: p of it against the
    margin (two-sided; Holm's correction and the verdict follow in `scorecard`), the 95% band, and
    the smallest effect these seeds would find (mde). No test (one seed): not judged."""
    if test is None:
        row["verdict"] = "not judged"
        return
    t95 = t_quantile(1 - ALPHA / 2, test.df) * test.se
    z = (test.mean - margin) / test.se if test.se > 0 else (math.inf if test.mean > margin else
                                                             -math.inf if test.mean < margin else 0.0)
    p = 1.0 if z == 0 else 0.0 if math.isinf(z) else min(1.0, 2 * t_sf(abs(z), test.df))
    row.update(difference=test.mean, band=t95, p=p, mde=test.mde, _way=z > 0,
               noise=f"±{t95:.4f} (t 95%, {test.n} seeds, df {test.df:.3g})" + (f"; {why}" if why else ""))


def _pair_check(claim: Claim, here: Measured, row: dict) -> None:
    """above / below / not above / narrower: a (one variant, or several as one sample) against b
    on the claim's measure, Welch's t over seeds."""
    a, b, m = claim.a, claim.b, claim.measure
    row["original"] = _original_pair(claim)
    ma, mb = _mean_of(here, a, m), here.mean(b, m)
    if ma is None or mb is None:
        return
    levels = "" if not isinstance(a, tuple) else " (" + ", ".join(
        f"{short(v)} {here.mean(v, m):.4f}" for v in a if here.mean(v, m) is not None) + ")"
    row["here"] = f"{_name(a)} {ma:.4f}{levels}, {short(b)} {mb:.4f}"
    if isinstance(a, tuple):  # one method at several levels: the mean of the levels' means
        test = here.levels_difference(m, b, a)
    elif claim.kind in ("narrower", "below", "not above"):
        test = here.difference(m, b, a)
    else:
        test = here.difference(m, a, b)
    if test is None:
        row.update(difference=(mb - ma) if claim.kind in ("narrower", "below", "not above") else ma - mb,
                   noise=f"one seed ({', '.join(short(v) for v in _names(a) + (b,) if len(here.values(v, m)) < 2)})",
                   verdict="not judged")
    elif claim.kind == "narrower" and mb < OVERFIT_GAP:  # no overfitting to alleviate
        row.update(difference=test.mean, verdict="not judged",
                   noise=f"{short(b)} does not overfit here (gap below {OVERFIT_GAP}): nothing to narrow")
    elif claim.kind == "narrower":
        _judge(row, test, CLEARLY * mb, f"margin {CLEARLY * mb:.4f} (a tenth of {short(b)}'s gap)")
    elif claim.kind == "not above":  # non-superiority: a gain under NO_GAIN is no gain
        _judge(row, test, -NO_GAIN, f"a gain under {NO_GAIN} counts as none")
    else:
        _judge(row, test)


def _mean_of(here: Measured, a, m: str) -> float | None:
    values = here.values_of(a, m)
    return sum(values) / len(values) if values else None


def _names(a) -> tuple[str, ...]:
    return a if isinstance(a, tuple) else (a,)


def _name(a) -> str:
    if not isinstance(a, tuple):
        return short(a)
    return f"{short(a[0])}-{short(a[-1])[-1]}" if all(v[:-1] == a[0][:-1] for v in a) else "+".join(map(short, a))


def _original_pair(claim: Claim) -> str | None:
    a, b = claim.a, claim.b
    if claim.measure in ("curve", "loss_curve"):
        return "its figure only (no number)"
    if any(v not in ORIGINAL for v in (*_names(a), b)):
        return None
    value = (lambda v: ORIGINAL[v][0] - ORIGINAL[v][1]) if claim.measure == "gap" else (lambda v: ORIGINAL[v][1])
    mean = sum(value(v) for v in _names(a)) / len(_names(a))
    levels = "" if not isinstance(a, tuple) else " (" + ", ".join(f"{short(v)} {value(v):.4f}" for v in a) + ")"
    return f"{_name(a)} {mean:.4f}{levels}, {short(b)} {value(b):.4f}"


def _extreme_check(claim: Claim, here: Measured, row: dict) -> None:
    """best / worst: a's test top-1 against the closest other member of the comparison measured
    here; with rivals missing, partly measured."""
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
    row["here"] = f"{short(claim.a)} {mine:.4f}, {short(rival)} {theirs:.4f}"
    test = here.difference("test", claim.a, rival) if best else here.difference("test", rival, claim.a)
    if test is None:
        row.update(difference=mine - theirs if best else theirs - mine, noise="one seed", verdict="not judged")
    else:
        _judge(row, test)
    if len(present) < len(others):
        row["_partly"] = f"partly measured: {len(present)} of {len(others)}"


def _level_check(claim: Claim, here: Measured, row: dict) -> None:
    """exceeds / under: a's measure (the least of several for exceeds) against the number b,
    Student's t over that variant's seeds."""
    names = _names(claim.a)
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
    where = f" ({short(v)}) of {len(present)}" if len(names) > 1 else ""
    row["here"] = f"{'least ' if len(names) > 1 else ''}{value:.4f}{where}"
    test = here.against(m, v, claim.b, 1.0 if claim.kind == "exceeds" else -1.0)
    if test is None:
        row.update(difference=value - claim.b if claim.kind == "exceeds" else claim.b - value,
                   noise=f"one seed ({short(v)})", verdict="not judged")
    else:
        _judge(row, test)


def _matches_check(claim: Claim, here: Measured, row: dict) -> None:
    """a's final temperature (mean over seeds) against the original's value: holds when the seeds
    put it within the original's stated ± (its std across layers) beyond chance, does not hold when
    they put it outside beyond chance; the tolerance of the mean is the seeds' spread, not the layers'."""
    value, spread = ORIGINAL_TAU[claim.a]
    row["original"] = f"{value:.3f} ± {spread:.4f} across layers"
    tau = here.mean(claim.a, "tau")
    if tau is None:
        return
    sds = here.values(claim.a, "tau_sd")
    row["here"] = f"{tau:.3f}" + (f" ± {sum(sds) / len(sds):.4f} across layers" if sds else "")
    # inside the original's ± by how much: spread - |tau - value| per seed, its mean tested against 0
    test = one_sample([spread - abs(x - value) for x in here.values(claim.a, "tau")])
    if test is None:
        row.update(difference=spread - abs(tau - value), noise="one seed", verdict="not judged")
    else:
        _judge(row, test, 0.0, f"difference: how far inside the original's ±{spread:.4f}")


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
    below = test.p_below <= test.p_above
    row.update(here=f"tau {test.tau:+.2f} over {test.n}", p=test.p_below if below else test.p_above, _way=below,
               noise=f"p = {test.p_below:.2g} for tau below 0, {test.p_above:.2g} for above (exact permutation, "
                     "one-sided each)")
    if test.least_p_below > ALPHA:  # ties or too few variants: no pairing could reach significance
        row.update(noise=row["noise"] + f"; no ordering of these values reaches {ALPHA} (p ≥ "
                         f"{test.least_p_below:.2g} at best)", verdict="not judged", p=None)


def _drop_check(claim: Claim, here: Measured, row: dict) -> None:
    """Per run: the mean relative drop at epoch ends minus that at the placebo points;
    its mean over the runs of a, against a t interval over those runs."""
    row["original"] = "seen in its loss figure (no number)"
    drops = here.drops.filter(pl.col("variant").is_in(list(claim.a)) & pl.col("boundary_drop").is_not_null()
                              & pl.col("placebo_drop").is_not_null())
    drops = (drops.with_columns((pl.col("boundary_drop") - pl.col("placebo_drop")).alias("d"))
             .filter(pl.col("d").is_finite()))
    if drops.is_empty():
        return
    d, n = drops["d"].to_list(), drops.height
    row.update(here=f"{drops['boundary_drop'].mean():.3f} at epoch ends, {drops['placebo_drop'].mean():.3f} "
                    f"at the placebo ({n} runs)", difference=sum(d) / n)
    if n < 2:
        row.update(noise="one run", verdict="not judged")
        return
    _judge(row, one_sample(d))


CHECKS = {"above": _pair_check, "below": _pair_check, "not above": _pair_check, "narrower": _pair_check,
          "best": _extreme_check, "worst": _extreme_check, "exceeds": _level_check, "under": _level_check, "matches": _matches_check,
          "inverse": _inverse_check, "epoch drop": _drop_check}


def check(claim: Claim, here: Measured) -> dict:
    """One claim against the measured runs: original, here, difference, its test (p, band, mde),
    the conditions; the verdict is set by `scorecard` once Holm's correction is known."""
    if claim.kind not in CHECKS:
        raise ValueError(f"unknown claim kind {claim.kind!r}; expected one of {', '.join(CHECKS)}")
    row = {"comparison": claim.comparison, "group": "tables" if claim.source == TABLES else "words",
           "claim": claim.source, "tested_as": claim.tested_as, "original": None, "here": None, "difference": None,
           "band": None, "p": None, "p_holm": None, "mde": None, "noise": None, "verdict": "not measured",
           "conditions": conditions(here, claim)}
    CHECKS[claim.kind](claim, here, row)
    return row


SCHEMA = {"comparison": pl.String, "group": pl.String, "claim": pl.String, "tested_as": pl.String,
          "original": pl.String, "here": pl.String, "difference": pl.Float64, "band": pl.Float64, "p": pl.Float64,
          "p_holm": pl.Float64, "mde": pl.Float64, "noise": pl.String, "verdict": pl.String, "conditions": pl.String}


def scorecard(here: Measured, comparison: str) -> pl.DataFrame:
    """Every claim of the comparison, checked against one dataset's runs (`measured`): Holm's
    correction over the rows that have a p, the verdict from the adjusted p (holds / does not hold:
    beyond chance the claim's way or the other; within noise), then what the conditions allow:
    runs shorter than the original's 5,000 steps are not comparable (the epoch-end premise apart),
    a row judged on some of its rivals is partly measured."""
    rows = [check(c, here) for c in CLAIMS if c.comparison == comparison]
    judged = [r for r in rows if r["p"] is not None and r["verdict"] == "not measured"]
    for r, adjusted in zip(judged, holm([r["p"] for r in judged])):
        r["p_holm"] = adjusted
        r["verdict"] = ("holds" if r["_way"] else "does not hold") if adjusted < ALPHA else "within noise"
    steps = here.setting.get("steps")
    for claim, r in zip([c for c in CLAIMS if c.comparison == comparison], rows):
        if "_partly" in r and r["verdict"] not in ("not measured",):
            r["noise"] = f"{r['noise'] or ''}; on these rivals: {r['verdict']}".lstrip("; ")
            r["verdict"] = r["_partly"]
        if steps is not None and steps < ORIGINAL_STEPS and claim.kind != "epoch drop" and r["here"] is not None:
            r["noise"] = f"{r['noise'] or ''}; at these steps: {r['verdict']}".lstrip("; ")
            r["verdict"] = f"not comparable: {steps:,} of {ORIGINAL_STEPS:,} steps"
    return pl.DataFrame([{k: r[k] for k in SCHEMA} for r in rows], schema=SCHEMA)


def conditions(here: Measured, claim: Claim) -> str:
    """What differs from the original's setting (CIFAR-100, fp32, its schedule, 5,000 steps, one seed)."""
    s, out = here.setting, []
    if s.get("datasets") and s["datasets"] != ["cifar100"]:
        out.append(f"{', '.join(s['datasets'])} (original cifar100)")
    if s.get("precisions") and s["precisions"] != ["fp32"]:
        out.append(f"{', '.join(s['precisions'])} (original fp32)")
    if s and not s.get("original_schedule"):
        out.append("nbkit's schedule (original: its optimiser's first rate 1e-3, one step late)")
    if s.get("steps") is not None and s["steps"] != ORIGINAL_STEPS:
        out.append(f"{s['steps']:,} steps (original {ORIGINAL_STEPS:,})")
    names = [v for v in (*_names(claim.a), *((claim.b,) if isinstance(claim.b, str) else ())) if v in VARIANTS]
    if names and (n := here.seeds(*names)) != 1:
        out.append(f"{n} seeds (original 1)")
    return "; ".join(out) or "as the original"


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
