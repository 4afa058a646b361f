"""Models of your own for nbkit (see README, "Your own models"). A model is named in a
comparisons file by its import path, package.module:callable, and is either

- an nn.Module class whose constructor takes num_classes (and model_kwargs as keywords), or
- a function (num_classes, settings, **model_kwargs) -> nn.Module.

Its forward takes images (batch, 3, H, W), already through nbkit's input normaliser, and
returns logits (batch, classes)."""

from __future__ import annotations

from torch import Tensor, nn


class SmallCNN(nn.Module):
    """Three 3x3 convolution blocks (BatchNorm, GELU, 2x2 max-pool) of width, 2x and 4x width
    channels, global average pooling, a linear head."""

    def __init__(self, num_classes: int, width: int = 32):
        super().__init__()
        layers, channels = [], 3
        for out in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.GELU(),
                       nn.MaxPool2d(2)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).mean((2, 3)))  # (B, C, H/8, W/8) -> (B, classes)


def small_cnn(num_classes: int, settings, **model_kwargs) -> nn.Module:
    """The function form: settings are the run's nbkit.Settings (e.g. settings.dataset)."""
    return SmallCNN(num_classes, **model_kwargs)
