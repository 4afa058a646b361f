"""What a run is made of: its parts, fixed once the loop starts (RunParts), and what the loop
carries from step to step (LoopState), shared by the trainer, its evaluation and its records."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from nbkit.design.settings import Settings
from nbkit.rundir import runlog
from nbkit.training.distributed import World
from nbkit.training.loader import TrainBatches
from nbkit.training.step import TrainStep


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
    status_at: float = 0.0  # perf_counter when status.json's step was last moved at a log window
    last_test: float | None = None

    def images_per_second(self, batch_size: int) -> float:
        return (self.step - self.first_step) * batch_size / max(self.train_seconds, 1e-9)
