"""A run's train rows: each log window's statistics, kept on the device step by step, written as one
row of means (one host sync per window), with the input normaliser's statistics, the model's extras
and the seen-count probe's columns; and the progress the command line's bar shows."""

from __future__ import annotations

import time

import torch
from torch import Tensor

from nbkit.errors import NonFiniteLoss
from nbkit.training import distributed
from nbkit.training import seen_probe as seen
from nbkit.training.schedule import step_lr
from nbkit.training.state import LoopState, RunParts

STATUS_EVERY_S = 1.0  # at most one status.json write a second from log windows (each is fsynced)


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
    if time.perf_counter() - state.status_at >= STATUS_EVERY_S:  # status.json's step follows the log
        state.status_at = time.perf_counter()
        seconds = state.train_seconds + state.status_at - state.segment_start  # the stretch not yet ended included
        speed = (state.step - state.first_step) * run.s.batch_size / max(seconds, 1e-9)
        run.log.status("running", state.step, images_per_second=round(speed, 1))
    report_progress(run, state)
    if nonfinite:
        raise NonFiniteLoss(f"non-finite loss (NaN or Inf) in steps {state.step - len(stacked) + 1}..{state.step}")
    return bool(stops and stops[0])


def with_probe(run: RunParts, stats: Tensor, example_losses: Tensor | None) -> Tensor:
    """The step's statistics, with the seen-count probe's columns after them when it is on."""
    if not run.s.seen_probe:
        return stats
    return torch.cat([stats, seen.window_columns(run.batches.groups, example_losses)])


def report_progress(run: RunParts, state: LoopState, evaluated: bool = False) -> None:
    """Tell the progress callback (the CLI's bar) where the run is: at every log window and evaluation."""
    if run.progress:
        running = 0.0 if evaluated else time.perf_counter() - state.segment_start  # the stretch not yet counted
        ips = (state.step - state.first_step) * run.s.batch_size / max(state.train_seconds + running, 1e-9)
        run.progress({"step": state.step, "max_iter": run.s.max_iter, "loss": state.last_loss,
                      "test_acc": state.last_test, "images_per_second": ips, "evaluated": evaluated})


def peak_memory(dev: torch.device) -> dict:
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
