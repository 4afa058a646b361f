"""The tests the scorecard judges with, in pure Python: Kendall's tau-b with an exact, tie-aware
permutation test; Student's t quantiles; and the seeds' spread pooled over variants.

Kendall's test: under no relation every pairing of the ys with the xs is equally likely, so the
null distribution of S (concordant minus discordant pairs) is counted exactly over all n!
pairings. Ties in either list stay tied under every pairing, which is what caps how far S can
go (8 of 9 variants tied at a train_200 of 1.0 leave S nine values): the smallest p-value the
data allow is reported, so a test that cannot reach significance says so.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import lru_cache
from itertools import product

ALPHA = 0.05  # one-sided for a claimed direction; a band is the two-sided 95% interval


def _sign(v: float) -> int:
    return (v > 0) - (v < 0)


def kendall_s(x: list[float], y: list[float]) -> int:
    """S = concordant - discordant pairs; pairs tied in x or in y count neither."""
    return sum(_sign(x[i] - x[j]) * _sign(y[i] - y[j]) for i in range(len(x)) for j in range(i + 1, len(x)))


def _tie_pairs(values: list[float]) -> int:
    return sum(c * (c - 1) // 2 for c in Counter(values).values())


def kendall_tau(x: list[float], y: list[float]) -> float | None:
    """Kendall's tau-b (ties handled); None when either list is all ties or has fewer than two items."""
    n0 = len(x) * (len(x) - 1) // 2
    denominator = math.sqrt((n0 - _tie_pairs(x)) * (n0 - _tie_pairs(y)))
    return kendall_s(x, y) / denominator if denominator else None


def kendall_null(x: list[float], y: list[float]) -> dict[int, int]:
    """S -> how many of the n! pairings of y with x give it (the exact permutation distribution).
    It depends only on the sizes of the tie groups, in order (see _null)."""
    return dict(_null(tuple(c for _, c in sorted(Counter(x).items())), tuple(c for _, c in sorted(Counter(y).items()))))


@lru_cache(maxsize=64)
def _null(groups: tuple[int, ...], counts: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """The xs' tie groups (sizes, ascending x) are filled in turn with multisets of the ys' value
    classes (sizes, ascending y); S gains, for each value placed, the earlier-placed values below
    it minus those above it. Pairings are counted by the ways to pick the items (binomials per
    class), times the orders within each x group (a common factor). States: the multisets used
    so far, at most 2^n."""
    layer: dict[tuple[int, ...], dict[int, int]] = {tuple(0 for _ in counts): {0: 1}}
    for size in groups:
        nxt: dict[tuple[int, ...], dict[int, int]] = defaultdict(lambda: defaultdict(int))
        for used, dist in layer.items():
            for pick in _picks(size, [c - u for c, u in zip(counts, used)]):
                gain = sum(m * (sum(used[:j]) - sum(used[j + 1:])) for j, m in enumerate(pick) if m)
                ways = math.prod(math.comb(c - u, m) for c, u, m in zip(counts, used, pick))
                target = nxt[tuple(u + m for u, m in zip(used, pick))]
                for s, w in dist.items():
                    target[s + gain] += w * ways
        layer = nxt
    (dist,) = layer.values()
    orders = math.prod(math.factorial(size) for size in groups)
    return tuple((s, w * orders) for s, w in sorted(dist.items()))


def _picks(size: int, left: list[int]):
    """Every way to take `size` items from value classes holding `left` items each."""
    for pick in product(*(range(min(size, n) + 1) for n in left)):
        if sum(pick) == size:
            yield pick


@dataclass(frozen=True)
class KendallTest:
    tau: float | None
    n: int
    p_below: float  # P(S <= observed) under no relation: evidence for a negative relation
    p_above: float  # P(S >= observed): evidence for a positive one
    least_p_below: float  # the smallest p_below any pairing of these values could give
    least_p_above: float


def kendall_test(x: list[float], y: list[float]) -> KendallTest:
    """tau-b and its exact one-sided permutation p-values (see kendall_null)."""
    null, s = kendall_null(x, y), kendall_s(x, y)
    total = sum(null.values())
    below = sum(w for v, w in null.items() if v <= s) / total
    above = sum(w for v, w in null.items() if v >= s) / total
    return KendallTest(kendall_tau(x, y), len(x), below, above, null[min(null)] / total, null[max(null)] / total)


def t_quantile(q: float, df: float) -> float:
    """Student's t quantile (0.5 < q < 1), by bisection on the CDF."""
    lo, hi = 0.0, 1e4
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < q else (lo, mid)
    return (lo + hi) / 2


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for t >= 0: 1 - I_{df/(df+t^2)}(df/2, 1/2) / 2."""
    return 1 - 0.5 * _betainc(df / 2, 0.5, df / (df + t * t))


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta I_x(a, b) (Numerical Recipes' continued fraction, betacf)."""
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    if x >= (a + 1) / (a + b + 2):  # the fraction converges fast on this side only
        return 1 - _betainc(b, a, 1 - x)
    tiny = 1e-300
    c, d = 1.0, 1 / ((1 - (a + b) * x / (a + 1)) or tiny)
    h = d
    for m in range(1, 300):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 / ((1 + numerator * d) or tiny)
            c = (1 + numerator / c) or tiny
            h *= c * d
        if abs(c * d - 1) < 1e-15:
            break
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x))
    return front * h / a


