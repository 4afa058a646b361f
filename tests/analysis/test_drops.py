"""The epoch-boundary drop statistic on planted curves: a step at every boundary is found, a
smooth curve (however steep) gives none, and the placebo (one window before each epoch end)
stays near zero, also where the loss flattens after each drop."""

import math

import polars as pl
import pytest

from nbkit.analysis import drops

SPE = 100  # steps per epoch


def frames(curves: dict[str, callable], steps: int = 600, log_every: int = 10, spe: int = SPE):
    """metrics and runs frames of one run per curve, train rows every log_every steps holding
    the mean of the curve over the steps they cover (as the trainer logs)."""
    rows, infos = [], []
    for i, (variant, f) in enumerate(curves.items()):
        path = f"runs/synthetic/{variant}/r{i}"
        for s in range(log_every, steps + 1, log_every):
            loss = sum(f(t) for t in range(s - log_every, s)) / log_every  # steps s-L .. s-1
            rows.append({"path": path, "run_id": f"r{i}", "variant": variant, "seed": 0, "split": "train",
                         "step": s, "loss": loss})
        infos.append({"path": path, "steps_per_epoch": spe})
    return pl.DataFrame(rows), pl.DataFrame(infos)


def smooth(t):
    return 2.5 * math.exp(-t / 150) + 0.3


def staircase(t):
    return smooth(t) * 0.8 ** (t // SPE)  # 20% lower at every epoch boundary


def test_a_planted_drop_at_every_boundary_is_found_and_the_placebo_is_not():
    metrics, runs = frames({"stairs": staircase})
    points = drops.boundary_drops(metrics, runs)
    at = points.filter(pl.col("kind") == "boundary")
    assert at["step"].to_list() == [100, 200, 300, 400, 500]  # 600: no steps after it are logged
    assert at["relative"].min() > 0.15  # about the planted 20%
    placebo = points.filter(pl.col("kind") == "placebo")
    assert placebo["step"].to_list() == [170, 270, 370, 470, 570]  # one window (30 steps) before each end
    assert placebo["relative"].abs().max() < 0.03


def settling(t):
    """A drop at each epoch end that settles in after it: a fast fall, then flat (resnet18's shape)."""
    return smooth(t) * 0.8 ** (t // SPE) * (0.8 + 0.2 * math.exp(-(t % SPE) / 12))


def statistic_at(metrics, point, window=30, log_every=10):
    """The drop statistic at any step, as boundary_drops computes it at its points."""
    rows = [(s - (log_every - 1) / 2, s, y) for s, y in zip(metrics["step"], metrics["loss"])]
    before = [(x, y) for x, s, y in rows if point - window < s - log_every + 1 and s <= point]
    after = [(x, y) for x, s, y in rows if s - log_every >= point and s <= point + window]
    slope, intercept = drops._fit_line([x for x, _ in before], [math.log(y) for _, y in before])
    trend = sum(math.exp(slope * x + intercept) for x, _ in after) / len(after)
    return (trend - sum(y for _, y in after) / len(after)) / trend


def test_the_placebo_is_less_biased_than_mid_epoch_where_the_loss_flattens_after_each_drop():
    """Mid-epoch, the trend is fitted on the bend after a drop and overshoots; one window before
    the end it is fitted where the curve is as smooth as where the boundary's own trend is."""
    metrics, runs = frames({"settling": settling})
    points = drops.boundary_drops(metrics, runs)
    placebo = points.filter(pl.col("kind") == "placebo")
    assert points.filter(pl.col("kind") == "boundary")["relative"].min() > 0.1
    mid_epoch = [statistic_at(metrics, b + SPE // 2) for b in range(SPE, 500, SPE)]
    assert max(mid_epoch) < -0.02  # the old placebo's bias on this shape
    assert placebo["relative"].abs().max() < abs(max(mid_epoch)) / 2


def test_a_smooth_falling_curve_has_no_drop_anywhere():
    metrics, runs = frames({"smooth": smooth, "linear": lambda t: 3 - t / 400})
    points = drops.boundary_drops(metrics, runs)
    assert points.height == 20
    assert points["relative"].abs().max() < 0.02


def test_the_row_across_a_boundary_is_left_out():
    # 95 steps per epoch with rows every 10: the row at step 100 covers steps 90..99, across 95
    metrics, runs = frames({"stairs": lambda t: 1.0 * 0.5 ** (t // 95)}, steps=300, spe=95)
    first = drops.boundary_drops(metrics, runs, window=30).row(0, named=True)
    assert first["step"] == 95
    assert first["after"] == pytest.approx(0.5)  # rows at 110, 120: wholly after, no mix of 1.0 and 0.5
    assert first["before"] == pytest.approx(1.0)
    assert first["relative"] == pytest.approx(0.5)


def test_per_run_and_per_variant_summaries_carry_the_spread_across_seeds():
    m1, r1 = frames({"stairs": staircase, "smooth": smooth})
    m2, r2 = frames({"stairs": lambda t: staircase(t) * 1.1, "smooth": smooth})
    m2 = m2.with_columns(pl.col("path") + "-b", pl.lit(1, pl.Int64).alias("seed"))
    r2 = r2.with_columns(pl.col("path") + "-b")
    points = drops.boundary_drops(pl.concat([m1, m2]), pl.concat([r1, r2]))
    per_run = drops.drop_per_run(points)
    assert per_run.height == 4 and set(per_run["boundaries"]) == {5}
    table = drops.drop_per_variant(points)
    stairs = table.filter(pl.col("variant") == "stairs").row(0, named=True)
    assert stairs["seeds"] == 2 and stairs["boundaries"] == 10
    assert stairs["boundary_drop_mean"] > 0.15 and stairs["boundary_drop_std"] is not None
    smooth_row = table.filter(pl.col("variant") == "smooth").row(0, named=True)
    assert abs(smooth_row["boundary_drop_mean"]) < 0.02


def test_runs_without_train_rows_or_epochs_give_empty_frames_and_a_bad_window_is_refused():
    assert drops.boundary_drops(pl.DataFrame(), pl.DataFrame()).is_empty()
    metrics, runs = frames({"smooth": smooth})
    assert drops.boundary_drops(metrics, runs.with_columns(pl.lit(None, pl.Int64).alias("steps_per_epoch"))).is_empty()
    assert drops.drop_per_variant(drops.boundary_drops(metrics.head(1), runs)).is_empty()
    with pytest.raises(ValueError, match="window expects a positive"):
        drops.boundary_drops(metrics, runs, window=0)


def test_the_default_window_is_a_quarter_epoch_within_bounds():
    assert drops.default_window(390, 10) == 97
    assert drops.default_window(20, 10) == 10  # never past half an epoch
    assert drops.default_window(40, 10) == 20
