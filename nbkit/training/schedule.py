"""The learning rate at each step (the original's warm-up and decay, or its exact schedule on
request) and the precision a run trains and evaluates in, with the warnings that say when either
makes a run look broken."""

from __future__ import annotations

import torch

from nbkit.design.settings import Settings


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
