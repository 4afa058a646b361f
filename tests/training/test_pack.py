"""Packed runs (nbkit.training.pack): the seeds of a variant trained as one vectorised model log what the
same runs log alone, and each still ends, stops and resumes as a run of its own."""

import json
import os
import signal

import pytest
import torch

from nbkit import create_model, resolve
from nbkit.cli import main
from nbkit.errors import RunStopped
from nbkit.rundir.runlog import read_metrics, read_status
from nbkit.sweeps.sweep import packs, plan, run_sweep
from nbkit.training import pack as pack_module
from nbkit.training.pack import check_members, train_pack
from nbkit.training.packed_model import Member, MemberOptimizer, Packed, PackedStep
from nbkit.training.step import TrainStep, make_optimizer
from nbkit.training.trainer import train

# Adam moves each weight by about the learning rate whatever its gradient's size, so a rounding-level
# difference in a near-zero gradient (a conv bias before BatchNorm has only rounding for a gradient)
# becomes a step-sized one, and two paths that sum in different orders part: at 3e-4 a test image or
# two flips within 24 steps (0.4% of top-1). At 1e-4 every logged value agrees (measured: 5e-6).
PACKABLE = dict(dataset="synthetic", tailor_num_classes=True, constant_lr=1e-4, batch_size=16, max_iter=24,
                eval_every=12, log_every=4, eval_batch_size=256)


def values(run):
    return [{k: v for k, v in row.items() if k != "time"} for row in read_metrics(run / "metrics.jsonl")]


def assert_logs_agree(packed, alone, rel=1e-3):
    a, b = values(packed), values(alone)
    assert len(a) == len(b) and len(a) > 0
    for x, y in zip(a, b):
        assert x.keys() == y.keys() and (x["step"], x["split"]) == (y["step"], y["split"])
        for key in x.keys() - {"step", "split"}:
            assert x[key] == pytest.approx(y[key], rel=rel, abs=1e-6), (x["step"], x["split"], key)


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    """toy-dilated at PACKABLE, seeds 0, 1 and 2, each trained alone: what packed runs must log."""
    name, s = resolve("toy-dilated", **PACKABLE)
    root = tmp_path_factory.mktemp("alone")
    return name, [s.replace(seed=k) for k in (0, 1, 2)], [train(name, s.replace(seed=k), run_dir=root / f"a{k}", device="cpu")
                                                        for k in (0, 1, 2)]


@pytest.fixture(scope="module")
def packed(tmp_path_factory, alone):
    """The same three runs trained as one pack, uninterrupted."""
    name, seeds, _ = alone
    root = tmp_path_factory.mktemp("packed")
    return train_pack(name, seeds, [root / f"p{k}" for k in range(3)], device="cpu")


def test_packed_runs_log_what_the_same_runs_log_alone(alone, packed):
    name, seeds, runs_alone = alone
    for k, run in enumerate(packed):
        assert_logs_agree(run, runs_alone[k])
        config = json.loads((run / "config.json").read_text())
        assert config["pack_size"] == 3 and config["seed"] == k and config["parameters"] > 0
        assert read_status(run)["state"] == "done"
    assert values(packed[0]) != values(packed[1])  # three runs, not one run three times


@pytest.mark.parametrize("name", ["resnet18", "resnet18-gn", "resnet18-pcnorm", "vitn-12x256-8x8-ra"])
def test_a_packed_step_is_each_runs_own_step(name):
    """Step by step against each run alone started from the pack's state (deeper models part over
    many steps, as any two summation orders do; each step must still be the same step)."""
    def without_dropout(model):  # the pack's random stream is its own: compare the deterministic part
        for mod in model.modules():
            if isinstance(mod, torch.nn.Dropout):
                mod.p = 0.0
        return model.train()

    torch.manual_seed(0)
    packed = Packed.of([without_dropout(create_model(name, 10)) for _ in range(2)]).train()
    params = [p for p in packed.parameters() if p.requires_grad]
    opt = make_optimizer(params, 1e-3, torch.device("cpu"))
    step = PackedStep(packed, packed, opt, params, 1.0, None, torch.device("cpu"))  # clip 1.0: clipping acts
    alone = [without_dropout(create_model(name, 10)) for _ in range(2)]
    for i in range(3):
        x, y = torch.rand(2, 8, 3, 32, 32), torch.randint(0, 10, (2, 8))
        for k, model in enumerate(alone):  # each run alone from the pack's state, Adam's included
            model.load_state_dict(Member(packed, k).state_dict())
        opts = [make_optimizer([p for p in m.parameters() if p.requires_grad], 1e-3, torch.device("cpu")) for m in alone]
        if i:
            for k, o in enumerate(opts):
                o.load_state_dict(MemberOptimizer(opt, k).state_dict())
        stats = step(x, y, 1e-3)
        for k, model in enumerate(alone):
            p_alone = [p for p in model.parameters() if p.requires_grad]
            own = TrainStep(model, model, opts[k], p_alone, 1.0, None, torch.device("cpu"))(x[k], y[k], 1e-3)
            torch.testing.assert_close(stats[k], own, rtol=1e-3, atol=1e-5)
            after = Member(packed, k).state_dict()
            for key, v in model.state_dict().items():  # within a step's size, not more
                torch.testing.assert_close(after[key].float(), v.float(), rtol=1e-3, atol=2e-3)


