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
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from nbkit import __version__
from nbkit.design.models import create_model, parameter_count
from nbkit.design.settings import Settings
from nbkit.errors import NonFiniteLoss, RunStopped, stop_signals
from nbkit.rundir import runlog
from nbkit.rundir.checkpoint import drop_previous, has_checkpoint, load_checkpoint, save_checkpoint
from nbkit.training import distributed
from nbkit.training.data import Dataset, load_dataset
from nbkit.training.distributed import World
from nbkit.training.evaluation import (
    evaluate_near_epoch_end,
    evaluate_splits,
    evaluation_due,
    near_epoch_end,
    pause_clock,
)
from nbkit.training.loader import TrainBatches, check_one_batch, eval_shards
from nbkit.training.records import peak_memory, with_probe, write_train_row
from nbkit.training.schedule import autocast_dtype, cpu_bf16_warning, precision_name, step_lr, warmup_warning
from nbkit.training.state import LoopState, RunParts
from nbkit.training.step import TrainStep, after_load, make_optimizer


def train(variant: str, s: Settings, runs_dir: str | Path | None = None, device: str = "auto",
          dataset: Dataset | None = None, label: str | None = None,
          progress: Callable[[dict], None] | None = None,
          run_dir: str | Path | None = None, resume: bool = False, restart: bool = False,
          definition: dict | None = None, tune: dict | None = None) -> Path:
    """Train one run and return its directory.

    runs_dir: where a new run folder goes (default: runlog.runs_dir()); run_dir: write there
    (created if needed) instead of a new timestamped folder; resume: continue the run in run_dir
    from its checkpoint (or the one before, when the last is unreadable); restart: begin again in
    a run_dir whose earlier attempt left no readable checkpoint; definition: the variant's
    (Variant.definition), recorded in config.json; tune: a tuning trial's study, number and sampled
    values (nbkit.sweeps.tune), recorded in config.json. Errors before the run starts (unknown
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
        # a resumed run's checkpoint is checked before the model it names is built; a new run's model
        # is built before its folder is made (an error leaves none behind)
        run = None if resume else _build(variant, s, ds, world, dev, progress)
        with contextlib.ExitStack() as held:
            with distributed.agreed(world, dev):  # rank 0 owns the run directory; the others only read
                if world.main:
                    run_dir = held.enter_context(runlog.open_run(
                        run_dir, runlog.runs_dir(runs_dir), ds.name, variant, s.seed, resume=resume, restart=restart))
                # with restart, open_run has cleared a run none of whose checkpoints can be read
                resuming = resume and (not restart or has_checkpoint(run_dir))
                checkpoint = load_checkpoint(run_dir, dev, s, variant) if resuming else None
            run = run or _build(variant, s, ds, world, dev, progress)
            run.run_dir = Path(run_dir) if run_dir is not None else None  # None on ranks > 0 of a new run
            _run(run, checkpoint, ds, label, **({"definition": definition} if definition else {}),
                 **({"tune": tune} if tune else {}))
        distributed.barrier()  # every process is done before any tears the group down
        return run.run_dir
    finally:
        distributed.stop(world)


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
                           sampling=s.sampling, count_seen=s.seen_probe,
                           switch_epoch=s.switch_epoch)
    return RunParts(variant, s, world, dev, model, opt, step, batches, eval_shards(ds, world, dev), generator, progress)


def uses_cuda_graph(s: Settings, dev: torch.device, world: World) -> bool:
    """Whether the step is captured: on a GPU, in one process (DDP's hooks are not captured
    here), and not under torch.compile (which makes its own choices)."""
    return s.cuda_graph and dev.type == "cuda" and not world.launched and not s.compile


def _run(run: RunParts, checkpoint: dict | None, ds: Dataset, label: str | None, **config) -> None:
    """Open the run's log, start or restore, train to the end, and say how it ended; config: more
    for a new run's config.json. SIGTERM, SIGINT and SIGHUP are a stop request from the first file written
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
                   wall_seconds=round(time.perf_counter() - state.start, 2), **peak_memory(run.dev))
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


def saving(s: Settings, step: int) -> bool:
    return step % s.save_every == 0 or step == s.max_iter


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
