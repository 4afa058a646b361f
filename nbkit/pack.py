"""Packed runs: the seeds of one variant trained in one process as one vectorised model.

A resnet18 step at batch 128 is hundreds of kernels too small to fill a GPU; K runs stacked
(torch.func.stack_module_state) and called through vmap make each kernel K times larger, for one
launch. Each run keeps what makes it a run: its initialisation (its seed), its data order and
augmentation (its generator), its gradient clipping, its own run directory, log, checkpoint and
status. A run whose loss turns non-finite fails alone and leaves the pack; a stop checkpoints
every run, and each resumes on its own (`nbkit train --resume`), as any run does.

What is shared: dropout and MixStyle draw from the pack's random stream (vmap's "different"
randomness), so packed runs of those variants are statistically, not bitwise, what separate
runs are; for the others a packed run logs what the same run alone logs (tests/test_pack.py).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from . import distributed, runlog
from .data import Dataset, load_dataset
from .errors import NonFiniteLoss, RunBusy, RunLogLost, RunStopped, stop_signals
from .loader import TrainBatches, check_one_batch, eval_shards
from .models import create_model
from .models.vitn import Attention
from .settings import Settings, external_model
from .step import TrainStep, after_load, graph_safe, make_optimizer
from .train import (LoopState, RunParts, autocast_dtype, ended, evaluate_near_epoch_end, evaluate_splits,
                    evaluation_due, finish, near_epoch_end, pause_clock, saving, start, step_lr, uses_cuda_graph,
                    with_probe, write_checkpoint, write_train_row)


def _key(name: str) -> str:
    return name.replace(".", ":")  # a registered tensor's name cannot hold dots


class Packed(nn.Module):
    """K models of one architecture as stacked parameters and buffers, called through vmap.

    base: the architecture on the meta device, a template (not a submodule: it holds nothing);
    names: a checkpoint's keys in order; params, buffers: name -> stacked (K, ...) tensor."""

    def __init__(self, base: nn.Module, names: list[str], params: dict[str, Tensor], buffers: dict[str, Tensor]):
        super().__init__()
        object.__setattr__(self, "base", base)
        self.names, self.param_names, self.buffer_names = names, list(params), list(buffers)
        for name, p in params.items():
            self.register_parameter(_key(name), nn.Parameter(p.detach(), requires_grad=p.requires_grad))
        for name, b in buffers.items():
            self.register_buffer(_key(name), b)

    @classmethod
    def of(cls, models: list[nn.Module]) -> "Packed":
        base = copy.deepcopy(models[0]).to("meta")
        for m in base.modules():
            if isinstance(m, Attention):
                m.explicit = True  # vmap cannot differentiate fused attention through a learned bias
        graph_safe(base)  # vmap cannot read a coin on the host either
        return cls(base, list(models[0].state_dict()), *stack_module_state(models))

    def tensor(self, name: str) -> Tensor:
        return getattr(self, _key(name))

    def tensors(self, k: int | None = None) -> tuple[dict, dict]:
        pick = (lambda t: t) if k is None else (lambda t: t[k])
        return ({n: pick(self.tensor(n)) for n in self.param_names}, {n: pick(self.tensor(n)) for n in self.buffer_names})

    def train(self, mode: bool = True):
        super().train(mode)
        self.base.train(mode)
        return self

    def forward(self, x: Tensor, y: Tensor | None = None):  # x (K, B, C, H, W), y (K, B)
        def one(params, buffers, x, y):
            return functional_call(self.base, (params, buffers), (x, y))

        params, buffers = self.tensors()
        return vmap(one, randomness="different")(params, buffers, x, y)  # (K, B, classes), {name: (K,)}

    def select(self, keep: list[int]) -> "Packed":
        """A pack of the members kept, as copies (the old pack's tensors may be held by a graph)."""
        index = torch.tensor(keep, device=self.tensor(self.names[0]).device)
        pick = lambda names: {n: self.tensor(n).index_select(0, index) for n in names}  # keeps requires_grad
        return Packed(self.base, self.names, pick(self.param_names), pick(self.buffer_names)).train(self.training)


