"""The epochs comparison's numbers: the original's open puzzle ("Why does the loss suddenly drop
periodically (after each epoch) for ResNet? Is it because of memorization?") answered from the
run logs. Pure Polars; the charts and the notebook's sections are nbkit.view.epochs_view's.

- `aligned`: every epoch boundary of every run overlaid, x = steps since the boundary, y = the
  loss against the trend fitted just before it (the drop statistic's own fit, nbkit.analysis.drops);
- `held_out_drops`: the drop statistic on the held-out images scored near epoch ends
  (`val_dense` rows, setting boundary_eval), which were never trained on;
- `seen_series` and `seen_gap`: the loss split by how many times the examples were trained on
  before (setting seen_probe), and under replacement sampling the gap at the same weights;
- `verdicts`: each variant's drop against its mid-epoch placebo; `findings`: the answer in words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import polars as pl

from nbkit.analysis import drops
from nbkit.analysis.steps import marks_near
from nbkit.rundir.schema import SEEN_GROUPS, seen_loss_column, seen_share_column

HELD_OUT = "val_dense"  # the held-out probe's rows (nbkit.training.trainer.evaluate_near_epoch_end)
ALIGNED_SCHEMA = {"path": pl.String, "variant": pl.String, "seed": pl.Int64, "split": pl.String,
                  "boundary": pl.Int64, "offset": pl.Float64, "loss": pl.Float64, "trend": pl.Float64,
                  "deviation": pl.Float64}
Z = 2.0  # a drop stands out when it exceeds the placebo by Z standard errors of the placebo


def _log_every(steps: list[int]) -> int:
    """The log interval, as nbkit.analysis.drops reads it: the median gap between logged steps."""
    gaps = sorted(b - a for a, b in zip(steps, steps[1:]) if b > a)
    return gaps[len(gaps) // 2] if gaps else 1


def _run_aligned(steps: list[int], losses: list[float], spe: int, window: int | None, means: bool) -> list[dict]:
    """One run's rows within a window of each boundary, against the line fitted to log(loss)
    before it. means: rows are means over the log interval (train), else point evaluations."""
    L = _log_every(steps)
    w = window or drops.default_window(spe, L)
    width = L if means else 1
    points = [(s - (width - 1) / 2, s, y) for s, y in zip(steps, losses) if y > 0]  # (x: the row's centre, step, loss)
    out = []
    for b in marks_near(steps, spe, w + width):  # the boundaries near a logged row: bounded by the rows
        near = [(x, s, y) for x, s, y in points if b - w < s - width + 1 and s <= b + w]
        before = [(x, math.log(y)) for x, s, y in near if s <= b]
        line = drops._fit_line(*zip(*before)) if len(before) >= drops.MIN_BEFORE else None
        if line is None:
            continue
        for x, s, y in near:
            trend = math.exp(line[0] * x + line[1])
            out.append({"boundary": b, "offset": x - b, "loss": y, "trend": trend, "deviation": y / trend - 1})
    return out


def aligned(metrics: pl.DataFrame, runs: pl.DataFrame, split: str = "train", window: int | None = None) -> pl.DataFrame:
    """Every boundary of every run overlaid: offset (steps since the boundary, a train row at its
    steps' centre), the loss, the trend extrapolated from the window before the boundary, and
    deviation = loss / trend - 1 (about 0 before; below 0 after it where the loss drops)."""
    if metrics.is_empty() or "steps_per_epoch" not in runs.columns or split not in metrics["split"].unique():
        return pl.DataFrame(schema=ALIGNED_SCHEMA)
    spe = dict(runs.select("path", "steps_per_epoch").iter_rows())
    rows = []
    frame = metrics.filter((pl.col("split") == split) & pl.col("loss").is_not_null()).sort("path", "step")
    for (path,), run in frame.group_by("path", maintain_order=True):
        per_epoch, who = spe.get(path), run.row(0, named=True)
        if isinstance(per_epoch, int) and per_epoch >= 2 and run.height >= 2:
            rows += [{"path": path, "variant": who["variant"], "seed": who["seed"], "split": split, **r}
                     for r in _run_aligned(run["step"].to_list(), run["loss"].to_list(), per_epoch, window,
                                           means=split == "train")]
    return pl.DataFrame(rows, schema=ALIGNED_SCHEMA) if rows else pl.DataFrame(schema=ALIGNED_SCHEMA)


def held_out_drops(metrics: pl.DataFrame, runs: pl.DataFrame, window: int | None = None) -> pl.DataFrame:
    """nbkit.analysis.drops.boundary_drops on the held-out probe's rows: how the loss of images never
    trained on moves at the same boundaries (their rows are point evaluations, not window means:
    the statistic reads them as rows of one step's width less, which moves no boundary)."""
    if metrics.is_empty() or HELD_OUT not in metrics["split"].unique():
        return drops.boundary_drops(pl.DataFrame(), runs)
    held = metrics.filter(pl.col("split") == HELD_OUT).with_columns(pl.lit("train").alias("split"))
    return drops.boundary_drops(held, runs, window).filter(pl.col("kind") == "boundary")


def seen_series(metrics: pl.DataFrame) -> pl.DataFrame:
    """The seen-count probe's columns as rows: variant, seed, path, step, group ("0", "1", "2",
    "3+" times trained on before), loss (null where the window had none of the group) and share."""
    groups = [g for g in SEEN_GROUPS if seen_share_column(g) in metrics.columns]
    if metrics.is_empty() or not groups:
        return pl.DataFrame(schema={"variant": pl.String, "seed": pl.Int64, "path": pl.String, "step": pl.Int64,
                                    "group": pl.String, "loss": pl.Float64, "share": pl.Float64})
    train = metrics.filter((pl.col("split") == "train") & pl.col(seen_share_column(groups[0])).is_not_null())
    return pl.concat([train.select("variant", "seed", "path", "step", pl.lit(g).alias("group"),
                                   (pl.col(seen_loss_column(g)) if seen_loss_column(g) in train.columns
                                    else pl.lit(None)).cast(pl.Float64).alias("loss"),
                                   pl.col(seen_share_column(g)).cast(pl.Float64).alias("share"))
                      for g in groups]).sort("path", "step", "group")


def _second_half(df: pl.DataFrame) -> pl.DataFrame:
    return df.filter(pl.col("step") > pl.col("step").max().over("path") / 2)


def seen_gap(metrics: pl.DataFrame) -> pl.DataFrame:
    """Per variant, over the second half of each run (memorisation has had time to set in) and the
    rows where examples trained on before and never trained on share the window (replacement
    sampling), so both are scored at the same weights: their mean losses, the gap (1 - seen /
    unseen) and, beside them, the held-out images' mean loss over the same half (`held`, where
    scored). Each row counts by share_unseen x share_seen, the same weight for both means, so the
    loss falling over training biases neither."""
    df = _second_half(seen_series(metrics).drop_nulls("loss"))
    schema = {"variant": pl.String, "rows": pl.UInt32, "unseen": pl.Float64, "seen": pl.Float64, "gap": pl.Float64,
              "held": pl.Float64}
    if df.is_empty():
        return pl.DataFrame(schema=schema)
    who = pl.when(pl.col("group") == "0").then(pl.lit("unseen")).otherwise(pl.lit("seen"))
    rows = (df.group_by("variant", "path", "step", who.alias("who"))
            .agg((pl.col("loss") * pl.col("share")).sum().alias("weighted"), pl.col("share").sum())
            .group_by("variant", "path", "step")
            .agg(*(pl.col(c).filter(pl.col("who") == w).first().alias(f"{w}_{c}") for w in ("seen", "unseen")
                   for c in ("weighted", "share")))
            .drop_nulls()
            .with_columns((pl.col("seen_share") * pl.col("unseen_share")).alias("w")))
    if rows.is_empty():
        return pl.DataFrame(schema=schema)
    mean = lambda w: (pl.col("w") * pl.col(f"{w}_weighted") / pl.col(f"{w}_share")).sum() / pl.col("w").sum()
    gap = (rows.group_by("variant")
           .agg(pl.len().alias("rows"), mean("unseen").alias("unseen"), mean("seen").alias("seen"))
           .with_columns((1 - pl.col("seen") / pl.col("unseen")).alias("gap")))
    held = (_second_half(metrics.filter(pl.col("split") == HELD_OUT))
            .group_by("variant").agg(pl.col("loss").mean().alias("held")))
    return gap.join(held, on="variant", how="left").sort("variant").select(list(schema)).cast(schema)


def seen_by_count(metrics: pl.DataFrame) -> pl.DataFrame:
    """Per variant and group ("1", "2", "3+" times trained on before), over the second half of each
    run and the rows where the group and the never-trained-on examples share the window (so at the
    same weights): the group's mean loss, the unseen examples' mean loss under the same weights
    (share_unseen x share_group per row) and their ratio."""
    schema = {"variant": pl.String, "group": pl.String, "rows": pl.UInt32, "unseen": pl.Float64,
              "loss": pl.Float64, "ratio": pl.Float64}
    df = _second_half(seen_series(metrics).drop_nulls("loss"))
    if df.is_empty():
        return pl.DataFrame(schema=schema)
    unseen = df.filter(pl.col("group") == "0").select("path", "step", pl.col("loss").alias("unseen_loss"),
                                                        pl.col("share").alias("unseen_share"))
    w = pl.col("share") * pl.col("unseen_share")
    out = (df.filter(pl.col("group") != "0").join(unseen, on=["path", "step"])
           .filter(w > 0)
           .group_by("variant", "group")
           .agg(pl.len().alias("rows"), ((w * pl.col("unseen_loss")).sum() / w.sum()).alias("unseen"),
                ((w * pl.col("loss")).sum() / w.sum()).alias("loss"))
           .with_columns((pl.col("loss") / pl.col("unseen")).alias("ratio"))
           .sort("variant", "group"))
    return out.select(list(schema)).cast(schema)


def verdicts(points: pl.DataFrame) -> pl.DataFrame:
    """Per variant: drop_per_variant's numbers and whether the boundary drop stands out from the
    placebo: exceeds the mean mid-epoch drop by more than `chance`, Z standard errors of that
    difference were every point as noisy as the mid-epoch points are; null when fewer than three
    mid-epoch points give no spread to judge by."""
    per = drops.drop_per_variant(points)
    if per.is_empty():
        return per.with_columns(pl.lit(None, pl.Float64).alias("chance"), pl.lit(None, pl.Boolean).alias("stands_out"))
    spread = (points.group_by("variant").agg(
        pl.col("relative").filter(pl.col("kind") == "mid-epoch").std().alias("mid_std"),
        (pl.col("kind") == "mid-epoch").sum().alias("mids")))
    return (per.join(spread, on="variant", how="left")
            .with_columns(pl.when(pl.col("mids") >= 3).then(
                Z * pl.col("mid_std") * (1 / pl.col("boundaries") + 1 / pl.col("mids")).sqrt()).alias("chance"))
            .with_columns(pl.when(pl.col("chance").is_not_null())
                          .then(pl.col("boundary_drop_mean") - pl.col("mid_epoch_drop_mean").fill_null(0.0)
                                > pl.col("chance"))
                          .alias("stands_out"))
            .drop("mid_std", "mids"))


# --- the answer in words -------------------------------------------------------------------------

BASE = "resnet18"  # the variant whose staircase the original asked about (a fresh order each epoch)


def pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:+.1f}%"


def _drop_words(r: dict) -> str:
    """'+5.2% ± 0.4% (standard deviation over 2 seeds), mid-epoch +0.1%' for one variant's verdicts row."""
    std = r["boundary_drop_std"]
    spread = f" ± {abs(std) * 100:.1f}% (standard deviation over {r['seeds']} seeds)" if std is not None else ""
    return f"{pct(r['boundary_drop_mean'])}{spread}, mid-epoch {pct(r['mid_epoch_drop_mean'])}"


def boundary_points(points: pl.DataFrame, variant: str) -> list[float]:
    """A variant's relative drops at epoch ends, one per boundary of each run."""
    if points.is_empty():
        return []
    return (points.filter((pl.col("variant") == variant) & (pl.col("kind") == "boundary"))["relative"]
            .drop_nulls().to_list())


def clearly_less(a: list[float], b: list[float]) -> tuple[bool, float | None]:
    """Whether the mean of the drops a lies below the mean of b by more than Z standard errors of
    the difference (each boundary of each run counted as one point, as `verdicts` counts them),
    and that threshold; (False, None) when either has fewer than two points."""
    if len(a) < 2 or len(b) < 2:
        return False, None
    mean = lambda xs: sum(xs) / len(xs)
    var = lambda xs: sum((x - mean(xs)) ** 2 for x in xs) / (len(xs) - 1)
    threshold = Z * math.sqrt(var(a) / len(a) + var(b) / len(b))
    return mean(b) - mean(a) > threshold, threshold


def findings(metrics: pl.DataFrame, runs: pl.DataFrame) -> list[str]:
    """The findings as sentences (markdown), computed from the runs; the last one is the verdict."""
    points = drops.boundary_drops(metrics, runs)
    v = {r["variant"]: r for r in verdicts(points).iter_rows(named=True)}
    held_points = held_out_drops(metrics, runs)
    held = {r["variant"]: r["boundary_drop_mean"] for r in drops.drop_per_variant(held_points).iter_rows(named=True)}
    gap = {r["variant"]: r for r in seen_gap(metrics).iter_rows(named=True)}
    counts = [r for r in seen_by_count(metrics).iter_rows(named=True) if r["variant"] == f"{BASE}-replacement"]
    base = v.get(BASE)
    if base is None:
        return [f"No {BASE} run crosses an epoch boundary with rows on both sides yet: there is no drop to explain. "
                "`bash benchmarks/epochs_runs.sh` makes the CPU run set."]
    ev = Evidence(base, boundary_points(points, BASE), held.get(BASE), boundary_points(held_points, BASE),
                  v.get(f"{BASE}-replacement"), boundary_points(points, f"{BASE}-replacement"),
                  gap.get(f"{BASE}-replacement"), v.get(f"{BASE}-fixed"), boundary_points(points, f"{BASE}-fixed"))
    out = [f"**The drop.** The relative drop (how much lower the training loss just after an epoch end is than the "
           f"trend of the steps just before predicts) of {BASE}, a fresh order each epoch, over {base['boundaries']} "
           f"epoch ends: {_drop_words(base)} (the placebo, where nothing changes in the data). "
           + _stands_out_words(base)]
    if ev.held is not None:
        out.append(f"**Held-out images** (never trained on, scored at the same steps): their loss moved "
                   f"{pct(ev.held)} against the trend at the same epoch ends, the training loss "
                   f"{pct(base['boundary_drop_mean'])}" + {
                       "less": ": the images trained on drop, the others do not.",
                       "too": ": the images never trained on drop too.",
                       "open": f", a difference within what chance gives here (± {(ev.held_test[1] or 0) * 100:.1f}%)."
                   }[ev.held_says()])
    out += _control_words(v, gap, counts)
    out.append(_verdict(ev))
    return out


def _stands_out_words(r: dict) -> str:
    if r["stands_out"] is None:
        return "Too few mid-epoch points to tell the drop from chance."
    return (f"It {'stands out from' if r['stands_out'] else 'is within'} what the statistic gives by chance (it "
            f"must exceed the mid-epoch drop by {r['chance'] * 100:.1f}%, {Z:g} standard errors of the mid-epoch "
            "points' spread).")


def _control_words(v: dict, gap: dict, counts: list[dict]) -> list[str]:
    out = []
    if (r := v.get(f"{BASE}-replacement")) is not None:
        out.append(f"**No epochs** ({BASE}-replacement: every batch drawn with replacement, so the data hold no "
                   "boundary): "
                   f"at the same steps {_drop_words(r)}. " + _stands_out_words(r))
    if (g := gap.get(f"{BASE}-replacement")) is not None:
        held = "" if g["held"] is None else f" (the held-out images, over the same steps: {g['held']:.3f})"
        by_count = ("" if not counts else " By how often they were trained on, each against the never-trained-on "
                    "examples of the same windows: " + ", ".join(
                        f"{COUNT_WORDS.get(c['group'], c['group'])} {c['ratio'] * 100:.0f}%" for c in counts)
                    + " of their loss.")
        out.append(f"**Seen against unseen at the same weights** ({BASE}-replacement, second half of each run, the "
                   f"same windows): examples trained on before had a mean loss of {g['seen']:.3f}, examples never "
                   f"trained on "
                   f"{g['unseen']:.3f}{held}: {abs(g['gap']) * 100:.0f}% {'lower' if g['gap'] >= 0 else 'higher'} "
                   "for the seen ones." + by_count)
    if (r := v.get(f"{BASE}-fixed")) is not None:
        out.append(f"**One fixed order** ({BASE}-fixed: every example comes back exactly one epoch after its last "
                   "visit): "
                   f"{_drop_words(r)}. " + _stands_out_words(r))
    others = [(name, r) for name, r in v.items() if name not in (BASE, f"{BASE}-replacement", f"{BASE}-fixed")]
    if others:
        out.append("**The other variants**: " + "; ".join(
            f"{name} {pct(r['boundary_drop_mean'])}" + ("" if r["stands_out"] is None else
                                                          " (stands out)" if r["stands_out"] else " (within chance)")
            for name, r in others) + ".")
    return out


COUNT_WORDS = {"1": "once", "2": "twice", "3+": "three or more times"}


@dataclass
class Evidence:
    """What the verdict weighs: resnet18's verdicts row and its drops at epoch ends; the held-out
    images' mean drop and points; the replacement and fixed-order runs' rows and points; the seen
    gap of the replacement runs."""
    base: dict
    base_points: list[float]
    held: float | None
    held_points: list[float]
    replacement: dict | None
    replacement_points: list[float]
    gap: dict | None
    fixed: dict | None
    fixed_points: list[float]

    @cached_property
    def held_test(self) -> tuple[bool, float | None]:
        return clearly_less(self.held_points, self.base_points)

    def held_says(self) -> str:
        """less: the held-out drop is below the training drop beyond chance and under half of it;
        too: it is half the training drop or more; open: neither can be told here."""
        if self.held is not None and self.held >= self.base["boundary_drop_mean"] / 2:
            return "too"
        return "less" if self.held_test[0] else "open"

    def replacement_says(self) -> str:
        """removes: the drop with replacement is below the one with epochs beyond chance and does not
        stand out itself; stays: it stands out and is not clearly smaller; open: neither."""
        r = self.replacement
        if r is None:
            return "missing"
        smaller = clearly_less(self.replacement_points, self.base_points)[0]
        if smaller and r["stands_out"] is not True:
            return "removes"
        return "stays" if r["stands_out"] and not smaller else "open"


def _verdict(ev: Evidence) -> str:
    """Memorisation when the drop stands out, the held-out images' drop is clearly below it (they do
    not drop with it) and sampling with replacement clearly removes it; the seen examples' lower loss
    at the same weights is said beside it, not counted as proof (any model that fits its data has it)."""
    base, held = ev.base, ev.held
    if not base["stands_out"]:
        return (f"**Verdict: the data do not settle it.** {BASE}'s drop at epoch ends does not stand out from chance "
                "in these runs, so there is nothing yet to explain: longer runs or more seeds would show whether it "
                "is there.")
    if held is None:
        return ("**Verdict: the data do not settle it.** Without held-out images scored near epoch ends (settings "
                "val_size and boundary_eval) nothing tells memorisation from a change in the network itself at the "
                "boundary.")
    says = ev.held_says()
    if says == "too":
        return (f"**Verdict: not memorisation alone.** The held-out images drop at epoch ends too ({pct(held)} against "
                f"{pct(base['boundary_drop_mean'])}): something changes at the boundary for images never trained on.")
    if says == "open":
        return (f"**Verdict: the data do not settle it.** The held-out images' drop ({pct(held)}) cannot be told from "
                f"the training loss's ({pct(base['boundary_drop_mean'])}) in these runs: more seeds or held-out "
                "images would.")
    replacement = ev.replacement_says()
    if replacement == "stays":
        return (f"**Verdict: not the data order.** Drawn with replacement, with no epoch boundary in the data, the loss "
                f"drops at the same steps about as much ({pct(ev.replacement['boundary_drop_mean'])} against "
                f"{pct(base['boundary_drop_mean'])}): something else happens at those steps.")
    if replacement != "removes":
        return ("**Verdict: the data do not settle it.** The held-out images do not drop, but " + (
            f"without a {BASE}-replacement run (no boundary in the data order) nothing shows the drop needs one."
            if replacement == "missing" else
            f"drawn with replacement the drop ({pct(ev.replacement['boundary_drop_mean'])}) is neither clearly "
            "smaller than with epochs nor clearly there: more seeds would tell."))
    seen_lower = ev.gap is not None and ev.gap["gap"] > 0
    return ("**Verdict: memorisation.** The training loss drops at epoch ends, the loss of images never trained on "
            "does not, and drawing with replacement removes the drop"
            + (", while at the same weights the examples trained on before have the lower loss" if seen_lower else "")
            + ": the network fits the particular images it has trained on beyond what it learns of the task."
            + _recency_words(ev))


def _recency_words(ev: Evidence) -> str:
    """What the fixed order adds: whether the drop needs the reshuffle, where the runs can tell."""
    fixed = ev.fixed
    if fixed is None:
        return ""
    words = (" With one fixed order, where every example comes back exactly one epoch after its last visit, the drop "
             f"is {pct(fixed['boundary_drop_mean'])}")
    if not fixed["stands_out"]:
        return (words + ", which does not stand out from chance in these runs: whether the drop needs the reshuffle "
                "is open.")
    if clearly_less(ev.fixed_points, ev.base_points)[0]:
        return (words + ", clearly smaller: the reshuffle adds to it, bringing back at an epoch's start examples last "
                "trained on half an epoch earlier on average, where an epoch's last batches hold examples last trained "
                "on one and a half epochs earlier, and the network remembers the recent ones better.")
    return (words + ", not clearly smaller: the drop stays without the reshuffle; after every epoch end the batches "
            "hold examples trained on once more, whatever their order.")
