"""The original's -aug augmentation on whole batches on the device: random 32x32 crop from
4-pixel zero padding, horizontal flip, rotation within +-15 degrees (nearest, zero fill)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def augment(x: Tensor, generator: torch.Generator, padding: int = 4, degrees: float = 15.0,
            flip_p: float = 0.5, part: slice | None = None, total: int | None = None) -> Tensor:
    """x: (B, C, H, W) floats; every sample draws its own crop, flip and angle.

    part, total: x is samples `part` of a batch of `total` (one rank's slice in a multi-process
    run); the draws are made for the whole batch and sliced, so each sample is augmented as it
    would be in a single process.
    """
    B, C, H, W = x.shape
    dev = x.device
    part = part or slice(0, B)
    draw = lambda n: torch.rand(total or n, device=dev, generator=generator)[part]
    # crop + flip as one exact gather from the zero-padded batch
    padded = F.pad(x, (padding,) * 4)
    dy = (draw(B) * (2 * padding + 1)).long()
    dx = (draw(B) * (2 * padding + 1)).long()
    rows = dy[:, None] + torch.arange(H, device=dev)  # (B, H)
    cols = dx[:, None] + torch.arange(W, device=dev)  # (B, W)
    flip = draw(B) < flip_p
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    b = torch.arange(B, device=dev)[:, None, None]
    x = padded.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # (B, C, H, W)
    # rotation about the centre, nearest neighbour, zeros outside
    angle = (draw(B) * 2 - 1) * math.radians(degrees)
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