def test_a_run_that_fails_leaves_the_pack_and_the_others_go_on(tmp_path, monkeypatch, alone):
    name, seeds, runs_alone = alone
    step = PackedStep._step

    def poisoned(self, x, y, capturing=False):  # run 1 of the first pack turns non-finite at step 6
        stats = step(self, x, y, capturing)
        if len(y) == 3 and self.opt.state and next(iter(self.opt.state.values()))["step"] == 6:
            stats[1, 0] = float("nan")
        return stats

    monkeypatch.setattr(PackedStep, "_step", poisoned)
    runs = train_pack(name, seeds, [tmp_path / f"p{k}" for k in range(3)], device="cpu")
    failed = read_status(runs[1])
    assert failed["state"] == "failed" and "non-finite loss" in failed["reason"] and failed["step"] == 8
    assert [read_status(r)["state"] for r in (runs[0], runs[2])] == ["done", "done"]
    monkeypatch.setattr(PackedStep, "_step", step)
    for k in (0, 2):  # the pack went on without run 1, each of the others as alone
        assert_logs_agree(runs[k], runs_alone[k])


def test_a_stopped_pack_checkpoints_every_run_through_a_second_signal_and_each_resumes_alone(
        tmp_path, monkeypatch, alone, packed):
    """A resumed packed run trains alone: its rows up to the stop are the pack's own, exactly;
    later ones agree with the uninterrupted pack (and the run alone) within 1e-3 relative."""
    import nbkit.training.trainer as trainer

    name, seeds, runs_alone = alone
    evaluate, checkpoint = pack_module.evaluate_splits, trainer.write_checkpoint

    def signalled(run, state):  # SIGTERM arrives at the first evaluation (step 12)
        evaluate(run, state)
        os.kill(os.getpid(), signal.SIGTERM)

    def impatient(run, state):  # and Ctrl-C while each run writes its stop checkpoint
        os.kill(os.getpid(), signal.SIGINT)
        checkpoint(run, state)

    monkeypatch.setattr(pack_module, "evaluate_splits", signalled)
    monkeypatch.setattr(trainer, "write_checkpoint", impatient)
    with pytest.raises(BaseException) as ended:  # before: a KeyboardInterrupt cut the checkpoints
        train_pack(name, seeds, [tmp_path / f"p{k}" for k in range(3)], device="cpu")
    assert isinstance(ended.value, RunStopped), repr(ended.value)
    monkeypatch.undo()
    for k in range(3):
        run = tmp_path / f"p{k}"
        status = read_status(run)
        assert (status["state"], status["step"]) == ("stopped", 12) and "SIGTERM" in status["reason"]
        assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 12
    for k in (0, 2):
        run = tmp_path / f"p{k}"
        train(name, seeds[k], run_dir=run, resume=True, device="cpu")  # alone, in the ordinary way
        assert [r for r in values(run) if r["step"] <= 12] == [r for r in values(packed[k]) if r["step"] <= 12]
        assert_logs_agree(run, packed[k])
        assert_logs_agree(run, runs_alone[k])


def test_a_run_whose_files_fail_leaves_the_pack_and_the_others_finish(tmp_path, monkeypatch, alone):
    """Run 1's folder turns read-only at its checkpoint at step 12; run 2's config cannot be
    written as the pack starts. Each fails alone, saying why with its own path."""
    from nbkit.rundir.runlog import RunWriter

    name, seeds, runs_alone = alone
    dirs = [tmp_path / f"p{k}" for k in range(3)]
    write_checkpoint, write_config = pack_module.write_checkpoint, RunWriter.config

    def read_only(run, state):
        if run.run_dir == dirs[1]:
            raise PermissionError(13, "Permission denied", str(dirs[1] / "checkpoint.pt"))
        write_checkpoint(run, state)

    def no_config(self, config):
        if self.dir == dirs[2]:
            raise PermissionError(13, "Permission denied", str(dirs[2] / "config.json"))
        write_config(self, config)

    monkeypatch.setattr(pack_module, "write_checkpoint", read_only)
    monkeypatch.setattr(RunWriter, "config", no_config)
    train_pack(name, [s.replace(save_every=12) for s in seeds], dirs, device="cpu")
    states = [read_status(d) for d in dirs]
    assert states[0]["state"] == "done" and read_metrics(dirs[0] / "metrics.jsonl")
    assert (states[1]["state"], states[1]["step"]) == ("failed", 12) and str(dirs[1]) in states[1]["reason"]
    assert states[2]["state"] == "failed" and str(dirs[2] / "config.json") in states[2]["reason"]
    assert_logs_agree(dirs[0], runs_alone[0])


