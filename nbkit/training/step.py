"""One training step (forward, loss, backward, gradient clipping, Adam) with no host reads in it,
so that on a GPU it is captured once as a CUDA graph and replayed.

A resnet18 step at 32x32 is some 300 small kernels: launched one by one from Python the GPU waits
on the CPU most of the time; replayed as one graph it does not. The data order and augmentation
stay outside the graph (their generator is the run's own); the batch is copied into the graph's
static input, the learning rate lives in a device tensor, and the step's statistics come back as
one device vector. Recipe: PyTorch's CUDA graphs notes, "whole-network capture".
"""

from __future__ import annotations

import contextlib
import sys

import torch
import torch.nn.functional as F
from torch import Tensor

from nbkit.design.models.layers import MixStyle


def make_optimizer(params: list, lr: float, dev: torch.device) -> torch.optim.Adam:
    """The original's Adam (0.9, 0.999, eps 1e-8, no weight decay). On CUDA: fused, capturable,
    the learning rate a device tensor, so eager and graphed runs share one checkpoint format."""
    if dev.type == "cuda":
        return torch.optim.Adam(params, lr=torch.tensor(lr, device=dev), betas=(0.9, 0.999), eps=1e-8,
                                weight_decay=0.0, fused=True, capturable=True)
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        if isinstance(g["lr"], Tensor):
            g["lr"].fill_(lr)  # in place: a captured step reads this tensor
        else:
            g["lr"] = lr


def after_load(opt: torch.optim.Optimizer, dev: torch.device) -> None:
    """A loaded optimiser state takes the saved groups' hyperparameters whole: put back this
    device's (fused, capturable, a device-tensor learning rate) so the step can be captured."""
    if dev.type != "cuda":
        for g in opt.param_groups:
            g.update(lr=float(g["lr"]), fused=None, capturable=False)
        return
    for g in opt.param_groups:
        g.update(fused=True, capturable=True, foreach=None, lr=torch.tensor(float(g["lr"]), device=dev))
    for state in opt.state.values():
        if isinstance(state.get("step"), Tensor):
            state["step"] = state["step"].to(dev, torch.float32)


