"""The original's measures: train_200 scored on augmented images, the precision setting, and what
every train row logs (total loss, gradient norm before clipping, normaliser statistics, per-layer
temperature)."""

import json

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

import nbkit.training.pack as pack_module
import nbkit.training.trainer as trainer
from nbkit import resolve
from nbkit.design.models import create_model
from nbkit.design.settings import Settings
from nbkit.rundir.checkpoint import load_checkpoint
from nbkit.rundir.runlog import read_metrics
from nbkit.sweeps.sweep import settings_key
from nbkit.training import schedule
from nbkit.training.data import load_dataset
from nbkit.training.evaluation import evaluate
from nbkit.training.loader import memory_format, probe_generator
from nbkit.training.schedule import autocast_dtype, evaluation_dtype, warmup_warning
from nbkit.training.trainer import train
from tests.conftest import REPO

TINY = dict(dataset="synthetic", tailor_num_classes=True, constant_lr=3e-3, batch_size=32, max_iter=4,
            eval_every=4, log_every=1, eval_batch_size=256)


def rows_of(run, split):
    return [r for r in read_metrics(run / "metrics.jsonl") if r["split"] == split]


def test_train_200_of_an_augmented_run_is_scored_as_the_original_did_and_clean(tmp_path):
    name, s = resolve("toy-dilated", **{**TINY, "use_augmentation": True})
    run = train(name, s, runs_dir=tmp_path, device="cpu")
    [aug], [clean] = rows_of(run, "train_200_aug"), rows_of(run, "train_200")
    ds = load_dataset("synthetic", s.data_dir)
    model = create_model(s, ds.num_classes)
    model.load_state_dict(load_checkpoint(run, "cpu")["model"])
    images, labels = ds.images["train_200"], ds.labels["train_200"]
    fmt = memory_format(torch.device("cpu"))

    def score(augmented=None):
        correct, loss = evaluate(model, images, labels, 256, fmt, augmented).tolist()
        return correct / len(labels), loss / len(labels)

    # the augmented pipeline with the probe's seed gives the logged number; clean stays its own split
    generator = probe_generator(s.seed, aug["step"], torch.device("cpu"))
    assert (aug["acc_top1"], aug["loss"]) == pytest.approx(score((generator, None, None)), rel=1e-6)
    assert (clean["acc_top1"], clean["loss"]) == pytest.approx(score(), rel=1e-6)
    assert aug["loss"] != clean["loss"]
    # runs without augmentation log train_200 only
    plain = train(name, s.replace(use_augmentation=False, max_iter=1, eval_every=1), runs_dir=tmp_path, device="cpu")
    assert not rows_of(plain, "train_200_aug") and rows_of(plain, "train_200")


def test_precision_setting_picks_the_autocast_and_is_recorded(tmp_path, monkeypatch, capsys):
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert autocast_dtype(Settings(), cuda) is torch.bfloat16 and autocast_dtype(Settings(), cpu) is None
    assert autocast_dtype(Settings(precision="fp32"), cuda) is None
    assert autocast_dtype(Settings(precision="bf16"), cpu) is torch.bfloat16
    # evaluation: the training's precision on CUDA, fp32 on the CPU (where bf16 is the slower)
    assert evaluation_dtype(Settings(), cuda) is torch.bfloat16 and evaluation_dtype(Settings(precision="fp32"), cuda) is None
    assert evaluation_dtype(Settings(precision="bf16"), cpu) is None
    model, inside = create_model("toy-dilated", 10), []
    model.register_forward_pre_hook(lambda m, a: inside.append(torch.is_autocast_enabled("cpu")))
    images, labels = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8), torch.zeros(6, dtype=torch.long)
    for dtype in (None, torch.bfloat16):
        evaluate(model, images, labels, 4, torch.contiguous_format, dtype=dtype)
    assert inside == [False, False, True, True]  # two batches each
    with pytest.raises(ValueError, match="precision expects one of auto, bf16, fp32"):
        Settings(precision="fp16")

    seen = []
    build = trainer.create_model

    def recording(*args, **kwargs):
        model = build(*args, **kwargs)
        model.register_forward_pre_hook(lambda m, a: seen.append(
            torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None) if m.training else None)
        return model

    monkeypatch.setattr(trainer, "create_model", recording)
    name, s = resolve("toy-dilated", **{**TINY, "max_iter": 2, "eval_every": 2, "constant_lr": None})
    losses = {}
    for precision, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        seen.clear()
        run = train(name, s.replace(precision=precision), runs_dir=tmp_path, device="cpu")
        assert seen == [dtype, dtype], precision
        config = json.loads((run / "config.json").read_text())
        assert config["precision"] == ("bf16" if dtype else "fp32") and config["settings"]["precision"] == precision
        losses[precision] = rows_of(run, "train")[-1]["loss"]
        status = json.loads((run / "status.json").read_text())  # what the study benchmark reports per run
        assert status["peak_rss_mb"] > 50 and "gpu_memory_mb" not in status
    assert losses["fp32"] != losses["bf16"]
    # 2 steps inside a 500-step warm-up: the run says why it will look broken
    assert "ends within its learning-rate warm-up (2 of 500 warm-up steps)" in capsys.readouterr().err


