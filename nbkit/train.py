"""The trainer: the original protocol by default, GPU-first, one plain loop.

Adam (0.9, 0.999, eps 1e-8, no weight decay), batch 128 sliced from a per-epoch permutation of
the training set held on the device, learning rate warm-up + linear decay, gradient-norm
clipping at 100, evaluation of train_200 and test every 100 steps, 5000 steps.

Logged like the original, as means over `log_every` steps (so no host sync per step): the
cross-entropy (`loss`), the loss trained on (`loss_total`: cross-entropy plus auxiliary losses),
top-1, learning rate, the gradient norm before clipping, the input normaliser's running
statistics, and the model's extras (auxiliary losses, each layer's attention temperature).
"""

from __future__ import annotations

import contextlib
import datetime
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from . import __version__, distributed, runlog, seen
from .checkpoint import drop_previous, has_checkpoint, load_checkpoint, save_checkpoint
from .data import Dataset, load_dataset
from .distributed import World
from .errors import NonFiniteLoss, RunStopped, stop_signals
from .loader import TrainBatches, check_one_batch, eval_shards, prepare, probe_generator
from .models import create_model, parameter_count
from .settings import Settings
from .step import TrainStep, after_load, make_optimizer


def warmup_decay_lr(step: int, s: Settings) -> float:
    """Linear warm-up from warmup_min_lr to warmup_max_lr over warmup_num_steps, then linear
    decay back to warmup_min_lr at max_iter (DeepSpeed's WarmupDecayLR, linear); or constant."""
    if s.constant_lr is not None:
        return s.constant_lr
    lo, hi, warm, total = s.warmup_min_lr, s.warmup_max_lr, s.warmup_num_steps, s.max_iter
    if step < warm:
        return lo + (hi - lo) * step / warm
    return max(lo, hi - (hi - lo) * (step - warm) / max(1, total - warm))


ADAM_DEFAULT_LR = 1e-3  # torch's Adam default: the original's rate until its scheduler first stepped


def step_lr(step: int, s: Settings) -> float:
    """The rate step `step` (from 0) trains at: the schedule's, or with `original_schedule` the
    original's, whose DeepSpeed set no rate before the first step (Adam's default 1e-3) and
    stepped its scheduler after the optimiser, so step k trained at the schedule's rate of k - 1."""
    if not s.original_schedule:
        return warmup_decay_lr(step, s)
    return ADAM_DEFAULT_LR if step == 0 else warmup_decay_lr(step - 1, s)


def autocast_dtype(s: Settings, dev: torch.device) -> torch.dtype | None:
    """The training step's autocast: bf16 (precision bf16, or auto on CUDA) or None (fp32, as the original)."""
    if s.precision == "bf16" or (s.precision == "auto" and dev.type == "cuda"):
        return torch.bfloat16
    return None


def evaluation_dtype(s: Settings, dev: torch.device) -> torch.dtype | None:
    """Evaluation's autocast: the training's on CUDA, where bf16 is the faster; fp32 on the CPU,
    where it is the faster (bf16 convolutions there are many times slower)."""
    return autocast_dtype(s, dev) if dev.type == "cuda" else None


def warmup_warning(s: Settings) -> str | None:
    """Why a run that ends within its warm-up looks broken (the rate never reaches its peak), or None."""
    if s.constant_lr is not None or s.max_iter > s.warmup_num_steps:
        return None
    return (f"the run ends within its learning-rate warm-up ({s.max_iter} of {s.warmup_num_steps} warm-up steps): "
            f"the rate never exceeds {warmup_decay_lr(s.max_iter, s):.2g} of its {s.warmup_max_lr:g} peak, so the "
            f"model barely learns; for a short run shorten the warm-up too, e.g. "
            f"--set warmup_num_steps={max(1, s.max_iter // 10)}")


def cpu_bf16_warning(s: Settings, dev: torch.device) -> str | None:
    """Why a run in bf16 on the CPU is slow (the CPU's bf16 kernels are many times slower), or None."""
    if dev.type != "cpu" or autocast_dtype(s, dev) is None:
        return None
    return ("precision bf16 on the CPU trains many times slower than fp32 (measured: 13x for a resnet18 step); "
            "for speed on the CPU use --precision fp32 (or auto)")