class Member:
    """One run of a pack, as the trainer sees a model: called, evaluated, saved, restored."""

    def __init__(self, packed: Packed, k: int):
        self.packed, self.k = packed, k

    @property
    def training(self) -> bool:
        return self.packed.training

    def train(self, mode: bool = True) -> "Member":
        self.packed.train(mode)
        return self

    def eval(self) -> "Member":
        return self.train(False)

    def __call__(self, x: Tensor, y: Tensor | None = None):
        return functional_call(self.packed.base, self.packed.tensors(self.k), (x, y))

    def parameters(self):
        return [self.packed.tensor(n)[self.k] for n in self.packed.param_names]

    def state_dict(self) -> dict[str, Tensor]:
        return {n: self.packed.tensor(n)[self.k].detach().clone() for n in self.packed.names}

    @property
    def normalizer(self):
        if not hasattr(self.packed.base, "normalizer") or "normalizer.running_mean" not in self.packed.names:
            return None
        return SimpleNamespace(running_mean=self.packed.tensor("normalizer.running_mean")[self.k],
                               running_var=self.packed.tensor("normalizer.running_var")[self.k])


class MemberOptimizer:
    """One run's share of the pack's Adam, saved in torch's own format: a packed run's checkpoint
    resumes alone. Adam is elementwise, so the stacked state is each run's state side by side."""

    def __init__(self, opt: torch.optim.Optimizer, k: int):
        self.opt, self.k = opt, k

    @property
    def param_groups(self):
        return self.opt.param_groups

    def state_dict(self) -> dict:
        full = self.opt.state_dict()
        state = {i: {key: v.clone() if key == "step" else v[self.k].clone() for key, v in st.items()}
                 for i, st in full["state"].items()}
        groups = [{key: v.clone() if isinstance(v, Tensor) else copy.deepcopy(v) for key, v in g.items()}
                  for g in full["param_groups"]]
        return {"state": state, "param_groups": groups}


class PackedStep(TrainStep):
    """TrainStep over a pack: per-run losses, per-run gradient clipping; statistics (K, columns)."""

    def _step(self, x: Tensor, y: Tensor, capturing: bool = False) -> Tensor:
        K, B = y.shape
        with self._autocast(capturing):
            logits, extras = self.forward(x, y)
            per_example = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none").view(K, B)
            losses = per_example.mean(1)
            totals = losses + sum((v for k, v in extras.items() if k.startswith("aux/")), torch.zeros(K, device=x.device))
        if self.keep_example_losses:
            self.example_losses = per_example.detach()  # (K, B)
        totals.sum().backward()  # run k's parameters only meet run k's loss
        grad_norm = clip_per_run(self.params, self.clip)
        self.opt.step()
        if self.extra_keys is None:
            self.extra_keys = list(extras)
        acc = (logits.detach().argmax(-1) == y).float().mean(1)
        return torch.stack([losses.detach(), acc, totals.detach().float(), grad_norm.float(),
                            *(extras[k].detach().float() for k in self.extra_keys)], dim=1)


@torch.no_grad()
def clip_per_run(params: list[Tensor], max_norm: float) -> Tensor:
    """clip_grad_norm_ for each run of a pack (dim 0): returns each run's norm before clipping."""
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads])  # (P, K)
    total = torch.linalg.vector_norm(norms, dim=0)  # (K,)
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(grads, [coef.view(-1, *[1] * (g.dim() - 1)).to(g.dtype) for g in grads])
    return total


@dataclasses.dataclass
class PackMember:
    run: RunParts
    state: LoopState | None = None


@dataclasses.dataclass
class Pack:
    """What a pack trains with; rebuilt without a run that failed."""
    packed: Packed
    opt: torch.optim.Optimizer
    step: PackedStep
    members: list[PackMember]


def check_members(settings: list[Settings]) -> Settings:
    """Packed runs differ in their seed only; returns their shared settings (seed 0)."""
    if not settings:
        raise ValueError("a pack needs at least one run")
    shared = {s.replace(seed=0) for s in settings}
    if len(shared) > 1:
        raise ValueError("packed runs must share every setting but the seed; got runs that differ in "
                         + ", ".join(sorted(k for k in settings[0].to_dict()
                                            if len({getattr(s, k) for s in settings}) > 1 and k != "seed")))
    if len({s.seed for s in settings}) < len(settings):
        raise ValueError("packed runs need distinct seeds")
    return shared.pop()