def test_train_rows_log_total_loss_gradient_norm_and_normaliser_statistics(tmp_path, monkeypatch):
    norms = []
    clip = torch.nn.utils.clip_grad_norm_

    def recording(*args, **kwargs):
        norms.append(float(clip(*args, **kwargs)))
        return torch.tensor(norms[-1])

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording)
    name, s = resolve("vit-aux-3x4x256-8x8", **{**TINY, "max_iter": 2, "eval_every": 2, "gradient_clipping": 1e-3})
    run = train(name, s, runs_dir=tmp_path, device="cpu")
    rows = rows_of(run, "train")
    assert [r["grad_norm"] for r in rows] == pytest.approx(norms, rel=1e-6) and min(norms) > 1e-3  # before clipping
    for r in rows:
        aux = [v for k, v in r.items() if k.startswith("aux/")]
        assert len(aux) == 2 and r["loss_total"] == pytest.approx(r["loss"] + sum(aux), rel=1e-5)
    model = load_checkpoint(run, "cpu")["model"]
    assert rows[-1]["norm_mean"] == pytest.approx(model["normalizer.running_mean"].item(), rel=1e-6)
    assert rows[-1]["norm_var"] == pytest.approx(model["normalizer.running_var"].item(), rel=1e-6)
    assert rows[0]["norm_mean"] != rows[-1]["norm_mean"]


def test_per_channel_normaliser_and_per_layer_temperature_are_logged(tmp_path):
    name, s = resolve("vitn-12x256-8x8-lt", **{**TINY, "max_iter": 2, "eval_every": 2, "per_channel_normalizer": True})
    row = rows_of(train(name, s, runs_dir=tmp_path, device="cpu"), "train")[-1]
    assert {f"norm_mean/{c}" for c in range(3)} <= set(row) and "norm_mean" not in row
    taus = [row[f"tau/{i}"] for i in range(12)]
    assert "tau/12" not in row
    assert sum(taus) / 12 == pytest.approx(row["tau_mean"], rel=1e-5)


def test_runs_made_before_the_precision_setting_keep_their_identity(tmp_path):
    """Sweeps find the shipped runs' folders, and a checkpoint without the setting resumes."""
    config = json.loads(next((REPO / "artifacts/runs-h200").glob("*/resnet18/*-s0/config.json")).read_text())
    assert "precision" not in config["settings"]
    s = Settings(**config["settings"])
    assert f"{settings_key(s)}-s0" == config["run_id"]
    assert settings_key(s.replace(precision="fp32")) != settings_key(s)
    name, small = resolve("toy-dilated", **{**TINY, "max_iter": 2, "eval_every": 2, "save_every": 1})
    run = train(name, small.replace(max_iter=1), runs_dir=tmp_path, device="cpu")
    path = run / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    del state["settings"]["precision"]  # as written before the setting existed
    torch.save(state, path)
    assert load_checkpoint(run, "cpu", small.replace(max_iter=1))["step"] == 1
    with pytest.raises(ValueError, match="other settings"):
        load_checkpoint(run, "cpu", small.replace(max_iter=1, precision="bf16"))


