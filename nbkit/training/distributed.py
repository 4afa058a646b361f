"""Where a run executes: the device it trains on and, under torchrun, which process this is,
the few collectives the trainer needs, and the processes' agreement to start.

The data order stays global: every rank draws the same per-epoch permutation from the run's
seed, batch i of an epoch is perm[i*B:(i+1)*B] as in a single process, and rank r trains on the
r-th of its world_size equal slices. Gradients are averaged by DistributedDataParallel, so a
step equals the single-process step on the same global batch up to floating-point order, for
variants without per-process randomness: dropout masks and MixStyle's mixing (within a rank's
slice) differ from one process, and on the CPU BatchNorm statistics stay per process.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    launched: bool = False  # started by torchrun (RANK and WORLD_SIZE set), even with one process

    @property
    def main(self) -> bool:
        return self.rank == 0

    def part(self, n: int) -> slice:
        """This rank's slice of n items split into `size` equal parts (n divisible by size)."""
        per = n // self.size
        return slice(self.rank * per, (self.rank + 1) * per)


SINGLE = World()


def from_env(env=os.environ) -> World:
    """The world torchrun describes in RANK, WORLD_SIZE and LOCAL_RANK; a single process otherwise."""
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return SINGLE
    try:
        rank, size = int(env["RANK"]), int(env["WORLD_SIZE"])
        local = int(env.get("LOCAL_RANK", rank))
    except ValueError:
        raise ValueError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (as torchrun sets them)") from None
    if not 0 <= rank < size:
        raise ValueError(f"RANK {rank} is outside WORLD_SIZE {size}")
    return World(rank, size, local, launched=True)


def pick_device(device: str = "auto", world: World = SINGLE) -> torch.device:
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


def start(world: World, device: torch.device) -> None:
    """Join the process group: NCCL between GPUs, gloo between CPU processes."""
    if not world.launched or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=world.rank, world_size=world.size,
                            timeout=datetime.timedelta(minutes=30),
                            **({"device_id": device} if device.type == "cuda" else {}))


def stop(world: World) -> None:
    if world.launched and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def mean(t: Tensor) -> Tensor:
    """The mean of t over the ranks (t itself in a single process)."""
    if not active():
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t / dist.get_world_size()


def total(t: Tensor) -> Tensor:
    """The sum of t over the ranks (t itself in a single process)."""
    if not active():
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t


def barrier() -> None:
    if active():
        dist.barrier()


@contextlib.contextmanager
def agreed(world: World, dev: torch.device):
    """Under torchrun: every process gets through the block, or all of them stop (the one that
    failed says why) instead of the others waiting in their first collective."""
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
    return total(torch.tensor([float(ok)], device=dev)).item() == world.size
