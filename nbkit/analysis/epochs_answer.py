"""The epochs comparison's answer in words, no stronger than its data.

Every test takes the seed (a run) as the unit: a run's epoch ends are averaged first, because
under one data order the same batches end every epoch and a run's ends share its luck. Four tests
weigh memorisation, each two-sided, Holm-adjusted together:

- the drop: each resnet18 run's drop at epoch ends minus its placebo (paired t over runs);
- held-out images: each run's training drop minus its held-out images' drop (paired t);
- no epochs: resnet18's drops against resnet18-replacement's (Welch's t);
- the disjoint half: resnet18-disjoint's loss at its switch to images never trained on, against
  its trend (one-sample t): memorisation says it rises to the held-out level.

"memorisation" needs all four in its direction and beyond chance; "consistent with memorisation"
all four in its direction, some within noise; a control beyond chance the other way says what it
rules out. The seen-count probe is shown as supporting evidence, not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from nbkit.analysis import drops, epochs
from nbkit.analysis.epochs import held_out_drops, paired_runs, run_values, seen_by_count, seen_gap, switch, verdicts
from nbkit.analysis.significance import ALPHA, TTest, holm, one_sample, welch

BASE = "resnet18"  # the variant whose staircase the original asked about (a fresh order each epoch)
REPLACEMENT, FIXED, DISJOINT = f"{BASE}-replacement", f"{BASE}-fixed", f"{BASE}-disjoint"
COUNT_WORDS = {"1": "once", "2": "twice", "3+": "three or more times"}
LARGE = 0.1  # a drop this large that is not beyond chance is called large, so the words match the chart


def pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:+.1f}%"


def against(drop: float | None) -> str:
    """A relative drop as the charts show it: the loss against its trend (-30%: 30% below it)."""
    return "—" if drop is None else pct(-drop)


def p_words(test: TTest | None, adjusted: float | None = None) -> str:
    if test is None:
        return "fewer than two runs: not tested"
    holm_words = "" if adjusted is None else f", Holm-adjusted {adjusted:.2g}"
    return f"p = {test.p:.2g}{holm_words}, {test.n} seeds"


@dataclass
class Control:
    """One test of the verdict: its name, the t test, whether its mean points memorisation's way,
    and the Holm-adjusted p (set once all are known)."""
    name: str
    test: TTest | None
    agrees: bool | None = None
    adjusted: float | None = None

    @property
    def beyond(self) -> bool:
        return self.test is not None and self.adjusted is not None and self.adjusted < ALPHA


def _sd_words(r: dict) -> str:
    std = r["boundary_drop_std"]
    return "" if std is None else f" ± {abs(std) * 100:.1f}% (standard deviation over {r['seeds']} seeds)"


def findings(metrics: pl.DataFrame, runs: pl.DataFrame) -> list[str]:
    """The findings as sentences (markdown), computed from the runs; the last one is the verdict."""
    points = epochs.without_switch(drops.boundary_drops(metrics, runs), runs)
    v = {r["variant"]: r for r in verdicts(points).iter_rows(named=True)}
    base = v.get(BASE)
    if base is None:
        return [f"No {BASE} run crosses an epoch boundary with rows on both sides yet: there is no drop to explain. "
                "`bash benchmarks/epochs_runs.sh` makes the CPU run set."]
    held_points = epochs.without_switch(held_out_drops(metrics, runs), runs)
    held = {r["variant"]: r["boundary_drop_mean"] for r in drops.drop_per_variant(held_points).iter_rows(named=True)}
    sw = switch(metrics, runs).filter(pl.col("variant") == DISJOINT)
    controls = {
        "drop": Control("the drop against the placebo", one_sample(
            [a - b for a, b in zip(run_values(points, BASE), run_values(points, BASE, "placebo_drop"))])),
        "held": Control("training against held-out drop", one_sample(paired_runs(points, held_points, BASE))),
        "replacement": Control("epochs against replacement", welch(run_values(points, BASE),
                                                                   run_values(points, REPLACEMENT))),
        "switch": Control("the rise at the disjoint switch", one_sample([-r for r in sw["relative"].drop_nulls()])),
    }
    for c in controls.values():
        c.agrees = None if c.test is None else c.test.mean > 0
    for c, p in zip(controls.values(), holm([c.test.p if c.test else None for c in controls.values()])):
        c.adjusted = p
    drop = controls["drop"]
    out = [f"**The drop.** {BASE} (a fresh order each epoch): just after each epoch end the training loss lies "
           f"{against(base['boundary_drop_mean'])}{_sd_words(base)} against the trend of the steps just before, over "
           f"{base['boundaries']} epoch ends; the placebo (the same statistic one window before each epoch end, where "
           f"nothing changes in the data) {against(base['placebo_drop_mean'])}. With the seed as the unit: "
           + _beyond_words(drop, base["boundary_drop_mean"])]
    if held.get(BASE) is not None:
        c = controls["held"]
        out.append(f"**Held-out images** (never trained on, scored at the same steps): their loss moved "
                   f"{against(held[BASE])} against the trend at the same epoch ends, the training loss "
                   f"{against(base['boundary_drop_mean'])}; the difference "
                   + ("is beyond chance" if c.beyond and c.agrees else "is within noise") + f" ({p_words(c.test, c.adjusted)}).")
    out += _control_words(v, controls, sw)
    out += _supporting_words(metrics, points, runs)
    out.append(_verdict(base, held.get(BASE), v, controls, sw, points))
    return out


def _beyond_words(c: Control, size: float | None) -> str:
    if c.test is None:
        return "one run: whether it stands out from chance needs two or more."
    if c.beyond and c.agrees:
        return f"beyond chance ({p_words(c.test, c.adjusted)})."
    large = size is not None and abs(size) >= LARGE
    return (("large, but " if large else "") + f"not beyond chance ({p_words(c.test, c.adjusted)}): the seeds differ "
            f"too much for {c.test.n} of them to tell it from the placebo (the smallest difference they would find "
            f"is {c.test.mde * 100:.0f} points).")


def _control_words(v: dict, controls: dict[str, Control], sw: pl.DataFrame) -> list[str]:
    out = []
    if (r := v.get(REPLACEMENT)) is not None:
        c = controls["replacement"]
        out.append(f"**No epochs** ({REPLACEMENT}: every batch drawn with replacement, so the data hold no boundary): "
                   f"at the same steps the loss lies {against(r['boundary_drop_mean'])}{_sd_words(r)} against its "
                   f"trend; smaller than with epochs "
                   + ("beyond chance" if c.beyond and c.agrees else "by an amount within noise")
                   + f" ({p_words(c.test, c.adjusted)}, Welch).")
    if not sw.is_empty():
        c = controls["switch"]
        held = sw["held"].drop_nulls()
        held_words = f"the held-out level is {held.mean():.3f}" if len(held) else "no held-out rows at the switch"
        out.append(f"**The disjoint half** ({DISJOINT}: one half of the training set up to the switch, then the other, "
                   f"never trained on): at the switch the loss "
                   f"{'rose' if sw['after'].mean() > sw['before'].mean() else 'fell'} to {sw['after'].mean():.3f} (from "
                   f"{sw['before'].mean():.3f} before it; the trend predicted {sw['trend'].mean():.3f}), "
                   f"{held_words}. The rise "
                   + ("is beyond chance" if c.beyond and c.agrees else "is not beyond chance" if c.agrees
                      else "is absent: the loss fell") + f" ({p_words(c.test, c.adjusted)}).")
    if (r := v.get(FIXED)) is not None:
        out.append(f"**One fixed order** ({FIXED}: every example comes back exactly one epoch after its last visit): "
                   f"{against(r['boundary_drop_mean'])}{_sd_words(r)} against the trend, placebo "
                   f"{against(r['placebo_drop_mean'])}: " + _stands_out(r))
    others = [(name, r) for name, r in v.items() if name not in (BASE, REPLACEMENT, FIXED, DISJOINT)]
    if others:
        out.append("**The other variants** (loss against trend at epoch ends): " + "; ".join(
            f"{name} {against(r['boundary_drop_mean'])} ({_stands_out(r).rstrip('.')})" for name, r in others) + ".")
    return out


def _stands_out(r: dict) -> str:
    if r["stands_out"] is None:
        return "one seed, not tested."
    size = "large, but " if not r["stands_out"] and abs(r["boundary_drop_mean"] or 0) >= LARGE else ""
    return (f"{'beyond' if r['stands_out'] else size + 'not beyond'} chance against the placebo with the seed as the "
            f"unit (p = {r['p']:.2g}, {r['seeds']} seeds).")


def _share(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.0f}%"


def _supporting_words(metrics: pl.DataFrame, points: pl.DataFrame, runs: pl.DataFrame) -> list[str]:
    """The seen-count probe and the dose-response across variants: shown as supporting evidence,
    not counted in the verdict."""
    out = []
    both, test = epochs.dose_response(metrics, runs)
    if test is not None and test.tau is not None:
        out.append(f"**Supporting evidence, not a test of the verdict: dose and response** (over the {test.n} variants "
                   "of these runs with epoch ends): the more a variant overfits (its best-step gap, best clean "
                   "train_200 - best test), the larger its drop at epoch ends: Kendall tau "
                   f"{test.tau:+.2f}, p = {test.p_above:.2g} (exact, one-sided).")
    predicted = epochs.predicted_drops(metrics, points, BASE, REPLACEMENT)
    if predicted:
        said = [f"{p['predicted'] * 100:.0f}% at the end of epoch {p['epoch']} ({BASE} measured: {_share(p['measured'])})"
                for p in predicted]
        out.append(f"**Supporting evidence, not a test: the seen-count prediction.** From {REPLACEMENT}'s loss by "
                   "visits, an end where every example goes from k - 1 to k visits should lower the loss by "
                   + "; ".join(said) + ".")
    gap = {r["variant"]: r for r in seen_gap(metrics).iter_rows(named=True)}.get(REPLACEMENT)
    if gap is None:
        return out
    counts = [r for r in seen_by_count(metrics).iter_rows(named=True) if r["variant"] == REPLACEMENT]
    held = "" if gap["held"] is None else f" (the held-out images, over the same steps: {gap['held']:.3f})"
    by_count = ("" if not counts else " By how often they were trained on, each against the never-trained-on "
                "examples of the same windows: " + ", ".join(
                    f"{COUNT_WORDS.get(c['group'], c['group'])} {c['ratio'] * 100:.0f}%" for c in counts)
                + " of their loss.")
    return out + [f"**Supporting evidence, not a test: seen against unseen at the same weights** ({REPLACEMENT}, second "
            f"half of each run, the same windows): examples trained on before had a mean loss of {gap['seen']:.3f}, "
            f"examples never trained on {gap['unseen']:.3f}{held}: {abs(gap['gap']) * 100:.0f}% "
            f"{'lower' if gap['gap'] >= 0 else 'higher'} for the seen ones." + by_count]


def _verdict(base: dict, held: float | None, v: dict, controls: dict[str, Control], sw: pl.DataFrame,
             points: pl.DataFrame) -> str:
    drop = controls["drop"]
    tests = "; ".join(f"{c.name}: {p_words(c.test, c.adjusted)}" for c in controls.values() if c.test is not None)
    tail = f" (Tests, seeds as the unit, two-sided, Holm-adjusted over {sum(c.test is not None for c in controls.values())}: {tests}.)"
    if not (drop.beyond and drop.agrees):
        return (f"**Verdict: the data do not settle it.** {BASE}'s drop at epoch ends ({against(base['boundary_drop_mean'])} "
                "against the trend) is not beyond chance against the placebo with the seed as the unit: more seeds "
                "would show whether it is there." + tail)
    if held is None:
        return ("**Verdict: the data do not settle it.** Without held-out images scored near epoch ends (settings "
                "val_size and boundary_eval) nothing tells memorisation from a change in the network itself at the "
                "boundary." + tail)
    if held >= base["boundary_drop_mean"] / 2:
        return (f"**Verdict: not memorisation alone.** The held-out images drop at epoch ends too ({against(held)} "
                f"against {against(base['boundary_drop_mean'])}): something changes at the boundary for images never "
                "trained on." + tail)
    repl, sw_c = v.get(REPLACEMENT), controls["switch"]
    if repl is not None and repl["stands_out"] and not controls["replacement"].beyond:
        return (f"**Verdict: not the data order.** Drawn with replacement, with no epoch boundary in the data, the loss "
                f"drops at the same steps about as much ({against(repl['boundary_drop_mean'])} against "
                f"{against(base['boundary_drop_mean'])}): something else happens at those steps." + tail)
    if repl is None:
        return (f"**Verdict: the data do not settle it.** The held-out images do not drop, but without a {REPLACEMENT} "
                "run (no boundary in the data order) nothing shows the drop needs one." + tail)
    if sw_c.beyond and not sw_c.agrees:
        return (f"**Verdict: not memorisation.** Switched to images never trained on, the loss fell "
                f"({against(sw['relative'].mean())} against its trend) instead of rising: what drops is in the "
                "network, not in what it remembers." + tail)
    judged = [c for c in controls.values() if c.test is not None]
    if any(c.agrees is False for c in judged):
        against_ = ", ".join(c.name for c in judged if c.agrees is False)
        return (f"**Verdict: the data do not settle it.** The drop is beyond chance, but {against_} points the other "
                "way (within noise)." + tail)
    missing = [c.name for c in controls.values() if c.test is None]
    noisy = [c.name for c in judged if not c.beyond]
    if not missing and not noisy:
        return ("**Verdict: memorisation: every control agrees, each beyond chance with seeds as the unit.** The "
                "training loss drops at epoch ends, the loss of images never trained on does not, drawing with "
                "replacement removes the drop, and switching to a never-seen half sends the loss up to the held-out "
                "level: the network fits the particular images it has trained on beyond what it learns of the task."
                + _recency_words(v, points) + tail)
    gaps = "; ".join([*(f"{name} is within noise" for name in noisy), *(f"{name} has no runs" for name in missing)])
    return ("**Verdict: consistent with memorisation.** Every control points memorisation's way, but not each beyond "
            f"chance with seeds as the unit: {gaps}." + _recency_words(v, points) + tail)


def _recency_words(v: dict, points: pl.DataFrame) -> str:
    """What the fixed order adds: whether the drop needs the reshuffle, where the runs can tell."""
    fixed = v.get(FIXED)
    if fixed is None:
        return ""
    words = (" With one fixed order, where every example comes back exactly one epoch after its last visit, the loss "
             f"lies {against(fixed['boundary_drop_mean'])} against the trend")
    if not fixed["stands_out"]:
        large = "large, but " if abs(fixed["boundary_drop_mean"] or 0) >= LARGE else ""
        return (words + f", {large}not beyond chance with the seed as the unit (p = {fixed['p']:.2g}): whether the "
                "drop needs the reshuffle is open.")
    test = welch(run_values(points, FIXED), run_values(points, BASE))
    if test is not None and test.p < ALPHA and test.mean < 0:
        return (words + f", clearly smaller (p = {test.p:.2g}, Welch, outside the verdict's four tests): the reshuffle adds to it, bringing back at an epoch's start examples last "
                "trained on half an epoch earlier on average, where an epoch's last batches hold examples last trained "
                "on one and a half epochs earlier, and the network remembers the recent ones better.")
    said = "" if test is None else f" (p = {test.p:.2g}, Welch)"
    return (words + f", not clearly smaller{said}: the drop stays without the reshuffle; after every epoch end the batches "
            "hold examples trained on once more, whatever their order.")