def test_a_run_shorter_than_its_warm_up_is_warned_about():
    assert warmup_warning(Settings()) is None and warmup_warning(Settings(max_iter=30, constant_lr=1e-4)) is None
    message = warmup_warning(Settings(max_iter=30))
    assert "(30 of 500 warm-up steps)" in message and "--set warmup_num_steps=3" in message
    assert warmup_warning(Settings(max_iter=30, warmup_num_steps=3)) is None


def deepspeed_rates(s: Settings, steps: int) -> list[float]:
    """The rate each optimiser step of the original ran at, written out from its parts: torch
    Adam's default rate until DeepSpeed's scheduler first steps, which it does after each
    optimiser step (WarmupDecayLR, linear; a constant rate was WarmupLR with min = max)."""
    rates, lr, last = [], 1e-3, -1
    lo, hi = (s.constant_lr, s.constant_lr) if s.constant_lr else (s.warmup_min_lr, s.warmup_max_lr)
    warm = 1 if s.constant_lr else s.warmup_num_steps
    for _ in range(steps):
        rates.append(lr)  # optimizer.step() at the current rate
        last += 1  # then lr_scheduler.step()
        decay = max(0.0, (s.max_iter - last) / max(1, s.max_iter - warm))
        gamma = last / warm if last < warm else 1.0 if s.constant_lr else decay
        lr = lo + (hi - lo) * gamma
    return rates


def rates_seen(fn) -> list[float]:
    seen = []
    handle = register_optimizer_step_pre_hook(
        lambda opt, args, kwargs: seen.append(float(opt.param_groups[0]["lr"])))
    try:
        fn()
    finally:
        handle.remove()
    return seen


def test_original_schedule_gives_the_rates_the_originals_optimiser_saw(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "evaluate_splits", lambda run, state: None)  # rates only: no need to score
    tiny = {**TINY, "constant_lr": None, "batch_size": 4, "max_iter": 6, "eval_every": 6, "warmup_num_steps": 3,
            "warmup_min_lr": 1e-5, "warmup_max_lr": 4e-4}
    name, s = resolve("toy-dilated", **tiny, original_schedule=True)
    expected = deepspeed_rates(s, 6)
    assert expected[:2] == [1e-3, 1e-5] and expected[-1] == pytest.approx(4e-4 * 2 / 3 + 1e-5 / 3)
    seen = rates_seen(lambda: train(name, s, runs_dir=tmp_path, device="cpu"))
    assert seen == pytest.approx(expected, rel=1e-12)
    run = next(p.parent for p in tmp_path.glob("*/*/*/config.json"))
    assert json.loads((run / "config.json").read_text())["settings"]["original_schedule"] is True
    assert [r["lr"] for r in rows_of(run, "train")] == pytest.approx(expected, rel=1e-12)  # each step's rate
    # a constant rate (WarmupLR with min = max) was also 1e-3 at the first step
    constant = s.replace(constant_lr=1e-4, max_iter=100)
    assert [schedule.step_lr(k, constant) for k in range(100)] == pytest.approx(deepspeed_rates(constant, 100))
    # by default each step trains at the schedule's own rate for it, from warmup_min_lr
    default = s.replace(original_schedule=False)
    own = [schedule.step_lr(k, default) for k in range(6)]
    assert own == pytest.approx(expected[1:] + [schedule.warmup_decay_lr(5, s)])


def test_original_schedule_keeps_earlier_runs_identity_and_reaches_packed_runs(tmp_path, monkeypatch):
    assert "original_schedule" not in Settings().identity()
    assert settings_key(Settings(original_schedule=True)) != settings_key(Settings())
    monkeypatch.setattr(pack_module, "evaluate_splits", lambda run, state: None)
    name, s = resolve("toy-dilated", **{**TINY, "batch_size": 4, "max_iter": 3, "eval_every": 3, "constant_lr": 1e-4},
                      original_schedule=True)
    runs = pack_module.train_pack(name, [s, s.replace(seed=1)], [tmp_path / "p0", tmp_path / "p1"], device="cpu")
    for run in runs:
        assert [r["lr"] for r in rows_of(run, "train")] == pytest.approx([1e-3, 1e-4, 1e-4], rel=1e-12)
