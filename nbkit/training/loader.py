"""The training data held on the device: batches in the run's data order, prepared for the model,
and each process's share of the evaluation splits. No DataLoader, no workers (as airbench).

The data order (the setting `sampling`) is drawn from the run's generator, one epoch's worth at
a time: batch i of an epoch is order[i*B:(i+1)*B], drop_last. `epoch` draws a fresh permutation
each epoch (the original's); `fixed` draws one and keeps it every epoch; `replacement` draws every
example uniformly with replacement, so an "epoch" is only a count of steps, with no boundary in
the data; `disjoint` splits the training set into two halves (a fixed seeded split, the same for
every run) and draws a fresh permutation of the first half each epoch up to `switch_epoch`, then of
the other half, never trained on before (an epoch is half the set's length). Under torchrun every rank draws the same order and trains on its slice of each batch,
so the order is the single-process one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nbkit.design.settings import Settings
from nbkit.training.augment import augment
from nbkit.training.data import Dataset
from nbkit.training.distributed import World
from nbkit.training.seen_probe import SeenCounts


def memory_format(dev: torch.device) -> torch.memory_format:
    return torch.channels_last if dev.type == "cuda" else torch.contiguous_format


def prepare(x: Tensor, fmt: torch.memory_format, generator: torch.Generator | None = None,
            part: slice | None = None, total: int | None = None) -> Tensor:
    """uint8 images (B, 3, H, W) as floats in [0, 1], augmented when a generator is given (x being
    samples `part` of a batch of `total`), in the device's memory format."""
    x = x.float().div_(255)
    if generator is not None:
        x = augment(x, generator, part=part, total=total)
    return x.contiguous(memory_format=fmt)


def check_one_batch(ds: Dataset, s: Settings) -> None:
    """At least one batch of training images, or a one-line error saying what set their number."""
    n = ds.size("train") // (2 if s.sampling == "disjoint" else 1)
    if n // s.batch_size == 0:
        cut = f" (train_size {s.train_size or 'all'} x train_fraction {s.train_fraction:g})" if (
            s.train_size or s.train_fraction != 1.0) else ""
        half = " in each half (sampling disjoint)" if s.sampling == "disjoint" else ""
        raise ValueError(f"batch_size {s.batch_size} exceeds the {n} training images{half}{cut}; expected a training "
                         f"set of at least one batch")


class TrainBatches:
    """batches(step) -> (images, labels) of that step, ready for the model.

    In one process the whole training split lives on the device. Under torchrun, rank r trains
    on the r-th slice of every batch; the split stays in host memory and at each epoch's start
    this rank's images for the epoch (its shard) are gathered and moved to its device.

    count_seen: keep how many times each example has been trained on (on the device); after each
    call, `groups` holds the seen group of this rank's examples of the batch (nbkit.training.seen_probe).
    """

    def __init__(self, ds: Dataset, batch_size: int, world: World, dev: torch.device,
                 generator: torch.Generator, augmented: bool, sampling: str = "epoch", count_seen: bool = False,
                 switch_epoch: int = 0):
        self.B, self.world, self.dev, self.generator = batch_size, world, dev, generator
        self.augmented, self.fmt, self.sampling = augmented, memory_format(dev), sampling
        self.n = ds.size("train")
        self.b = batch_size // world.size  # this rank's part of a batch
        self.steps = self.n // batch_size  # per epoch, drop_last
        self.switch_epoch, self.halves = switch_epoch, None
        if sampling == "disjoint":  # two fixed halves, the same split whatever the run's seed
            split = torch.randperm(self.n, generator=torch.Generator().manual_seed(0)).to(dev)
            half = self.n // 2
            self.halves = (split[:half], split[half:2 * half])
            self.steps = half // batch_size
        x, y = ds.images["train"], ds.labels["train"]
        if world.launched:
            self.host = (x.pin_memory() if dev.type == "cuda" else x, y)
            self.x = self.y = None
        else:
            self.x, self.y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        self.perm = None  # this epoch's order: a permutation, or draws with replacement
        self.seen = SeenCounts(self.n, dev) if count_seen else None
        self.groups: Tensor | None = None

    def __call__(self, step: int) -> tuple[Tensor, Tensor]:
        i = step % self.steps
        if i == 0 and (self.perm is None or self.sampling != "fixed"):
            self._epoch(self._draw(step // self.steps))
        x, y = self._slice(i)
        if self.seen is not None:
            self.groups = self.seen.visit(self.perm[i * self.B:(i + 1) * self.B], self.world.part(self.B))
        generator = self.generator if self.augmented else None
        return prepare(x, self.fmt, generator, part=self.world.part(self.B), total=self.B), y

    def _draw(self, epoch: int) -> Tensor:
        if self.halves is not None:
            pool = self.halves[int(epoch >= self.switch_epoch)]
            return pool[torch.randperm(len(pool), device=self.dev, generator=self.generator)]
        if self.sampling == "replacement":
            return torch.randint(self.n, (self.steps * self.B,), device=self.dev, generator=self.generator)
        return torch.randperm(self.n, device=self.dev, generator=self.generator)

    def _epoch(self, perm: Tensor) -> None:
        self.perm = perm
        if self.world.launched:
            order = perm[:self.steps * self.B].view(self.steps, self.world.size, self.b)[:, self.world.rank]
            idx = order.reshape(-1).cpu()
            self.x = self.host[0][idx].to(self.dev, non_blocking=True)
            self.y = self.host[1][idx].to(self.dev, non_blocking=True)

    def _slice(self, i: int) -> tuple[Tensor, Tensor]:
        if self.world.launched:
            return self.x[i * self.b:(i + 1) * self.b], self.y[i * self.b:(i + 1) * self.b]
        idx = self.perm[i * self.B:(i + 1) * self.B]
        return self.x[idx], self.y[idx]

    def state_dict(self) -> dict:
        return {"perm": self.perm, **({"seen": self.seen.counts} if self.seen is not None else {})}

    def load_state_dict(self, state: dict) -> None:
        if state["perm"] is not None:
            self._epoch(state["perm"])
        if self.seen is not None:
            self.seen.counts.copy_(state["seen"])


def probe_generator(seed: int, step: int, dev: torch.device) -> torch.Generator:
    """The augmentation draws of the train_200 probe at one evaluation: its own generator, so
    scoring leaves the training's data order untouched, and a rerun or resumed run draws the same."""
    return torch.Generator(dev).manual_seed((seed * 1_000_003 + step) % 2**63)


def eval_shards(ds: Dataset, world: World, dev: torch.device) -> dict[str, tuple[Tensor, Tensor, int]]:
    """split -> (images, labels, size of the whole split): each rank holds every world.size-th
    image, and the evaluation's sums are added over the ranks."""
    return {split: (ds.images[split][world.rank::world.size].to(dev),
                    ds.labels[split][world.rank::world.size].to(dev), ds.size(split))
            for split in ds.splits_eval}
