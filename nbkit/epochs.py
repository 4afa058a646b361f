"""The epochs comparison's numbers: the original's open puzzle ("Why does the loss suddenly drop
periodically (after each epoch) for ResNet? Is it because of memorization?") answered from the
run logs. Pure Polars; the charts and the notebook's sections are nbkit.epochs_view's.

- `aligned`: every epoch boundary of every run overlaid, x = steps since the boundary, y = the
  loss against the trend fitted just before it (the drop statistic's own fit, nbkit.drops);
- `held_out_drops`: the drop statistic on the held-out images scored near epoch ends
  (`val_dense` rows, setting boundary_eval), which were never trained on;
- `seen_series` and `seen_gap`: the loss split by how many times the examples were trained on
  before (setting seen_probe), and under replacement sampling the gap at the same weights;
- `verdicts`: each variant's drop against its mid-epoch placebo; `findings`: the answer in words.
"""

from __future__ import annotations

import math

import polars as pl

from . import drops, seen

HELD_OUT = "val_dense"  # the held-out probe's rows (nbkit.train.evaluate_near_epoch_end)
ALIGNED_SCHEMA = {"path": pl.String, "variant": pl.String, "seed": pl.Int64, "split": pl.String,
                  "boundary": pl.Int64, "offset": pl.Float64, "loss": pl.Float64, "trend": pl.Float64,
                  "deviation": pl.Float64}
Z = 2.0  # a drop stands out when it exceeds the placebo by Z standard errors of the placebo


def _log_every(steps: list[int]) -> int:
    """The log interval, as nbkit.drops reads it: the median gap between logged steps."""
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
    for b in range(spe, steps[-1] + 1, spe):
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
    """nbkit.drops.boundary_drops on the held-out probe's rows: how the loss of images never
    trained on moves at the same boundaries (their rows are point evaluations, not window means:
    the statistic reads them as rows of one step's width less, which moves no boundary)."""
    if metrics.is_empty() or HELD_OUT not in metrics["split"].unique():
        return drops.boundary_drops(pl.DataFrame(), runs)
    held = metrics.filter(pl.col("split") == HELD_OUT).with_columns(pl.lit("train").alias("split"))
    return drops.boundary_drops(held, runs, window).filter(pl.col("kind") == "boundary")