def check_packable(variant: str, s: Settings, num_classes: int, size: int = 32) -> None:
    """Refuse, in one line, a variant whose model vmap cannot train. nbkit's own models all pack
    (tests/test_pack.py); one from outside may not (data-dependent control flow, in-place updates
    of state vmap cannot batch). Tried on the meta device, else on the CPU with two tiny runs."""
    if not external_model(s.model):
        return

    def step():
        packed = Packed.of([create_model(s, num_classes).train() for _ in range(2)]).train()
        logits, _ = packed(torch.rand(2, 2, 3, size, size), torch.zeros(2, 2, dtype=torch.long))
        logits.float().sum().backward()

    try:
        with torch.device("meta"):
            return step()
    except Exception:  # noqa: BLE001 - an operation without a meta kernel: the CPU says whether vmap fails
        pass
    try:
        step()
    except Exception as e:  # noqa: BLE001 - whatever vmap raises, said in one line
        why = " ".join(str(e).split())[:300] or type(e).__name__
        raise ValueError(f"{variant} cannot train packed: vmap fails on its model {s.model} ({why}); "
                         "sweep it with --pack 1") from None


def train_pack(variant: str, settings: list[Settings], run_dirs: list[str | Path], device: str = "auto",
               dataset: Dataset | None = None, label: str | None = None, restart: bool = False,
               definition: dict | None = None) -> list[Path]:
    """Train new runs (one per settings, seeds differing) as one pack, each into its run_dir;
    restart: run_dirs whose earlier attempt left no checkpoint are cleared first; definition:
    the variant's, recorded in each config.json. Returns the run directories; how each run ended
    is in its status (done, failed, stopped)."""
    s0 = check_members(settings)
    if len(run_dirs) != len(settings):
        raise ValueError(f"a pack of {len(settings)} runs needs {len(settings)} run directories, got {len(run_dirs)}")
    world = distributed.from_env()
    if world.launched:
        raise ValueError("packed runs train in one process; start them without torchrun")
    dev = distributed.pick_device(device, world)
    ds = dataset if dataset is not None else load_dataset(s0.dataset, s0.data_dir, s0.val_size, s0.train_size,
                                                          s0.train_fraction)
    check_one_batch(ds, s0)
    check_packable(variant, s0, ds.num_classes, ds.images["train"].shape[-1])
    ds = _on_device(ds, dev)  # one copy of the data for every run of the pack
    with contextlib.ExitStack() as held:
        claimed = []
        for s, run_dir in zip(settings, run_dirs):
            try:
                claimed.append((s, held.enter_context(runlog.open_run(run_dir, None, ds.name, variant, s.seed,
                                                                      restart=restart))))
            except RunBusy as e:  # another process has it: the pack goes on without it
                print(f"nbkit: {e}; the pack trains without it", file=sys.stderr, flush=True)
        if not claimed:
            raise RunBusy("every run of the pack is held by another process")
        pack = _build(variant, [s for s, _ in claimed], ds, world, dev)
        members = list(pack.members)  # every run's log is closed at the end, also of runs that left
        for m, (_, run_dir) in zip(pack.members, claimed):
            m.run.run_dir = Path(run_dir)
        extra = {"definition": definition} if definition else {}
        with stop_signals() as stop_requested:  # from the first file written to the last (see train._run)
            try:
                _each(pack, lambda m: setattr(m, "state", start(m.run, None, ds, label, pack_size=len(members), **extra)))
                _loop(pack, stop_requested)
                _each(pack, lambda m: finish(m.run, m.state))
            except BaseException as e:
                for m in pack.members:
                    _end(m, e)
                raise
            finally:
                for m in members:
                    m.run.log.close()
    return [Path(d) for d in run_dirs]


OWN_ERRORS = (NonFiniteLoss, RunLogLost, OSError)  # raised by one run's loss or files: that run fails alone


def _each(pack: Pack, act: Callable[[PackMember], object]) -> None:
    """act on every run of the pack; a run whose own loss or files raise ends (failed, saying
    why) and leaves the pack, and the others go on."""
    failed = []
    for k, m in enumerate(pack.members):
        try:
            act(m)
        except OWN_ERRORS as e:
            _end(m, e)
            failed.append(k)
    if failed:
        _drop(pack, failed)


def _end(m: PackMember, e: BaseException) -> None:
    """Say how one run ended; one that cannot even say so (its folder gone) does not stop the others'."""
    try:
        ended(m.run, m.state or LoopState(), e)
    except Exception as again:  # noqa: BLE001 - said on stderr; the pack's other runs still end properly
        print(f"nbkit: {m.run.run_dir}: could not record how the run ended ({type(again).__name__}: {again})",
              file=sys.stderr, flush=True)
    finally:
        m.run.log.close()


def _on_device(ds: Dataset, dev: torch.device) -> Dataset:
    return dataclasses.replace(ds, images={k: v.to(dev) for k, v in ds.images.items()},
                               labels={k: v.to(dev) for k, v in ds.labels.items()})