def pooled_sd(groups: list[list[float]]) -> tuple[float | None, int]:
    """The within-group standard deviation pooled over every group of two or more values (seeds of
    one variant), and its degrees of freedom; (None, 0) when no group has two."""
    groups = [g for g in groups if len(g) > 1]
    df = sum(len(g) - 1 for g in groups)
    if not df:
        return None, 0
    ss = sum(sum((v - sum(g) / len(g)) ** 2 for v in g) for g in groups)
    return math.sqrt(ss / df), df


def band(sd: float, df: int, *counts: int) -> float:
    """Half the two-sided 95% interval of a mean (one count) or a difference of means (two)."""
    return t_quantile(1 - ALPHA / 2, df) * sd * math.sqrt(sum(1 / n for n in counts))


# --- seeds as the unit: t tests, Holm's correction, the smallest effect a test can see ------------

POWER = 0.8  # the minimum detectable effect: found beyond chance four times in five


@dataclass(frozen=True)
class TTest:
    """A mean (one sample, or a difference of two means), its standard error, degrees of freedom,
    the two-sided p of no difference, and the smallest effect these seeds would find (see mde)."""
    mean: float
    se: float
    df: float
    n: int  # observations (runs); for two samples the smaller group's
    p: float
    mde: float


def t_sf(t: float, df: float) -> float:
    """P(T >= t), any t."""
    return 1 - t_cdf(t, df) if t >= 0 else t_cdf(-t, df)


def mde(se: float, df: float) -> float:
    """The smallest true effect a two-sided test at ALPHA finds with probability POWER, for this
    standard error and df (the normal-approximation formula with t quantiles)."""
    return (t_quantile(1 - ALPHA / 2, df) + t_quantile(POWER, df)) * se


def t_test(mean: float, se: float, df: float, n: int) -> TTest:
    """A TTest from a mean, its standard error and df (two-sided p; se 0: p 0 unless the mean is 0)."""
    if se <= 0:
        p = 0.0 if mean else 1.0
    else:
        p = min(1.0, 2 * t_sf(abs(mean / se), df))
    return TTest(mean, se, df, n, p, mde(se, df) if se > 0 else 0.0)


def _mean_var(xs: list[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    return m, sum((x - m) ** 2 for x in xs) / (len(xs) - 1)


def one_sample(values: list[float]) -> TTest | None:
    """Student's t of mean(values) against 0 (paired differences: one per run); None under two values."""
    if len(values) < 2:
        return None
    m, v = _mean_var(values)
    return t_test(m, math.sqrt(v / len(values)), len(values) - 1, len(values))


def welch(a: list[float], b: list[float]) -> TTest | None:
    """Welch's t of mean(a) - mean(b) (each its own variance, Welch-Satterthwaite df); None when
    either has fewer than two values."""
    if len(a) < 2 or len(b) < 2:
        return None
    (ma, va), (mb, vb) = _mean_var(a), _mean_var(b)
    qa, qb = va / len(a), vb / len(b)
    se = math.sqrt(qa + qb)
    df = (qa + qb) ** 2 / (qa ** 2 / (len(a) - 1) + qb ** 2 / (len(b) - 1)) if qa + qb > 0 else len(a) + len(b) - 2
    return t_test(ma - mb, se, df, min(len(a), len(b)))


def holm(ps: list[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None stays None): the family's error rate stays at ALPHA."""
    known = sorted((p, i) for i, p in enumerate(ps) if p is not None)
    out: list[float | None] = [None] * len(ps)
    running, m = 0.0, len(known)
    for rank, (p, i) in enumerate(known):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out