def seen_series(metrics: pl.DataFrame) -> pl.DataFrame:
    """The seen-count probe's columns as rows: variant, seed, path, step, group ("0", "1", "2",
    "3+" times trained on before), loss (null where the window had none of the group) and share."""
    groups = [g for g in seen.GROUPS if seen.share_column(g) in metrics.columns]
    if metrics.is_empty() or not groups:
        return pl.DataFrame(schema={"variant": pl.String, "seed": pl.Int64, "path": pl.String, "step": pl.Int64,
                                    "group": pl.String, "loss": pl.Float64, "share": pl.Float64})
    train = metrics.filter((pl.col("split") == "train") & pl.col(seen.share_column(groups[0])).is_not_null())
    return pl.concat([train.select("variant", "seed", "path", "step", pl.lit(g).alias("group"),
                                   (pl.col(seen.loss_column(g)) if seen.loss_column(g) in train.columns
                                    else pl.lit(None)).cast(pl.Float64).alias("loss"),
                                   pl.col(seen.share_column(g)).cast(pl.Float64).alias("share"))
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
    """'+5.2% ± 0.4% across 2 seeds, mid-epoch +0.1%' for one variant's verdicts row."""
    std = r["boundary_drop_std"]
    spread = f" ± {abs(std) * 100:.1f}% across {r['seeds']} seeds" if std is not None else ""
    return f"{pct(r['boundary_drop_mean'])}{spread}, mid-epoch {pct(r['mid_epoch_drop_mean'])}"


def findings(metrics: pl.DataFrame, runs: pl.DataFrame) -> list[str]:
    """The findings as sentences (markdown), computed from the runs; the last one is the verdict."""
    points = drops.boundary_drops(metrics, runs)
    v = {r["variant"]: r for r in verdicts(points).iter_rows(named=True)}
    held = {r["variant"]: r["boundary_drop_mean"]
            for r in drops.drop_per_variant(held_out_drops(metrics, runs)).iter_rows(named=True)}
    gap = {r["variant"]: r for r in seen_gap(metrics).iter_rows(named=True)}
    base = v.get(BASE)
    if base is None:
        return [f"No {BASE} run crosses an epoch boundary with rows on both sides yet: there is no drop to explain. "
                "`bash benchmarks/epochs_runs.sh` makes the CPU run set."]
    out = [f"**The drop.** The relative drop (how much lower the training loss just after an epoch end is than the "
           f"trend of the steps just before predicts) of {BASE}, a fresh order each epoch, over {base['boundaries']} "
           f"epoch ends: {_drop_words(base)} (the placebo, where nothing changes in the data). "
           + _stands_out_words(base)]
    if BASE in held:
        out.append(f"**Held-out images** (never trained on, scored at the same steps): their loss moved "
                   f"{pct(held[BASE])} against the trend at the same epoch ends, the training loss "
                   f"{pct(base['boundary_drop_mean'])}"
                   + (": the images trained on drop, the others do not." if _smaller(held[BASE], base) else "."))
    out += _control_words(v, gap)
    out.append(_verdict(base, held.get(BASE), v.get(f"{BASE}-replacement"), gap.get(f"{BASE}-replacement"),
                        v.get(f"{BASE}-fixed")))
    return out


def _stands_out_words(r: dict) -> str:
    if r["stands_out"] is None:
        return "Too few mid-epoch points to tell the drop from chance."
    return (f"It {'stands out from' if r['stands_out'] else 'is within'} what the statistic gives by chance "
            f"(± {r['chance'] * 100:.1f}%).")


def _smaller(held: float | None, base: dict) -> bool:
    """The held-out drop is less than half the training drop (or none)."""
    return held is not None and held < base["boundary_drop_mean"] / 2


def _control_words(v: dict, gap: dict) -> list[str]:
    out = []
    if (r := v.get(f"{BASE}-replacement")) is not None:
        out.append(f"**No epochs** ({BASE}-replacement: every batch drawn with replacement, so the data hold no "
                   "boundary): "
                   f"at the same steps {_drop_words(r)}. " + _stands_out_words(r))
    if (g := gap.get(f"{BASE}-replacement")) is not None:
        held = "" if g["held"] is None else f" (the held-out images, over the same steps: {g['held']:.3f})"
        out.append(f"**Seen against unseen at the same weights** ({BASE}-replacement, second half of each run, the "
                   f"same windows): examples trained on before had a mean loss of {g['seen']:.3f}, examples never "
                   f"trained on "
                   f"{g['unseen']:.3f}{held}: {abs(g['gap']) * 100:.0f}% {'lower' if g['gap'] >= 0 else 'higher'} "
                   "for the seen ones.")
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


def _verdict(base: dict, held: float | None, replacement: dict | None, gap: dict | None, fixed: dict | None) -> str:
    """Memorisation when the drop stands out, the held-out images do not drop with it, and either
    sampling with replacement shows no drop or the seen examples' loss is lower at the same weights."""
    if not base["stands_out"]:
        return (f"**Verdict: the data do not settle it.** {BASE}'s drop at epoch ends does not stand out from chance "
                "in these runs, so there is nothing yet to explain: longer runs or more seeds would show whether it "
                "is there.")
    if held is None:
        return ("**Verdict: the data do not settle it.** Without held-out images scored near epoch ends (settings "
                "val_size and boundary_eval) nothing tells memorisation from a change in the network itself at the "
                "boundary.")
    if not _smaller(held, base):
        return (f"**Verdict: not memorisation alone.** The held-out images drop at epoch ends too ({pct(held)} against "
                f"{pct(base['boundary_drop_mean'])}): something changes at the boundary for images never trained on.")
    no_epochs = replacement is not None and replacement["stands_out"] is False
    seen_lower = gap is not None and gap["gap"] > 0
    if not (no_epochs or seen_lower):
        return ("**Verdict: the data do not settle it.** The held-out images do not drop, but without a "
                f"{BASE}-replacement run (no boundary, seen and unseen examples side by side) nothing shows the drop "
                "needs a boundary in the data order.")
    return ("**Verdict: memorisation.** The training loss drops at epoch ends and the loss of images never trained on "
            "does not" + (", drawing with replacement removes the drop" if no_epochs else "")
            + (", and at the same weights the examples trained on before have the lower loss" if seen_lower else "")
            + ": the network fits the particular images it has trained on beyond what it learns of the task."
            + _recency_words(base, fixed))


def _recency_words(base: dict, fixed: dict | None) -> str:
    """What the fixed order adds: whether the drop needs the reshuffle."""
    if fixed is None:
        return ""
    shrinks = _smaller(fixed["boundary_drop_mean"], base)
    noisy = ", within what chance gives in these runs" if fixed["stands_out"] is False else ""
    words = (f" With one fixed order, where every example comes back exactly one epoch after its last visit, the drop "
             f"{'shrinks' if shrinks else 'stays'} ({pct(fixed['boundary_drop_mean'])}{noisy})")
    if not shrinks:
        return (words + ": it does not need the reshuffle; after every epoch end the batches hold examples trained on "
                "once more, whatever their order.")
    return (words + ": it comes from the reshuffle, which brings back at an epoch's start examples last trained on "
            "half an epoch earlier on average, where an epoch's last batches hold examples last trained on one and a "
            "half epochs earlier, and the network remembers the recent ones better.")
