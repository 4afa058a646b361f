"""ResNet-18/34/50 from torchvision with the original study's options.

He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (torchvision's ImageNet
stem, used unchanged on 32x32 images as the original did).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models import resnet as tvr
from torchvision.ops import FrozenBatchNorm2d

from nbkit.design.models.layers import MixStyle

# stages from the stem up, as the module-name prefixes they own
STAGES = (("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",))
LAYOUTS = {18: (tvr.BasicBlock, [2, 2, 2, 2]), 34: (tvr.BasicBlock, [3, 4, 6, 3]),
           50: (tvr.Bottleneck, [3, 4, 6, 3])}


class ResNet(tvr.ResNet):
    """torchvision's ResNet (same parameter names) plus MixStyle, GroupNorm and frozen stages."""

    def __init__(self, depth: int, num_classes: int, norm_type: str = "bn",
                 mixstyle_level: int = 0, finetune_level: int = 5):
        if depth not in LAYOUTS:
            raise ValueError(f"ResNet depth must be one of {sorted(LAYOUTS)}, got {depth}")
        super().__init__(*LAYOUTS[depth], num_classes=num_classes)
        self.mixstyle_level = mixstyle_level
        if mixstyle_level > 0:
            self.mixstyle = MixStyle()
        # finetune_level L keeps the last L stages trainable and freezes the ones before
        for i, prefixes in enumerate(STAGES):
            if i < len(STAGES) - finetune_level:
                _freeze(self, prefixes)
            elif norm_type == "gn":
                _replace_batch_norms(self, prefixes, lambda bn: nn.GroupNorm(16, bn.num_features))

    def _forward_impl(self, x: Tensor) -> Tensor:  # (B, 3, H, W) -> (B, classes)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for level, layer in enumerate((self.layer1, self.layer2, self.layer3, self.layer4), 1):
            x = layer(x)
            if level <= self.mixstyle_level:  # MixStyle is the identity in eval mode
                x = self.mixstyle(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _owned(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _replace_batch_norms(model: nn.Module, prefixes, make) -> None:
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.BatchNorm2d) and _owned(name, prefixes):
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, make(module))


def _freeze(model: nn.Module, prefixes) -> None:
    def frozen(bn: nn.BatchNorm2d) -> FrozenBatchNorm2d:
        fbn = FrozenBatchNorm2d(bn.num_features, eps=bn.eps)
        state = {k: v for k, v in bn.state_dict().items() if k != "num_batches_tracked"}
        fbn.load_state_dict(state)
        return fbn

    _replace_batch_norms(model, prefixes, frozen)
    for name, p in model.named_parameters():
        if _owned(name, prefixes):
            p.requires_grad_(False)