def precision_name(s: Settings, dev: torch.device) -> str:
    return "bf16" if autocast_dtype(s, dev) is not None else "fp32"


@torch.inference_mode()
def evaluate(model, images: Tensor, labels: Tensor, batch_size: int, fmt: torch.memory_format,
             augmented: tuple | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """(correct, summed loss) over the images given, left on the device: the caller syncs once
    (and, in a multi-process run, sums them over the ranks first). augmented: (generator, part,
    total) scores the images augmented as training augments them (the original's train_200 probe).
    dtype: the training's autocast, used here too (bf16 evaluation costs a fraction of fp32's)."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(2, device=images.device)
    if augmented is not None:
        images = prepare(images, fmt, *augmented)
    autocast = torch.autocast(images.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    for i in range(0, len(labels), batch_size):
        y = labels[i:i + batch_size]
        x = images[i:i + batch_size]
        with autocast:
            logits, _ = model(x if augmented is not None else prepare(x, fmt))
        totals[0] += (logits.argmax(-1) == y).sum()
        totals[1] += F.cross_entropy(logits.float(), y, reduction="sum")
    model.train(was_training)
    return totals


def train(variant: str, s: Settings, runs_dir: str | Path | None = None, device: str = "auto",
          dataset: Dataset | None = None, label: str | None = None,
          progress: Callable[[dict], None] | None = None,
          run_dir: str | Path | None = None, resume: bool = False, restart: bool = False,
          definition: dict | None = None) -> Path:
    """Train one run and return its directory.

    runs_dir: where a new run folder goes (default: runlog.runs_dir()); run_dir: write there
    (created if needed) instead of a new timestamped folder; resume: continue the run in run_dir
    from its checkpoint (or the one before, when the last is unreadable); restart: begin again in
    a run_dir whose earlier attempt left no readable checkpoint; definition: the variant's
    (Variant.definition), recorded in config.json. Errors before the run starts (unknown
    dataset, bad settings) leave no run directory behind.

    Started by torchrun (RANK and WORLD_SIZE set), the processes train the run together with
    DistributedDataParallel: the global batch stays batch_size, rank 0 alone writes the run.
    """
    world = distributed.from_env()
    dev = distributed.pick_device(device, world)
    if s.batch_size % world.size:
        raise ValueError(f"batch_size {s.batch_size} does not split evenly over {world.size} processes; "
                         "expected a global batch divisible by --nproc_per_node x nodes")
    distributed.start(world, dev)
    try:
        ds = dataset if dataset is not None else load_dataset(s.dataset, s.data_dir, s.val_size, s.train_size,
                                                              s.train_fraction)
        check_one_batch(ds, s)
        run = _build(variant, s, ds, world, dev, progress)
        with contextlib.ExitStack() as held:
            with distributed.agreed(world, dev):  # rank 0 owns the run directory; the others only read
                if world.main:
                    run_dir = held.enter_context(runlog.open_run(
                        run_dir, runlog.runs_dir(runs_dir), ds.name, variant, s.seed, resume=resume, restart=restart))
                # with restart, open_run has cleared a run none of whose checkpoints can be read
                resuming = resume and (not restart or has_checkpoint(run_dir))
                checkpoint = load_checkpoint(run_dir, dev, s, variant) if resuming else None
            run.run_dir = Path(run_dir) if run_dir is not None else None  # None on ranks > 0 of a new run
            _run(run, checkpoint, ds, label, **({"definition": definition} if definition else {}))
        distributed.barrier()  # every process is done before any tears the group down
        return run.run_dir
    finally:
        distributed.stop(world)


@dataclass
class RunParts:
    """What a run trains with; fixed once the loop starts."""
    variant: str
    s: Settings
    world: World
    dev: torch.device
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    step: TrainStep  # forward (the model, or its DDP / compiled wrapper), backward, clipping, Adam
    batches: TrainBatches
    evals: dict
    generator: torch.Generator
    progress: Callable[[dict], None] | None
    run_dir: Path | None = None
    log: runlog.RunWriter | runlog.NoWriter = field(default_factory=runlog.NoWriter)


@dataclass
class LoopState:
    """What the loop carries from step to step; a checkpoint saves it beside model and optimiser."""
    step: int = 0
    window: list = field(default_factory=list)  # per-step stats kept on the device until the next train row
    extra_keys: list = field(default_factory=list)  # the model's extras, in the window's column order
    start: float = 0.0  # perf_counter at the run's step 0 (earlier processes' time included)
    first_step: int = 0  # this process's first step
    train_seconds: float = 0.0  # this process's time in training steps (evaluation excluded)
    segment_start: float = 0.0  # perf_counter when the current stretch of training steps began
    last_loss: float | None = None
    last_test: float | None = None

    def images_per_second(self, batch_size: int) -> float:
        return (self.step - self.first_step) * batch_size / max(self.train_seconds, 1e-9)


def _build(variant: str, s: Settings, ds: Dataset, world: World, dev: torch.device, progress) -> RunParts:
    cuda = dev.type == "cuda"
    torch.manual_seed(s.seed)  # initialisation, dropout, MixStyle's coin
    model = create_model(s, ds.num_classes).to(dev)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    forward = model
    if world.launched:
        if cuda:  # batch statistics over the global batch, as in one process
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif world.size > 1 and world.main and any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            print("nbkit: BatchNorm statistics are per process on the CPU (SyncBatchNorm needs GPUs); "
                  "results differ slightly from a single-process run", flush=True)
        forward = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if cuda else None)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, step_lr(0, s), dev)
    forward = torch.compile(forward) if s.compile else forward
    step = TrainStep(model, forward, opt, params, s.gradient_clipping, autocast_dtype(s, dev), dev,
                     capture=uses_cuda_graph(s, dev, world), example_losses=s.seen_probe)
    generator = torch.Generator(dev).manual_seed(s.seed)  # data order and augmentation, the same on every rank
    batches = TrainBatches(ds, s.batch_size, world, dev, generator, augmented=s.use_augmentation,
                           sampling=s.sampling, count_seen=s.seen_probe)
    return RunParts(variant, s, world, dev, model, opt, step, batches, eval_shards(ds, world, dev), generator, progress)


def uses_cuda_graph(s: Settings, dev: torch.device, world: World) -> bool:
    """Whether the step is captured: on a GPU, in one process (DDP's hooks are not captured
    here), and not under torch.compile (which makes its own choices)."""
    return s.cuda_graph and dev.type == "cuda" and not world.launched and not s.compile


def _run(run: RunParts, checkpoint: dict | None, ds: Dataset, label: str | None, **config) -> None:
    """Open the run's log, start or restore, train to the end, and say how it ended; config: more
    for a new run's config.json. SIGTERM and SIGINT are a stop request from the first file written
    to the last: a signal during start or while stopping (a second Ctrl-C) never cuts a checkpoint
    or a status short."""
    state = LoopState()
    with stop_signals() as stop_requested:
        try:
            state = start(run, checkpoint, ds, label, **config)
            _loop(run, state, stop_requested)
            finish(run, state)
        except BaseException as e:
            ended(run, state, e)
            raise
        finally:
            run.log.close()


def start(run: RunParts, checkpoint: dict | None, ds: Dataset, label: str | None, **config) -> LoopState:
    """Open the run's log and write its config (a new run) or restore it (a resumed one)."""
    if run.world.main:
        if checkpoint is not None:
            runlog.truncate_metrics(run.run_dir / runlog.METRICS, checkpoint["step"])  # rows past it are redone
        run.log = runlog.RunWriter(run.run_dir)
    state, elapsed = LoopState(), 0.0
    if checkpoint is None:
        if run.world.main:
            run.log.config(_config_record(run, ds, label) | config)
            if warning := warmup_warning(run.s):
                print(f"nbkit: warning: {warning}", file=sys.stderr, flush=True)
    else:
        elapsed = _restore(run, state, checkpoint)
    if run.world.main and (warning := cpu_bf16_warning(run.s, run.dev)):
        print(f"nbkit: warning: {warning}", file=sys.stderr, flush=True)
    run.log.status("running", state.step)
    state.start, state.segment_start = time.perf_counter() - elapsed, time.perf_counter()
    return state


def finish(run: RunParts, state: LoopState) -> None:
    run.log.check()  # a run whose log was deleted meanwhile is not done
    run.log.status("done", state.step, images_per_second=round(state.images_per_second(run.s.batch_size), 1),
                   wall_seconds=round(time.perf_counter() - state.start, 2), **_peak_memory(run.dev))
    if run.world.main:
        drop_previous(run.run_dir)


def ended(run: RunParts, state: LoopState, e: BaseException) -> None:
    """Say how a run ended early: stopped (with a checkpoint to resume from) or failed, and why.
    A run whose log could not be opened is marked through runlog.mark."""
    if isinstance(e, RunStopped):
        try:
            write_checkpoint(run, state)
        except BaseException as lost:  # never "stopped" without a checkpoint to resume from
            _say(run, "failed", state.step, f"stopped by {e}, but its checkpoint could not be written "
                                            f"({type(lost).__name__}: {lost})")
            raise
        _say(run, "stopped", state.step, f"stopped by {e}")
        distributed.barrier()  # no rank leaves (and makes torchrun end the others) before the checkpoint
    elif isinstance(e, NonFiniteLoss):
        _say(run, "failed", state.step, str(e))
    else:
        _say(run, "failed", state.step, f"{type(e).__name__}: {e}")


def _say(run: RunParts, state: str, step: int, reason: str) -> None:
    if isinstance(run.log, runlog.RunWriter):
        run.log.status(state, step, reason=reason)
    elif run.world.main and run.run_dir is not None:
        runlog.mark(run.run_dir, state, reason)


def _loop(run: RunParts, state: LoopState, stop_requested: list[str]) -> None:
    s = run.s
    run.model.train()
    while state.step < s.max_iter:
        # forward, backward, clipping, Adam at this step's learning rate (captured once on a GPU)
        x, y = run.batches(state.step)
        # log window: the step's statistics stay on the device until the window is written
        stats = run.step(x, y, step_lr(state.step, s))
        state.window.append(with_probe(run, stats, run.step.example_losses))
        state.step += 1
        if not state.extra_keys:
            state.extra_keys = run.step.extra_keys
        evaluating, near = evaluation_due(s, state.step), near_epoch_end(s, state.step, run.batches.steps)
        stop_agreed = False
        if len(state.window) >= s.log_every or evaluating or near:
            stop_agreed = write_train_row(run, state, stop_requested)
        # evaluation
        if evaluating:
            pause_clock(run, state)
            evaluate_splits(run, state)
        # the held-out probe around epoch ends
        if near:
            pause_clock(run, state)
            evaluate_near_epoch_end(run, state)
        # checkpoint
        if saving(s, state.step):
            write_checkpoint(run, state)
        # stop: at once in one process; under torchrun at a window all ranks agreed on
        if state.step < s.max_iter and (stop_agreed or (stop_requested and not run.world.launched)):
            raise RunStopped(stop_requested[0] if stop_requested else "a signal to another process")


def write_train_row(run: RunParts, state: LoopState, stop_requested: list[str]) -> bool:
    """Write the window's means as one train row; under torchrun, also whether any rank was asked to stop."""
    if not state.window:
        return False
    stacked = torch.stack(state.window)
    # means, the count of non-finite losses and (under torchrun) stop requests, summed over the
    # ranks in one transfer: the one host sync per window, and where all ranks agree to stop
    norm = _normalizer_stats(run.model)
    local = [stacked.mean(0), (~stacked[:, :1].isfinite()).sum().float().view(1), *norm.values()]
    if run.world.launched:
        local.append(torch.full((1,), float(bool(stop_requested)), device=run.dev))
    summed = distributed.total(torch.cat(local)).tolist()
    k = stacked.shape[1]
    means = [v / run.world.size for v in summed]  # the normaliser's statistics are the same on every rank
    stats, nonfinite = means[:k], summed[k]
    n = sum(t.numel() for t in norm.values())
    normalizer, stops = means[k + 1:k + 1 + n], summed[k + 1 + n:]
    state.window = []
    row = {"step": state.step, "split": "train", "time": round(time.perf_counter() - state.start, 3),
           "loss": stats[0], "acc_top1": stats[1], "loss_total": stats[2], "grad_norm": stats[3],
           "lr": step_lr(state.step - 1, run.s)}  # the last step's
    row.update(_normalizer_columns(norm, normalizer))
    row.update(zip(state.extra_keys, stats[4:]))
    row.update(seen.row_columns(stats[4 + len(state.extra_keys):]))  # nothing without the probe
    state.last_loss = stats[0]
    run.log.metrics([row])
    report_progress(run, state)
    if nonfinite:
        raise NonFiniteLoss(f"non-finite loss (NaN or Inf) in steps {state.step - len(stacked) + 1}..{state.step}")
    return bool(stops and stops[0])


def with_probe(run: RunParts, stats: Tensor, example_losses: Tensor | None) -> Tensor:
    """The step's statistics, with the seen-count probe's columns after them when it is on."""
    if not run.s.seen_probe:
        return stats
    return torch.cat([stats, seen.window_columns(run.batches.groups, example_losses)])


def _peak_memory(dev: torch.device) -> dict:
    """This process's peak host memory (RSS) and, on a GPU, the most memory its tensors held, in MiB."""
    import resource

    out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}  # KiB on Linux
    if dev.type == "cuda":
        out["gpu_memory_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
    return out


def _normalizer_stats(model) -> dict[str, Tensor]:
    """The input normaliser's running mean and variance (one value, or one per channel); none without it."""
    norm = getattr(model, "normalizer", None)
    if not isinstance(getattr(norm, "running_mean", None), Tensor):
        return {}
    return {"norm_mean": norm.running_mean.detach().float(), "norm_var": norm.running_var.detach().float()}


def _normalizer_columns(norm: dict[str, Tensor], values: list[float]) -> dict[str, float]:
    """norm_mean / norm_var, or norm_mean/<channel> ... for a per-channel normaliser."""
    out, i = {}, 0
    for name, t in norm.items():
        for c in range(t.numel()):
            out[name if t.numel() == 1 else f"{name}/{c}"] = values[i]
            i += 1
    return out


def evaluation_due(s: Settings, step: int) -> bool:
    return step % s.eval_every == 0 or step == s.max_iter


def saving(s: Settings, step: int) -> bool:
    return step % s.save_every == 0 or step == s.max_iter


def near_epoch_end(s: Settings, step: int, steps_per_epoch: int) -> bool:
    """Whether the held-out probe scores val at this step: every log_every steps within
    boundary_eval steps of an epoch's end (the first epoch's start excluded)."""
    if not s.boundary_eval or step % s.log_every or step + s.boundary_eval < steps_per_epoch:
        return False
    into = step % steps_per_epoch
    return min(into, steps_per_epoch - into) <= s.boundary_eval


def evaluate_near_epoch_end(run: RunParts, state: LoopState) -> None:
    """The held-out probe: val scored as at an evaluation, logged as `val_dense`; then the clock restarts."""
    images, labels, n = run.evals["val"]
    sums = distributed.total(evaluate(run.model, images, labels, run.s.eval_batch_size, run.batches.fmt,
                                      dtype=evaluation_dtype(run.s, run.dev)))
    acc, loss = (sums / n).tolist()
    run.log.metrics([{"step": state.step, "split": "val_dense", "time": round(time.perf_counter() - state.start, 3),
                      "acc_top1": acc, "loss": loss}])
    state.segment_start = time.perf_counter()


def pause_clock(run: RunParts, state: LoopState) -> None:
    """End a stretch of training steps: what follows (evaluation) is not training time."""
    if run.dev.type == "cuda":
        torch.cuda.synchronize(run.dev)
    state.train_seconds += time.perf_counter() - state.segment_start


def evaluate_splits(run: RunParts, state: LoopState) -> None:
    """Top-1 and loss on every evaluated split, then the clock restarts."""
    rows = []
    for split, (images, labels, n) in run.evals.items():
        for name, augmented in _probes(run, split, state.step, n):
            sums = distributed.total(evaluate(run.model, images, labels, run.s.eval_batch_size, run.batches.fmt,
                                              augmented, evaluation_dtype(run.s, run.dev)))
            acc, loss = (sums / n).tolist()
            rows.append({"step": state.step, "split": name, "time": round(time.perf_counter() - state.start, 3),
                         "acc_top1": acc, "loss": loss})
            if name == "test":
                state.last_test = acc
    run.log.metrics(rows)
    run.log.status("running", state.step, images_per_second=round(state.images_per_second(run.s.batch_size), 1))
    report_progress(run, state, evaluated=True)
    state.segment_start = time.perf_counter()


def report_progress(run: RunParts, state: LoopState, evaluated: bool = False) -> None:
    """Tell the progress callback (the CLI's bar) where the run is: at every log window and evaluation."""
    if run.progress:
        running = 0.0 if evaluated else time.perf_counter() - state.segment_start  # the stretch not yet counted
        ips = (state.step - state.first_step) * run.s.batch_size / max(state.train_seconds + running, 1e-9)
        run.progress({"step": state.step, "max_iter": run.s.max_iter, "loss": state.last_loss,
                      "test_acc": state.last_test, "images_per_second": ips, "evaluated": evaluated})


def _probes(run: RunParts, split: str, step: int, n: int) -> list[tuple[str, tuple | None]]:
    """How a split is scored: clean; and for train_200 of an augmented run also as the original
    scored it, on freshly augmented images (`train_200_aug`, seeded by seed and step so reruns
    agree; each rank augments its share as one process would)."""
    probes = [(split, None)]
    if split == "train_200" and run.s.use_augmentation:
        generator = probe_generator(run.s.seed, step, run.dev)
        probes.append(("train_200_aug", (generator, slice(run.world.rank, None, run.world.size), n)))
    return probes


def write_checkpoint(run: RunParts, state: LoopState) -> None:
    """Everything the next step depends on, so a resumed run continues exactly (rank 0 writes)."""
    if not run.world.main:
        return
    cuda = run.dev.type == "cuda"
    save_checkpoint(run.run_dir, {
        "model": run.model.state_dict(), "optimizer": run.opt.state_dict(), "step": state.step,
        "settings": run.s.to_dict(), "variant": run.variant, "generator": run.generator.get_state(),
        "cpu_rng": torch.get_rng_state(), "cuda_rng": torch.cuda.get_rng_state(run.dev) if cuda else None,
        **run.batches.state_dict(), "window": torch.stack(state.window) if state.window else None,
        "extra_keys": state.extra_keys, "elapsed": time.perf_counter() - state.start})


def _restore(run: RunParts, state: LoopState, checkpoint: dict) -> float:
    """Model, optimiser, loop state, RNGs and data order as they were; returns the time trained so far."""
    run.model.load_state_dict(checkpoint["model"])
    run.opt.load_state_dict(checkpoint["optimizer"])
    after_load(run.opt, run.dev)
    state.step = state.first_step = checkpoint["step"]
    run.generator.set_state(checkpoint["generator"].cpu())
    torch.set_rng_state(checkpoint["cpu_rng"].cpu())
    if run.dev.type == "cuda" and checkpoint.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(checkpoint["cuda_rng"].cpu(), run.dev)
    state.extra_keys = list(checkpoint["extra_keys"])
    state.window = [_window_row(r, len(state.extra_keys)) for r in checkpoint["window"]] if checkpoint["window"] is not None else []
    run.batches.load_state_dict(checkpoint)
    return checkpoint["elapsed"]


def _window_row(row: Tensor, extras: int) -> Tensor:
    """A checkpointed step's statistics in this version's columns: one saved before loss_total and
    grad_norm were logged has NaN there (read back as not measured)."""
    if len(row) == 2 + extras:
        nan = torch.full((2,), float("nan"), device=row.device)
        return torch.cat([row[:2], nan, row[2:]])
    return row


def _config_record(run: RunParts, ds: Dataset, label: str | None) -> dict:
    cuda = run.dev.type == "cuda"
    return {
        "variant": run.variant, "label": label, "run_id": run.run_dir.name, "seed": run.s.seed,
        "settings": run.s.to_dict(), "dataset": ds.describe(), "parameters": parameter_count(run.model),
        "steps_per_epoch": run.batches.steps, "world_size": run.world.size,
        "precision": precision_name(run.s, run.dev), "cuda_graph": uses_cuda_graph(run.s, run.dev, run.world),
        "nbkit_version": __version__, "git_commit": _git_commit(), "torch_version": torch.__version__,
        "device": torch.cuda.get_device_name(run.dev) if cuda else "cpu",
        "start_time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
