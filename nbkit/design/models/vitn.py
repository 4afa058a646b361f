"""vitn: the ViT with a pre-norm encoder of nbkit's own, whose attention can add

- relative positional attention, Transformer-XL style (Dai et al., ACL 2019, arXiv:1901.02860),
- a diagonal mask so no token attends to itself (Lee et al. 2021, arXiv:2112.13492),
- a learnable softmax temperature (Lee et al. 2021), learned as log(1/tau) or as tau.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nbkit.design.models.layers import sinusoid

TEMPERATURES = (None, "log_inv_tau", "tau")


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, relative: bool = False, diag_mask: bool = False,
                 temperature: str | None = None):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        if temperature not in TEMPERATURES:
            raise ValueError(f"temperature must be one of {TEMPERATURES}, got {temperature!r}")
        self.heads, self.head_dim = heads, width // heads
        self.relative, self.diag_mask, self.temperature = relative, diag_mask, temperature
        self.explicit = False  # softmax(q k^T + bias) v spelled out, for vmap (nbkit.training.pack): same maths
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.out = nn.Linear(width, width)
        if relative:
            self.pos_proj = nn.Linear(width, width, bias=False)  # W_R
            self.pos_u = nn.Parameter(torch.randn(heads, self.head_dim))  # global content bias u
            self.pos_v = nn.Parameter(torch.randn(heads, self.head_dim))  # global position bias v
        if temperature == "log_inv_tau":  # learn log(1/tau): no division, no sign flip
            self.log_inv_tau = nn.Parameter(torch.zeros(1))
        elif temperature == "tau":
            self.tau = nn.Parameter(torch.ones(1))

    def inv_tau(self) -> Tensor | None:
        if self.temperature == "log_inv_tau":
            return self.log_inv_tau.exp()
        if self.temperature == "tau":
            return 1 / self.tau
        return None

    def relative_encodings(self, T: int, device) -> Tensor:  # (T, T, heads, head_dim)
        pos = torch.arange(T, device=device)
        dist = pos[:, None] - pos[None, :]  # i - j
        return self.pos_proj(sinusoid(dist, self.heads * self.head_dim)).view(T, T, self.heads, self.head_dim)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, d)
        B, T, d = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (B, h, T, hd)
        scale = self.head_dim**-0.5
        bias = None
        if self.relative:
            r = self.relative_encodings(T, x.device).to(q.dtype)
            # the four terms: (q_i + u).k_j covers content-content and u; (q_i + v).R_{i-j} the rest
            bias = torch.einsum("bhid,ijhd->bhij", q + self.pos_v[:, None].to(q.dtype), r) * scale
            q = q + self.pos_u[:, None].to(q.dtype)
        inv_tau = self.inv_tau()
        if inv_tau is not None:
            q = q * inv_tau.to(q.dtype)
            bias = bias * inv_tau.to(q.dtype) if bias is not None else None
        if self.diag_mask:
            eye = torch.eye(T, dtype=torch.bool, device=x.device)
            bias = ~eye if bias is None else bias.masked_fill(eye, float("-inf"))
        if self.explicit:
            scores = q @ k.transpose(-2, -1) * scale
            if bias is not None:
                scores = scores.masked_fill(~bias, float("-inf")) if bias.dtype == torch.bool else scores + bias
            out = scores.softmax(-1) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
        return self.out(out.transpose(1, 2).reshape(B, T, d))


class PreNormResidual(nn.Module):
    def __init__(self, block: nn.Module, width: int, dropout: float):
        super().__init__()
        self.norm, self.block, self.dropout = nn.LayerNorm(width), block, nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.dropout(self.block(self.norm(x)))


class PreNormEncoder(nn.Sequential):
    def __init__(self, width: int, heads: int, layers: int, dropout: float = 0.1, **attention_options):
        blocks = []
        for _ in range(layers):
            mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * width, width))
            blocks += [PreNormResidual(Attention(width, heads, **attention_options), width, dropout),
                       PreNormResidual(mlp, width, dropout)]
        super().__init__(*blocks)

    def temperatures(self) -> Tensor | None:
        """Each layer's learned tau, (layers,), or None without a learnable temperature."""
        taus = [1 / m.inv_tau() for m in self.modules() if isinstance(m, Attention) and m.temperature]
        return torch.cat(taus) if taus else None
