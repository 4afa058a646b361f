"""Evaluation during a run: top-1 and loss on every evaluated split every eval_every steps (and
train_200 as the original scored it, augmented), and the held-out probe around epoch ends."""

from __future__ import annotations

import contextlib
import time

import torch
import torch.nn.functional as F
from torch import Tensor

from nbkit.design.settings import Settings
from nbkit.training import distributed
from nbkit.training.loader import prepare, probe_generator
from nbkit.training.records import report_progress
from nbkit.training.schedule import evaluation_dtype
from nbkit.training.state import LoopState, RunParts


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


def evaluation_due(s: Settings, step: int) -> bool:
    return step % s.eval_every == 0 or step == s.max_iter


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


def _probes(run: RunParts, split: str, step: int, n: int) -> list[tuple[str, tuple | None]]:
    """How a split is scored: clean; and for train_200 of an augmented run also as the original
    scored it, on freshly augmented images (`train_200_aug`, seeded by seed and step so reruns
    agree; each rank augments its share as one process would)."""
    probes = [(split, None)]
    if split == "train_200" and run.s.use_augmentation:
        generator = probe_generator(run.s.seed, step, run.dev)
        probes.append(("train_200_aug", (generator, slice(run.world.rank, None, run.world.size), n)))
    return probes
