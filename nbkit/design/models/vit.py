"""Vision Transformers as the original built them for 32x32 images.

Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021, with 8x8 patches, a 2-D
sinusoidal position encoding and a class token that carries no position.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nbkit.design.models.layers import sinusoid_2d


class PatchStem(nn.Module):
    """8x8 patches flattened to channels, a 1x1 conv to width d, 2-D sinusoids, class token."""

    def __init__(self, width: int, patch_size: int = 8, in_channels: int = 3):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels * patch_size**2, width, 1)
        self.cls_token = nn.Parameter(torch.randn(width))

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, 1 + H/p * W/p, d)
        B, C, H, W = x.shape
        p = self.patch_size
        if H % p or W % p:
            raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {p}")
        # channel-major flattening of each patch, as the original's (d i j) order
        x = x.reshape(B, C, H // p, p, W // p, p).permute(0, 1, 3, 5, 2, 4).reshape(B, C * p * p, H // p, W // p)
        x = self.proj(x).permute(0, 2, 3, 1)  # (B, h, w, d)
        x = x + sinusoid_2d(H // p, W // p, x.shape[-1], x.device).to(x.dtype)
        cls = self.cls_token.to(x.dtype).expand(B, 1, -1)
        return torch.cat([cls, x.flatten(1, 2)], dim=1)


def class_head(width: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, num_classes))


def post_norm_encoder(width: int, heads: int, layers: int, dropout: float = 0.1) -> nn.TransformerEncoder:
    """PyTorch's own post-norm encoder (ReLU feed-forward of 4d), as the original used."""
    layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout, batch_first=True, norm_first=False)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class ViT(nn.Module):
    def __init__(self, num_classes: int, width: int, heads: int, layers: int,
                 patch_size: int = 8, encoder: nn.Module | None = None):
        super().__init__()
        self.stem = PatchStem(width, patch_size)
        self.encoder = encoder if encoder is not None else post_norm_encoder(width, heads, layers)
        self.head = class_head(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(self.stem(x))[:, 0])


class ViTAux(nn.Module):
    """Blocks of post-norm layers, a class head after each; the earlier heads train as
    auxiliary (deeply supervised) classifiers, the last head predicts."""

    def __init__(self, num_classes: int, width: int, heads: int, blocks: int, layers_per_block: int,
                 patch_size: int = 8):
        super().__init__()
        self.stem = PatchStem(width, patch_size)
        self.blocks = nn.ModuleList(post_norm_encoder(width, heads, layers_per_block) for _ in range(blocks))
        self.heads = nn.ModuleList(class_head(width, num_classes) for _ in range(blocks))

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, list[Tensor]]:
        x = self.stem(x)
        aux = []
        for block, head in zip(self.blocks[:-1], self.heads[:-1]):
            x = block(x)
            if self.training:
                aux.append(head(x[:, 0]))
        logits = self.heads[-1](self.blocks[-1](x)[:, 0])
        return (logits, aux) if self.training else logits
