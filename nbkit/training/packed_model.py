"""A pack's model: K networks of one architecture as stacked parameters called through vmap
(Packed), each run's view of it as the trainer sees a model (Member) and of the shared Adam
(MemberOptimizer), and the training step over the pack with per-run losses and clipping."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from nbkit.design.models.vitn import Attention
from nbkit.training.step import TrainStep, graph_safe


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
