"""Packed runs: the seeds of one variant trained in one process as one vectorised model.

A resnet18 step at batch 128 is hundreds of kernels too small to fill a GPU; K runs stacked
(torch.func.stack_module_state) and called through vmap make each kernel K times larger, for one
launch. Each run keeps what makes it a run: its initialisation (its seed), its data order and
augmentation (its generator), its gradient clipping, its own run directory, log, checkpoint and
status. A run whose loss turns non-finite fails alone and leaves the pack; a stop checkpoints
every run, and each resumes on its own (`nbkit train --resume`), as any run does.

What is shared: dropout and MixStyle draw from the pack's random stream (vmap's "different"
randomness), so packed runs of those variants are statistically, not bitwise, what separate
runs are; for the others a packed run logs what the same run alone logs (tests/training/test_pack.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path
from typing import Callable

import torch

from nbkit.design.models import create_model
from nbkit.design.settings import Settings, external_model
from nbkit.errors import NonFiniteLoss, RunBusy, RunLogLost, RunStopped, stop_signals
from nbkit.rundir import runlog
from nbkit.training import distributed
from nbkit.training.data import Dataset, load_dataset
from nbkit.training.evaluation import (
    evaluate_near_epoch_end,
    evaluate_splits,
    evaluation_due,
    near_epoch_end,
    pause_clock,
)
from nbkit.training.loader import TrainBatches, check_one_batch, eval_shards
from nbkit.training.packed_model import Member, MemberOptimizer, Packed, PackedStep
from nbkit.training.records import with_probe, write_train_row
from nbkit.training.schedule import autocast_dtype, step_lr
from nbkit.training.state import LoopState, RunParts
from nbkit.training.step import after_load, make_optimizer
from nbkit.training.trainer import ended, finish, saving, start, uses_cuda_graph, write_checkpoint


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
    (tests/training/test_pack.py); one from outside may not (data-dependent control flow, in-place updates
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
                               sampling=s.sampling, count_seen=s.seen_probe,
                           switch_epoch=s.switch_epoch)
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
