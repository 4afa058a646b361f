"""The trainer: the original protocol by default, GPU-first, one plain loop.

Adam (0.9, 0.999, eps 1e-8, no weight decay), batch 128 sliced from a per-epoch permutation of
the training set held on the device, learning rate warm-up + linear decay, gradient-norm
clipping at 100, evaluation of train_200 and test every 100 steps, 5000 steps.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from . import __version__, distributed
from .augment import augment
from .data import Dataset, load_dataset
from .distributed import World
from .models import create_model, parameter_count
from .runlog import CHECKPOINT, CONFIG, METRICS, STATUS, RunWriter, new_run_dir, read_status, truncate_metrics
from .settings import Settings


def warmup_decay_lr(step: int, s: Settings) -> float:
    """Linear warm-up from warmup_min_lr to warmup_max_lr over warmup_num_steps, then linear
    decay back to warmup_min_lr at max_iter (DeepSpeed's WarmupDecayLR, linear); or constant."""
    if s.constant_lr is not None:
        return s.constant_lr
    lo, hi, warm, total = s.warmup_min_lr, s.warmup_max_lr, s.warmup_num_steps, s.max_iter
    if step < warm:
        return lo + (hi - lo) * step / warm
    return max(lo, hi - (hi - lo) * (step - warm) / max(1, total - warm))


class RunStopped(Exception):
    """Raised in the loop by SIGTERM/SIGINT so the run can checkpoint and mark itself stopped."""


class NonFiniteLoss(Exception):
    pass


def pick_device(device: str = "auto", world: World = distributed.SINGLE) -> torch.device:
    """auto, cpu, cuda or cuda:N; under torchrun, cuda means this process's LOCAL_RANK GPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device expects auto, cpu or cuda[:N], got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for but no CUDA GPU is available; use --device cpu")
    if world.launched and device.startswith("cuda:"):
        raise ValueError(f"--device {device} under torchrun would put every process on one GPU; "
                         "use --device cuda (each process takes its LOCAL_RANK GPU)")
    if device == "cuda" and world.launched:
        if world.local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {world.local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                             "start at most one process per GPU")
        device = f"cuda:{world.local_rank}"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is not None:
        torch.cuda.set_device(dev)
    return dev


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


@torch.inference_mode()
def evaluate(model, images: torch.Tensor, labels: torch.Tensor, batch_size: int, prepare) -> torch.Tensor:
    """(correct, summed loss) over the images given, left on the device: the caller syncs once
    (and, in a multi-process run, sums them over the ranks first)."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(2, device=images.device)
    for i in range(0, len(labels), batch_size):
        y = labels[i:i + batch_size]
        logits, _ = model(prepare(images[i:i + batch_size]))
        totals[0] += (logits.argmax(-1) == y).sum()
        totals[1] += F.cross_entropy(logits.float(), y, reduction="sum")
    model.train(was_training)
    return totals


@contextlib.contextmanager
def _stop_on_signals():
    """SIGTERM and SIGINT ask the loop to stop at the next step boundary, where the state is
    whole, so the final checkpoint resumes exactly (main thread only). Yields the request."""
    requested: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def handler(signum, frame):
        requested.append(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield requested
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def _exclusive(run_dir: Path):
    """Hold an exclusive lock on the run directory for the life of the process writing it;
    the OS drops it when the process dies, even by SIGKILL."""
    fd = os.open(run_dir / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunBusy(f"{run_dir} is being written by another process") from None
        yield
    finally:
        os.close(fd)


class RunBusy(RuntimeError):
    pass


def writable(path: str | Path) -> Path:
    """Create the directory if needed and prove it takes a file, or say so in one line."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"runs directory {path} is not writable ({e.strerror or type(e).__name__}); "
                         "expected a directory this user can write, see --runs-dir") from None
    return path


def load_checkpoint(run_dir: Path, device) -> dict:
    path = Path(run_dir) / CHECKPOINT
    try:  # weights_only: a crafted pickle cannot run code
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"cannot resume {run_dir}: it has no {CHECKPOINT} yet") from None
    except Exception as e:
        raise ValueError(f"cannot resume {run_dir}: {CHECKPOINT} is corrupt or not a checkpoint "
                         f"({type(e).__name__})") from None


def resume_settings(run_dir: Path, overrides: dict | None = None) -> tuple[str, Settings]:
    """The variant and settings of an existing run; overrides that change them are refused."""
    try:
        config = json.loads((Path(run_dir) / CONFIG).read_text())
        settings = Settings(**config["settings"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"cannot resume {run_dir}: no readable {CONFIG} ({type(e).__name__})") from None
    if overrides:
        changed = settings.replace(**overrides)
        diff = {k: v for k, v in changed.to_dict().items() if settings.to_dict()[k] != v}
        if diff:
            raise ValueError(f"cannot resume {run_dir} with a different config (changed: {diff}); "
                             "start a new run instead")
    return config["variant"], settings


class TrainBatches:
    """The training batches in the run's data order: batch i of an epoch is perm[i*B:(i+1)*B].

    In one process the whole training split lives on the device. Under torchrun, rank r trains
    on the r-th slice of every batch; the split stays in host memory and at each epoch's start
    this rank's images for the epoch (its shard) are gathered and moved to its device.
    """

    def __init__(self, ds: Dataset, batch_size: int, world: World, dev: torch.device):
        self.B, self.world, self.dev = batch_size, world, dev
        self.b = batch_size // world.size  # this rank's part of a batch
        self.steps = ds.size("train") // batch_size  # per epoch, drop_last
        x, y = ds.images["train"], ds.labels["train"]
        if world.launched:
            self.host = (x.pin_memory() if dev.type == "cuda" else x, y)
            self.x = self.y = None
        else:
            self.x, self.y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        self.perm = None

    def epoch(self, perm: torch.Tensor) -> None:
        self.perm = perm
        if self.world.launched:
            order = perm[:self.steps * self.B].view(self.steps, self.world.size, self.b)[:, self.world.rank]
            idx = order.reshape(-1).cpu()
            self.x = self.host[0][idx].to(self.dev, non_blocking=True)
            self.y = self.host[1][idx].to(self.dev, non_blocking=True)

    def batch(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.world.launched:
            return self.x[i * self.b:(i + 1) * self.b], self.y[i * self.b:(i + 1) * self.b]
        idx = self.perm[i * self.B:(i + 1) * self.B]
        return self.x[idx], self.y[idx]


class _NoLog:
    """What ranks other than 0 write: nothing."""

    def config(self, config): pass
    def status(self, state, step, **fields): pass
    def metrics(self, rows): pass
    def close(self): pass


def train(variant: str, s: Settings, runs_dir: str | Path = "artifacts/runs", device: str = "auto",
          dataset: Dataset | None = None, label: str | None = None,
          progress: Callable[[dict], None] | None = None,
          run_dir: str | Path | None = None, resume: bool = False, restart: bool = False) -> Path:
    """Train one run and return its directory.

    run_dir: write there (created if needed) instead of a new timestamped folder;
    resume: continue the run in run_dir from its checkpoint; restart: begin again in a run_dir
    whose earlier attempt never reached a checkpoint. Errors before the run starts
    (unknown dataset, bad settings) leave no run directory behind.

    Started by torchrun (RANK and WORLD_SIZE set), the processes train the run together with
    DistributedDataParallel: the global batch stays batch_size, rank 0 alone writes the run.
    """
    world = distributed.from_env()
    dev = pick_device(device, world)
    if s.batch_size % world.size:
        raise ValueError(f"batch_size {s.batch_size} does not split evenly over {world.size} processes; "
                         "expected a global batch divisible by --nproc_per_node x nodes")
    distributed.start(world, dev)
    try:
        run_dir = _train(variant, s, runs_dir, dev, world, dataset, label, progress, run_dir, resume, restart)
        distributed.barrier()  # every process is done before any tears the group down
        return run_dir
    finally:
        distributed.stop(world)


def _train(variant, s, runs_dir, dev, world, dataset, label, progress, run_dir, resume, restart) -> Path:
    cuda = dev.type == "cuda"
    ds = dataset if dataset is not None else load_dataset(s.dataset, s.data_dir, s.val_size)
    n_train, B = ds.size("train"), s.batch_size
    if n_train // B == 0:
        raise ValueError(f"batch_size {B} exceeds the {n_train} training images")
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
    opt = torch.optim.Adam(params, lr=warmup_decay_lr(0, s), betas=(0.9, 0.999), eps=1e-8,
                           weight_decay=0.0, **({"fused": True} if cuda else {}))
    forward = torch.compile(forward) if s.compile else forward
    batches = TrainBatches(ds, B, world, dev)
    # evaluation: each rank holds every world.size-th image of a split; the sums are gathered
    evals = {split: (ds.images[split][world.rank::world.size].to(dev), ds.labels[split][world.rank::world.size].to(dev),
                     ds.size(split)) for split in ds.splits_eval}
    gen = torch.Generator(dev).manual_seed(s.seed)  # data order and augmentation, the same on every rank

    if not world.main:  # rank 0 owns the run directory; the others only read a checkpoint
        with _agreed(world, dev):
            state = load_checkpoint(Path(run_dir), dev) if resume else None
        return _loop(variant, s, run_dir, model, forward, opt, params, batches, evals, ds, gen, dev, world,
                     label, None, state)
    with contextlib.ExitStack() as held:
        with _agreed(world, dev):
            if run_dir is None:
                run_dir = new_run_dir(writable(runs_dir), ds.name, variant, f"{time.strftime('%Y%m%d-%H%M%S')}-s{s.seed}")
            run_dir = Path(run_dir)
            if resume and not (run_dir / CONFIG).exists():
                raise ValueError(f"cannot resume {run_dir}: it holds no run ({CONFIG} is missing)")
            writable(run_dir)
            held.enter_context(_exclusive(run_dir))  # from here on this process alone writes the run
            state = None
            if read_status(run_dir).get("state") == "done":  # e.g. finished by a concurrent sweep meanwhile
                raise RunBusy(f"{run_dir} already holds a finished run; nothing to do")
            if resume:
                state = load_checkpoint(run_dir, dev)
                if state.get("settings") != s.to_dict():
                    raise ValueError(f"cannot resume {run_dir}: its checkpoint was made with other settings")
            elif (run_dir / CONFIG).exists():
                if not restart or (run_dir / CHECKPOINT).exists():
                    raise ValueError(f"{run_dir} already holds a run; use --resume to continue it")
                for name in (CONFIG, METRICS, STATUS):  # an attempt that never reached a checkpoint
                    (run_dir / name).unlink(missing_ok=True)
        return _loop(variant, s, run_dir, model, forward, opt, params, batches, evals, ds, gen, dev, world,
                     label, progress, state)


@contextlib.contextmanager
def _agreed(world: World, dev: torch.device):
    """Under torchrun: every process gets through its preparation, or all of them stop (the one
    that failed says why) instead of the others waiting in their first collective."""
    try:
        yield
    except BaseException:
        _vote(world, dev, False)
        raise
    if not _vote(world, dev, True):
        raise ValueError("another process of this run could not start it (its error says why)")


def _vote(world: World, dev: torch.device, ok: bool) -> bool:
    if not world.launched:
        return ok
    return distributed.total(torch.tensor([float(ok)], device=dev)).item() == world.size


def _loop(variant, s, run_dir, model, forward, opt, params, batches, evals, ds, gen, dev, world, label,
          progress, state) -> Path:
    cuda = dev.type == "cuda"
    if state is not None and world.main:
        truncate_metrics(run_dir / METRICS, state["step"])  # rows past the checkpoint are redone
    log = RunWriter(run_dir) if world.main else _NoLog()
    B, steps_per_epoch = s.batch_size, batches.steps
    step, elapsed = 0, 0.0
    window: list[torch.Tensor] = []  # per-step stats kept on the device until the next write
    extra_keys: list[str] = []
    if state is None:
        log.config({
            "variant": variant, "label": label, "run_id": run_dir.name if world.main else None, "seed": s.seed,
            "settings": s.to_dict(), "dataset": ds.describe(), "parameters": parameter_count(model),
            "steps_per_epoch": steps_per_epoch, "world_size": world.size,
            "nbkit_version": __version__, "git_commit": git_commit(), "torch_version": torch.__version__,
            "device": torch.cuda.get_device_name(dev) if cuda else "cpu",
            "start_time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        })
    else:  # restore everything the next step depends on
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, elapsed = state["step"], state["elapsed"]
        gen.set_state(state["generator"].cpu())
        torch.set_rng_state(state["cpu_rng"].cpu())
        if cuda and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), dev)
        window = list(state["window"]) if state["window"] is not None else []
        extra_keys = list(state["extra_keys"])
        if state["perm"] is not None:
            batches.epoch(state["perm"])
    log.status("running", step)

    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    fmt = torch.channels_last if cuda else torch.contiguous_format

    def prepare(x_uint8):
        return x_uint8.float().div_(255).contiguous(memory_format=fmt)

    start = time.perf_counter() - elapsed
    train_seconds, images_seen, segment_start = 0.0, 0, time.perf_counter()
    first_step = step
    last_test = last_loss = None

    def checkpoint(step):
        if not world.main:
            return
        ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                "settings": s.to_dict(), "variant": variant, "generator": gen.get_state(),
                "cpu_rng": torch.get_rng_state(), "cuda_rng": torch.cuda.get_rng_state(dev) if cuda else None,
                "perm": batches.perm, "window": torch.stack(window) if window else None, "extra_keys": extra_keys,
                "elapsed": time.perf_counter() - start}
        tmp = run_dir / f".{CHECKPOINT}.tmp"
        torch.save(ckpt, tmp)
        os.replace(tmp, run_dir / CHECKPOINT)

    def flush(step, stop_requested) -> bool:
        """Write the window's means; under torchrun, also whether any rank was asked to stop."""
        nonlocal window, last_loss
        if not window:
            return False
        stacked = torch.stack(window)
        # means, the count of non-finite losses and (under torchrun) stop requests, summed over the
        # ranks in one transfer: the one host sync per window, and where all ranks agree to stop
        local = [stacked.mean(0), (~stacked[:, :1].isfinite()).sum().float().view(1)]
        if world.launched:
            local.append(torch.full((1,), float(bool(stop_requested)), device=dev))
        summed = distributed.total(torch.cat(local)).tolist()
        k = stacked.shape[1]
        stats, nonfinite, stops = [v / world.size for v in summed[:k]], summed[k], summed[k + 1:]
        window = []
        row = {"step": step, "split": "train", "time": round(time.perf_counter() - start, 3),
               "loss": stats[0], "acc_top1": stats[1], "lr": warmup_decay_lr(step - 1, s)}
        row.update(zip(extra_keys, stats[2:]))
        last_loss = stats[0]
        log.metrics([row])
        if nonfinite:
            raise NonFiniteLoss(f"non-finite loss (NaN or Inf) in steps {step - len(stacked) + 1}..{step}")
        return bool(stops and stops[0])

    model.train()
    try:
        with _stop_on_signals() as stop_requested:
            agreed_stop = False  # under torchrun: all ranks stop after the same step
            while step < s.max_iter:
                if agreed_stop or (stop_requested and not world.launched):
                    raise RunStopped(stop_requested[0] if stop_requested else "a signal to another process")
                i = step % steps_per_epoch
                if i == 0:
                    batches.epoch(torch.randperm(ds.size("train"), device=dev, generator=gen))
                x, y = batches.batch(i)
                x = x.float().div_(255)
                if s.use_augmentation:
                    x = augment(x, gen, part=world.part(B), total=B)
                x = x.contiguous(memory_format=fmt)
                for g in opt.param_groups:
                    g["lr"] = warmup_decay_lr(step, s)
                with autocast:
                    logits, extras = forward(x, y)
                    loss = F.cross_entropy(logits.float(), y)
                    total = loss + sum((v for k, v in extras.items() if k.startswith("aux/")), torch.zeros((), device=dev))
                opt.zero_grad(set_to_none=True)
                total.backward()
                torch.nn.utils.clip_grad_norm_(params, s.gradient_clipping, foreach=True)
                opt.step()
                step += 1
                if not extra_keys and extras:
                    extra_keys = list(extras)
                acc = (logits.detach().argmax(-1) == y).float().mean()
                window.append(torch.stack([loss.detach(), acc, *(extras[k].detach().float() for k in extra_keys)]))

                evaluating = step % s.eval_every == 0 or step == s.max_iter
                if len(window) >= s.log_every or evaluating:
                    agreed_stop = flush(step, stop_requested)
                if evaluating:
                    if cuda:
                        torch.cuda.synchronize(dev)
                    train_seconds += time.perf_counter() - segment_start
                    images_seen = (step - first_step) * B
                    rows = []
                    for split, (images, labels, n) in evals.items():
                        sums = distributed.total(evaluate(model, images, labels, s.eval_batch_size, prepare))
                        acc_, loss_ = (sums / n).tolist()
                        rows.append({"step": step, "split": split, "time": round(time.perf_counter() - start, 3),
                                     "acc_top1": acc_, "loss": loss_})
                        if split == "test":
                            last_test = acc_
                    log.metrics(rows)
                    ips = images_seen / max(train_seconds, 1e-9)
                    log.status("running", step, images_per_second=round(ips, 1))
                    if progress:
                        progress({"step": step, "max_steps": s.max_iter, "loss": last_loss,
                                  "test_acc": last_test, "images_per_second": ips})
                    segment_start = time.perf_counter()
                if step % s.save_every == 0 or step == s.max_iter:
                    checkpoint(step)
        log.status("done", step, images_per_second=round(images_seen / max(train_seconds, 1e-9), 1),
                   wall_seconds=round(time.perf_counter() - start, 2))
    except RunStopped as e:
        checkpoint(step)
        log.status("stopped", step, reason=f"stopped by {e}")
        distributed.barrier()  # no rank leaves (and makes torchrun end the others) before the checkpoint
        raise
    except NonFiniteLoss as e:
        log.status("failed", step, reason=str(e))
        raise
    except BaseException as e:
        log.status("failed", step, reason=f"{type(e).__name__}: {e}")
        raise
    finally:
        log.close()
    return run_dir
