"""The seen-count probe and the held-out probe near epoch ends: exact counts for a known order,
groups that average to the logged loss, no host reads in the step's path, the same numbers
packed or alone, and nothing at all (no columns, no work) when off."""

import pytest
import torch

from nbkit import resolve
from nbkit.design.settings import Settings
from nbkit.rundir.runlog import read_metrics
from nbkit.training import seen_probe as seen
from nbkit.training import trainer as train_module
from nbkit.training.evaluation import near_epoch_end
from nbkit.training.pack import train_pack
from nbkit.training.records import with_probe
from nbkit.training.step import TrainStep
from nbkit.training.trainer import train
from tests.training.test_sampling import B, N, loader, tiny_images
from tests.training.test_step import host_reads, no_host_reads, one_step

# 4 steps per epoch (64 images, batch 16), a train row every 2 steps, val scored within 2 steps of an epoch end
PROBED = dict(tailor_num_classes=True, constant_lr=1e-4, batch_size=16, train_size=64, max_iter=12, eval_every=12,
              log_every=2, eval_batch_size=256, val_size=16, seen_probe=True, boundary_eval=2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_images(tmp_path_factory.mktemp("tiny"))


def rows(run, split="train"):
    return [r for r in read_metrics(run / "metrics.jsonl") if r["split"] == split]


@pytest.mark.parametrize("sampling", ["epoch", "fixed", "replacement"])
def test_seen_groups_are_the_exact_counts_of_a_known_order(sampling):
    batches, counts = loader(sampling, count_seen=True), [0] * N
    for step in range(4 * batches.steps):
        examples = batches(step)[1].tolist()  # the labels are the examples' indices
        assert batches.groups.tolist() == [min(counts[i], 3) for i in examples], step
        for i in examples:
            counts[i] += 1
    assert batches.seen.counts.tolist() == counts
    if sampling != "replacement":  # every example once per epoch: epoch e trains on group e - 1 only
        assert counts == [4] * N


def test_window_columns_give_each_groups_mean_loss_and_share():
    groups = torch.tensor([0, 0, 1, 3, 3, 3, 1, 0])
    losses = torch.tensor([1.0, 2.0, 0.5, 0.1, 0.2, 0.3, 1.5, 3.0])
    window = [seen.window_columns(groups, losses), seen.window_columns(torch.full((8,), 2), losses)]
    row = seen.row_columns(torch.stack(window).mean(0).tolist())
    assert row["seen_loss/0"] == pytest.approx(2.0) and row["seen_loss/1"] == pytest.approx(1.0)
    assert row["seen_loss/2"] == pytest.approx(losses.mean().item()) and row["seen_loss/3+"] == pytest.approx(0.2)
    assert [row[f"seen_share/{g}"] for g in seen.GROUPS] == pytest.approx([3 / 16, 2 / 16, 8 / 16, 3 / 16])
    assert "seen_loss/1" not in seen.row_columns(seen.window_columns(torch.zeros(8, dtype=torch.long), losses).tolist())


@pytest.fixture(scope="module")
def probed_and_plain(tmp_path_factory, tiny):
    """The same run with both probes on (through the CUDA-graph path, as a GPU takes it) and off."""
    root = tmp_path_factory.mktemp("probe")
    name, s = resolve("toy-dilated", **PROBED, **tiny, sampling="replacement")
    plain = s.replace(seen_probe=False, boundary_eval=0)
    captured = pytest.MonkeyPatch()
    captured.setattr(train_module, "uses_cuda_graph", lambda *a: True)
    try:
        probed = train(name, s, run_dir=root / "probed", device="cpu")
    finally:
        captured.undo()
    return probed, train(name, plain, run_dir=root / "plain", device="cpu")


def test_the_probes_groups_average_to_the_logged_loss(probed_and_plain):
    probed, _ = probed_and_plain
    for row in rows(probed):
        shares = [row[f"seen_share/{g}"] for g in seen.GROUPS]
        assert sum(shares) == pytest.approx(1.0)
        mean = sum(row.get(f"seen_loss/{g}", 0.0) * share for g, share in zip(seen.GROUPS, shares))
        assert mean == pytest.approx(row["loss"], rel=1e-5)
    late = rows(probed)[-1]  # by step 12 (3 epochs' worth of draws with replacement) most were seen before
    assert late["seen_share/0"] < 0.5 and "seen_loss/1" in late


def test_the_probes_leave_training_as_it_was_and_add_nothing_when_off(probed_and_plain):
    probed, plain = probed_and_plain
    new = lambda r: r.startswith("seen_")
    assert all(not any(map(new, r)) for r in read_metrics(plain / "metrics.jsonl"))
    assert {r["split"] for r in read_metrics(plain / "metrics.jsonl")} == {"train", "train_200", "val", "test"}
    for a, b in zip(rows(probed), rows(plain), strict=True):  # the same steps, losses and weights
        assert {k: v for k, v in a.items() if not new(k) and k != "time"} == {k: v for k, v in b.items() if k != "time"}


def test_the_held_out_probe_scores_val_near_each_epoch_end(probed_and_plain):
    probed, _ = probed_and_plain
    dense = rows(probed, "val_dense")
    assert [r["step"] for r in dense] == [2, 4, 6, 8, 10, 12]  # within 2 steps of the ends at 4, 8 and 12
    val = {r["step"]: r["loss"] for r in rows(probed, "val")}
    assert {r["step"]: r["loss"] for r in dense}[12] == val[12]  # the same evaluation as the regular one
    s = Settings(boundary_eval=3, val_size=10, log_every=1)
    assert [k for k in range(1, 41) if near_epoch_end(s, k, 20)] == [17, 18, 19, 20, 21, 22, 23, 37, 38, 39, 40]
    assert not any(near_epoch_end(Settings(), k, 20) for k in range(1, 41))


def test_no_probe_work_when_it_is_off(tiny, tmp_path, monkeypatch):
    def refuse(*args):
        raise AssertionError("probe work with the probe off")

    monkeypatch.setattr(seen, "window_columns", refuse)
    monkeypatch.setattr(seen.SeenCounts, "visit", refuse)
    monkeypatch.setattr(train_module, "evaluate_near_epoch_end", refuse)
    name, s = resolve("toy-dilated", **{**PROBED, **tiny, "seen_probe": False, "boundary_eval": 0, "max_iter": 4,
                                        "eval_every": 4})
    made, init = [], TrainStep.__init__

    def spy(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(TrainStep, "__init__", spy)
    train(name, s, run_dir=tmp_path / "run", device="cpu")
    assert [(m.keep_example_losses, m.example_losses) for m in made] == [(False, None)]


def test_the_probes_path_through_a_step_reads_nothing_on_the_host():
    step, _, _ = one_step("toy-dilated", capture_ready=True)
    step.keep_example_losses = True
    adam = step.opt.step

    def cpu_adam(*args):  # Adam reads its step count on the CPU; on CUDA it is capturable
        with host_reads(True):
            return adam(*args)

    step.opt.step = cpu_adam
    batches = loader("replacement", count_seen=True)
    run = type("Run", (), {"s": Settings(seen_probe=True), "batches": batches})()
    with no_host_reads():
        for k in range(batches.steps + 1):  # across an epoch's end, where the next order is drawn
            x, y = batches(k)
            stats = with_probe(run, step(torch.rand(B, 3, 32, 32), y % 10, 1e-3), step.example_losses)
    assert stats.shape == (4 + 2 * len(seen.GROUPS),) and torch.isfinite(stats).all()


def test_packed_runs_log_the_probes_as_each_run_alone(tiny, tmp_path):
    name, s = resolve("toy-dilated", **{**PROBED, **tiny, "max_iter": 8, "eval_every": 8})
    seeds = [s.replace(seed=k) for k in (0, 1)]
    alone = [train(name, t, run_dir=tmp_path / f"a{k}", device="cpu") for k, t in enumerate(seeds)]
    packed = train_pack(name, seeds, [tmp_path / f"p{k}" for k in (0, 1)], device="cpu")
    for p, a in zip(packed, alone):
        got, want = read_metrics(p / "metrics.jsonl"), read_metrics(a / "metrics.jsonl")
        assert [(r["step"], r["split"]) for r in got] == [(r["step"], r["split"]) for r in want]
        assert any(r["split"] == "val_dense" for r in got) and "seen_loss/1" in rows(p)[-1]
        for x, y in zip(got, want):
            assert x.keys() == y.keys()
            for key in x.keys() - {"step", "split", "time"}:
                assert x[key] == pytest.approx(y[key], rel=1e-3, abs=1e-6), (x["step"], x["split"], key)
