"""toy-dilated: a tiny CNN whose receptive field grows by dilation (Yu & Koltun, ICLR 2016)."""

from torch import nn


class ToyDilated(nn.Sequential):
    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 32):
        layers = []
        for i, dilation in enumerate((1, 2, 4, 8)):
            layers += [nn.Conv2d(in_channels if i == 0 else width, width, 3, padding=dilation, dilation=dilation),
                       nn.BatchNorm2d(width), nn.GELU()]
        super().__init__(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(width, num_classes))