class TrainStep:
    """step(x, y, lr) -> (loss, top-1, loss_total, grad_norm, *extras) as one device vector.

    example_losses: also keep each example's cross-entropy as `example_losses` (a device tensor a
    graph's replay overwrites: read it before the next step), for the seen-count probe.

    With capture, the first call records the step as a CUDA graph: a few steps run first (cuDNN's
    choices, the optimiser's state), then the model, optimiser and random state are put back as
    they were, so a graphed run trains from exactly the state an eager one would. On the CPU the
    same path runs without the recording (tests).
    """

    def __init__(self, model: torch.nn.Module, forward, opt: torch.optim.Optimizer, params: list,
                 clip: float, autocast_dtype: torch.dtype | None, dev: torch.device, capture: bool = False,
                 example_losses: bool = False):
        self.model, self.forward, self.opt, self.params, self.clip, self.dev = model, forward, opt, params, clip, dev
        self.autocast_dtype = autocast_dtype
        self.keep_example_losses, self.example_losses = example_losses, None
        self.capture_pending = capture  # captured at the first call, with its batch
        self.extra_keys: list[str] | None = None  # the model's extras, in the vector's order
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: tuple[Tensor, Tensor, Tensor] | None = None  # x, y and the stats of the graph

    def __call__(self, x: Tensor, y: Tensor, lr: float) -> Tensor:
        if self.capture_pending:
            self.capture_pending = False
            capture_or_explain(self, x, y)
        set_lr(self.opt, lr)
        if self.graph is None:
            self.opt.zero_grad(set_to_none=True)
            return self._step(x, y)
        sx, sy, stats = self.static
        sx.copy_(x)
        sy.copy_(y)
        self.graph.replay()
        return stats.clone()  # the next replay overwrites it

    def _autocast(self, capturing: bool = False):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        # a graph must not keep autocast's cast weights from the capture (they go stale)
        return torch.autocast(self.dev.type, dtype=self.autocast_dtype, cache_enabled=not capturing)

    def _step(self, x: Tensor, y: Tensor, capturing: bool = False) -> Tensor:
        with self._autocast(capturing):
            logits, extras = self.forward(x, y)
            loss = F.cross_entropy(logits.float(), y)
            total = loss + sum((v for k, v in extras.items() if k.startswith("aux/")), torch.zeros((), device=x.device))
        if self.keep_example_losses:  # beside the loss trained on, which stays as it is without the probe
            self.example_losses = F.cross_entropy(logits.detach().float(), y, reduction="none")
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.clip, foreach=True)  # before clipping
        self.opt.step()
        if self.extra_keys is None:
            self.extra_keys = list(extras)
        acc = (logits.detach().argmax(-1) == y).float().mean()
        return torch.stack([loss.detach(), acc, total.detach().float(), grad_norm.float(),
                            *(extras[k].detach().float() for k in self.extra_keys)])

    def capture(self, x: Tensor, y: Tensor, warmup: int = 3) -> None:
        """Record the step as a CUDA graph; on the CPU only the warm-up and the putting back run."""
        graph_safe(self.model)
        saved = _snapshot(self.model, self.opt, self.dev)
        try:
            side = torch.cuda.Stream(self.dev) if self.dev.type == "cuda" else None
            if side is not None:
                side.wait_stream(torch.cuda.current_stream(self.dev))
            with torch.cuda.stream(side) if side is not None else contextlib.nullcontext():
                for _ in range(warmup):
                    self.opt.zero_grad(set_to_none=True)
                    self._step(x, y)
            if side is not None:
                torch.cuda.current_stream(self.dev).wait_stream(side)
            self.opt.zero_grad(set_to_none=True)
            if self.dev.type == "cuda":
                sx, sy = x.clone(), y.clone()
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    stats = self._step(sx, sy, capturing=True)
                self.graph, self.static = graph, (sx, sy, stats)
        finally:  # captured or not, training goes on from the state it had
            if self.graph is None:
                self.opt.zero_grad(set_to_none=True)
            _restore(saved, self.model, self.opt, self.dev)


def graph_safe(model: torch.nn.Module) -> None:
    """Random choices inside the step drawn on the device (MixStyle's coin), not read by the host."""
    for m in model.modules():
        if isinstance(m, MixStyle):
            m.device_coin = True


def _snapshot(model, opt, dev) -> dict:
    return {"model": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "optimizer": {id(p): {k: v.clone() if isinstance(v, Tensor) else v for k, v in st.items()}
                          for p, st in opt.state.items()},
            "cpu_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None}


@torch.no_grad()
def _restore(saved: dict, model, opt, dev) -> None:
    """Put back in place (a captured graph holds these tensors' addresses). Optimiser state the
    warm-up created is zeroed: what a fresh Adam starts from."""
    for k, v in model.state_dict().items():
        v.copy_(saved["model"][k])
    for p, st in opt.state.items():
        before = saved["optimizer"].get(id(p), {})
        for k, v in st.items():
            if isinstance(v, Tensor):
                v.copy_(before[k]) if k in before else v.zero_()
    torch.set_rng_state(saved["cpu_rng"])
    if saved["cuda_rng"] is not None:
        torch.cuda.set_rng_state(saved["cuda_rng"], dev)


def capture_or_explain(step: TrainStep, x: Tensor, y: Tensor) -> None:
    """Capture the step; when capture fails, say why and train eagerly (slower, same results)."""
    stream = torch.cuda.current_stream(step.dev) if step.dev.type == "cuda" else None
    try:
        step.capture(x, y)
    except Exception as e:  # noqa: BLE001 - any failure leaves a working eager step
        if stream is not None:  # a failed capture can leave its own stream current
            torch.cuda.set_stream(stream)
            torch.cuda.synchronize(step.dev)  # an error that poisons the device shows here, not mid-run
        step.graph = step.static = None
        cause = e.__context__ or e  # a failed capture_end hides the error inside the capture
        print(f"nbkit: CUDA graph capture failed ({type(cause).__name__}: {cause}); training without it",
              file=sys.stderr, flush=True)