def test_random_variants_pack_and_each_seed_draws_its_own():
    for name in ("resnet18-ms2", "vit-12x256-8x8"):
        torch.manual_seed(0)
        packed = Packed.of([create_model(name, 10) for _ in range(2)]).train()
        params = [p for p in packed.parameters() if p.requires_grad]
        step = PackedStep(packed, packed, make_optimizer(params, 1e-3, torch.device("cpu")), params, 100.0, None,
                          torch.device("cpu"))
        x = torch.rand(1, 8, 3, 32, 32).expand(2, -1, -1, -1, -1)  # the same batch for both
        y = torch.randint(0, 10, (1, 8)).expand(2, -1)
        for mod in packed.base.modules():
            if hasattr(mod, "p") and not isinstance(mod, torch.nn.Dropout):
                mod.p = 1.0  # MixStyle mixes every step
        stats = step(x, y, 1e-3)
        assert torch.isfinite(stats).all() and stats.shape[0] == 2


def test_packs_group_new_seeds_of_a_variant_and_leave_the_rest_alone(tmp_path):
    jobs = plan(["toy-dilated", "resnet18"], 3, PACKABLE, tmp_path)
    assert [[j.label for j in u] for u in packs(jobs, 2)] == [
        ["toy-dilated seed 0", "toy-dilated seed 1"], ["toy-dilated seed 2"],
        ["resnet18 seed 0", "resnet18 seed 1"], ["resnet18 seed 2"]]
    (jobs[1].run_dir).mkdir(parents=True)
    (jobs[1].run_dir / "config.json").write_text("{}")
    (jobs[1].run_dir / "checkpoint.pt").write_bytes(b"x")  # resumes: alone
    assert [len(u) for u in packs(jobs[:3], 3)] == [1, 1, 1]
    assert [len(u) for u in packs(jobs, 1)] == [1] * 6
    with pytest.raises(ValueError, match="--pack expects at least 1"):
        packs(jobs, 0)


def test_members_must_differ_in_the_seed_alone():
    _, s = resolve("toy-dilated", **PACKABLE)
    with pytest.raises(ValueError, match="differ in batch_size"):
        check_members([s, s.replace(seed=1, batch_size=8)])
    with pytest.raises(ValueError, match="distinct seeds"):
        check_members([s, s])


def test_sweep_with_pack_trains_ordinary_runs_and_skips_them_next_time(tmp_path):
    jobs = plan(["toy-dilated"], 2, PACKABLE, tmp_path)
    outcome = run_sweep(jobs, device="cpu", jobs_per_device=1, poll=0.1, pack=2)
    assert len(outcome["done"]) == 2 and not outcome["failed"]
    for job in jobs:
        assert read_status(job.run_dir)["state"] == "done"
        assert json.loads((job.run_dir / "config.json").read_text())["pack_size"] == 2
    assert "trained in a pack" in (jobs[1].run_dir / "train.log").read_text()
    again = run_sweep(plan(["toy-dilated"], 2, PACKABLE, tmp_path), device="cpu", poll=0.1, pack=2)
    assert len(again["skipped"]) == 2


def test_pack_commands_refuse_what_they_cannot_do(tmp_path, capsys):
    _, s = resolve("toy-dilated", **PACKABLE)
    cases = [
        (["train", "toy-dilated", "--device", "cpu", "--pack-json", "[{"], "--pack-json expects a JSON list"),
        (["train", "toy-dilated", "--device", "cpu", "--pack-json", '[{"run_dir": "x"}]'], "{run_dir, settings}"),
        (["train", "toy-dilated", "--device", "cpu", "--pack-json", '[{"run_dir": "x", "settings": {"bogus": 1}}]'],
         "unknown setting 'bogus'"),
        (["train", "--resume", str(tmp_path), "--pack-json", "[]"], "goes with a VARIANT alone"),
        (["train", "toy-dilated", "--device", "cpu", "--pack-json", json.dumps(
            [{"run_dir": str(tmp_path / "a"), "settings": s.to_dict()},
             {"run_dir": str(tmp_path / "b"), "settings": s.replace(seed=1, max_iter=7).to_dict()}])],
         "differ in max_iter"),
        (["sweep", "toy-dilated", "--dataset", "synthetic", "--runs-dir", str(tmp_path), "--backend", "ray",
          "--pack", "2"], "--pack works with the local backend"),
        (["sweep", "toy-dilated", "--dataset", "synthetic", "--runs-dir", str(tmp_path), "--pack", "0"],
         "--pack expects at least 1"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