def _build(variant: str, settings: list[Settings], ds: Dataset, world, dev: torch.device) -> Pack:
    models = []
    for s in settings:
        torch.manual_seed(s.seed)  # each run's initialisation, as alone
        model = create_model(s, ds.num_classes).to(dev)
        models.append(model.to(memory_format=torch.channels_last) if dev.type == "cuda" else model)
    torch.manual_seed(settings[0].seed)  # the pack's dropout and MixStyle stream
    evals = eval_shards(ds, world, dev)
    members = []
    for s in settings:
        generator = torch.Generator(dev).manual_seed(s.seed)  # data order and augmentation, as alone
        batches = TrainBatches(ds, s.batch_size, world, dev, generator, augmented=s.use_augmentation,
                               sampling=s.sampling, count_seen=s.seen_probe)
        members.append(PackMember(RunParts(variant, s, world, dev, None, None, None, batches, evals, generator, None)))
    return _assemble(Packed.of(models).train(), members, settings[0], dev, world)


def _assemble(packed: Packed, members: list[PackMember], s: Settings, dev, world, opt_state: dict | None = None) -> Pack:
    """The pack's optimiser and step over `packed`, and each member's views of them."""
    params = [p for p in packed.parameters() if p.requires_grad]
    opt = make_optimizer(params, step_lr(0, s), dev)
    if opt_state is not None:
        opt.load_state_dict(opt_state)
        after_load(opt, dev)
    step = PackedStep(packed, packed, opt, params, s.gradient_clipping, autocast_dtype(s, dev), dev,
                      capture=uses_cuda_graph(s, dev, world), example_losses=s.seen_probe)
    for k, m in enumerate(members):
        m.run.model, m.run.opt = Member(packed, k), MemberOptimizer(opt, k)
    return Pack(packed, opt, step, members)


def _drop(pack: Pack, failed: list[int]) -> None:
    """Leave the pack with the runs that did not fail: their parameters, buffers and Adam state."""
    keep = [k for k in range(len(pack.members)) if k not in failed]
    members = [pack.members[k] for k in keep]
    if members:
        index = torch.tensor(keep, device=pack.step.dev)
        opt_state = pack.opt.state_dict()
        for st in opt_state["state"].values():
            st.update({key: v.index_select(0, index) for key, v in st.items() if key != "step"})
        fresh = _assemble(pack.packed.select(keep), members, members[0].run.s, pack.step.dev, members[0].run.world,
                          opt_state)
        fresh.step.extra_keys = pack.step.extra_keys
        pack.packed, pack.opt, pack.step = fresh.packed, fresh.opt, fresh.step
    pack.members = members


def _loop(pack: Pack, stop_requested: list[str]) -> None:
    s = pack.members[0].run.s
    step = pack.members[0].state.step
    pack.packed.train()
    while pack.members and step < s.max_iter:
        batches = [m.run.batches(step) for m in pack.members]
        x, y = torch.stack([b[0] for b in batches]), torch.stack([b[1] for b in batches])
        stats = pack.step(x, y, step_lr(step, s))  # (K, columns), on the device
        losses = pack.step.example_losses  # (K, B) with the seen-count probe, else None
        step += 1
        evaluating = evaluation_due(s, step)
        near = near_epoch_end(s, step, pack.members[0].run.batches.steps)
        for k, m in enumerate(pack.members):
            m.state.window.append(with_probe(m.run, stats[k], None if losses is None else losses[k]))
            m.state.step = step
            m.state.extra_keys = m.state.extra_keys or pack.step.extra_keys

        def log_window(m: PackMember) -> None:
            if len(m.state.window) >= s.log_every or evaluating or near:
                write_train_row(m.run, m.state, stop_requested)

        _each(pack, log_window)
        if evaluating:
            for m in pack.members:  # every run's clock stops before any evaluates
                pause_clock(m.run, m.state)
            _each(pack, lambda m: evaluate_splits(m.run, m.state))
            pack.packed.train()
        if near:  # the held-out probe around epoch ends
            for m in pack.members:
                pause_clock(m.run, m.state)
            _each(pack, lambda m: evaluate_near_epoch_end(m.run, m.state))
            pack.packed.train()
        if saving(s, step):
            _each(pack, lambda m: write_checkpoint(m.run, m.state))
        if stop_requested and step < s.max_iter and pack.members:
            raise RunStopped(stop_requested[0])
