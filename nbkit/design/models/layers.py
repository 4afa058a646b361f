"""Building blocks shared by the models: input normaliser, MixStyle, sinusoidal encodings."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor, nn


class Normalizer(nn.Module):
    """Standardises inputs by running statistics, so no dataset statistics are precomputed.

    Mean and (population) variance are an EMA with `momentum` over training batches; the first
    batch initialises them. In a multi-process run the batch statistics are those of the global
    batch (averaged over the ranks), so every rank keeps the same statistics. One statistic for all channels, or one per channel (dim 1).
    Reference: the original study's src/normalizer.py.
    """

    def __init__(self, num_channels: int = 1, momentum: float = 0.01, eps: float = 1e-9):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("running_mean", torch.full((num_channels,), float("nan")))
        self.register_buffer("running_var", torch.full((num_channels,), float("nan")))

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W)
        x = x.float()
        per_channel = self.running_mean.numel() > 1
        dims = (0, 2, 3) if per_channel else tuple(range(x.dim()))
        shape = (1, -1, 1, 1) if per_channel else (1, 1, 1, 1)
        if self.training:
            with torch.no_grad():
                mean = x.mean(dims).reshape(-1)
                var = x.var(dims, unbiased=False).reshape(-1)
                if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                    # under torchrun, the whole global batch's statistics, as in one process (a layer
                    # reduces across processes itself, as torch's SyncBatchNorm does)
                    moments = torch.cat([mean, var + mean * mean])
                    dist.all_reduce(moments)
                    mean, var = (moments / dist.get_world_size()).chunk(2)
                    var = var - mean * mean
                # torch.where, not an `if`, so the first-batch test needs no host sync
                m = self.momentum
                self.running_mean.copy_(torch.where(self.running_mean.isnan(), mean, (1 - m) * self.running_mean + m * mean))
                self.running_var.copy_(torch.where(self.running_var.isnan(), var, (1 - m) * self.running_var + m * var))
        mean, var = self.running_mean, self.running_var
        if not self.training:  # never trained: fall back to the batch's own statistics
            mean = torch.where(mean.isnan(), x.mean(dims).reshape(-1), mean)
            var = torch.where(var.isnan(), x.var(dims, unbiased=False).reshape(-1), var)
        return (x - mean.view(shape)) / (var.view(shape) + self.eps).sqrt()


class MixStyle(nn.Module):
    """Mixes per-sample feature statistics (mean, std over H, W) between random pairs.

    Zhou et al., "Domain Generalization with MixStyle", ICLR 2021: with probability p, each
    sample's statistics become lam * own + (1 - lam) * another's, lam ~ Beta(alpha, alpha);
    statistics are detached. Identity in eval mode.
    """

    def __init__(self, p: float = 0.5, alpha: float = 0.1, eps: float = 1e-6):
        super().__init__()
        self.p, self.alpha, self.eps = p, alpha, eps
        self.device_coin = False  # set for a CUDA-graph-captured step: no host decision inside it

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W)
        if not self.training:
            return x
        if self.device_coin:  # mix always, keep it with probability p: the same draw, made on the device
            return torch.where(torch.rand((), device=x.device) <= self.p, self._mix(x), x)
        # the coin is drawn from the CPU generator: no device sync, and seeded with the run
        if torch.rand(()).item() > self.p:
            return x
        return self._mix(x)

    def _mix(self, x: Tensor) -> Tensor:
        if x.shape[2] * x.shape[3] < 2:  # one position has no spread to mix (its variance is NaN)
            return x
        B = x.size(0)
        mu = x.mean(dim=(2, 3), keepdim=True).detach()
        sig = (x.var(dim=(2, 3), keepdim=True) + self.eps).sqrt().detach()
        x_normed = (x - mu) / sig
        lam = beta_sample(self.alpha, (B, 1, 1, 1), x.device).to(x.dtype)
        perm = torch.randperm(B, device=x.device)
        mu_mix = lam * mu + (1 - lam) * mu[perm]
        sig_mix = lam * sig + (1 - lam) * sig[perm]
        return x_normed * sig_mix + mu_mix


def beta_sample(alpha: float, shape: tuple, device) -> Tensor:
    """Beta(alpha, alpha) drawn on `device` as G1 / (G1 + G2) with Gamma(alpha) draws."""
    conc = torch.full((2, *shape), alpha, device=device)
    g = torch._standard_gamma(conc)
    return g[0] / (g[0] + g[1]).clamp_min(1e-12)


def sinusoid(positions: Tensor, dim: int) -> Tensor:
    """Sinusoidal encoding (Vaswani et al. 2017) of any-shaped positions: (...) -> (..., dim)."""
    if dim % 2:
        raise ValueError(f"sinusoidal encoding needs an even width, got {dim}")
    half = dim // 2
    omega = torch.exp(-math.log(1e4) * torch.arange(half, device=positions.device) / half)
    angles = positions.float().unsqueeze(-1) * omega
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def sinusoid_2d(height: int, width: int, dim: int, device=None) -> Tensor:
    """2-D encoding as rows plus columns, as the original: (H, W, dim)."""
    rows = sinusoid(torch.arange(height, device=device), dim)  # (H, dim)
    cols = sinusoid(torch.arange(width, device=device), dim)  # (W, dim)
    return rows[:, None, :] + cols[None, :, :]
