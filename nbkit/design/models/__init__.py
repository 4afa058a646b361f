"""Model registry: the study's architectures by the names its configs use, any timm
architecture as `timm/<name>`, a model from the user's code as `package.module:callable`, and
create_model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nbkit.design.models import timm_models, user_models
from nbkit.design.models.layers import Normalizer
from nbkit.design.models.toy import ToyDilated
from nbkit.design.models.vit import ViT, ViTAux
from nbkit.design.models.vitn import PreNormEncoder
from nbkit.design.settings import Settings, external_model
from nbkit.design.variants import get_variant
from nbkit.errors import UnknownVariantError, closest

ORIGINAL_HEAD = 1000  # the original never passed the class count, so heads stayed ImageNet-sized


@dataclass(frozen=True)
class Architecture:
    build: Callable[..., nn.Module]  # build(num_classes, settings) -> nn.Module
    reference: str
    own_head: bool = False  # sized to the dataset always (timm and user models): no 1000-way quirk to keep


def _resnet(depth: int):
    def build(n, s):
        from nbkit.design.models.resnet import (
            ResNet,  # torchvision (about a second to import) only when a ResNet is built
        )

        return ResNet(depth, n, s.resnet_norm_type, s.mixstyle_level, s.finetune_level)
    return build


def _vitn(**attention):
    return lambda n, s: ViT(n, 256, 4, 12, encoder=PreNormEncoder(256, 4, 12, **attention))


_RESNET = "He et al. 2016, Deep Residual Learning (torchvision)"
_VIT = "Dosovitskiy et al. 2021, An Image is Worth 16x16 Words"
_VITN = "pre-norm ViT (Xiong et al. 2020, On Layer Normalization in the Transformer)"
_SPT = "Lee et al. 2021, Vision Transformer for Small-Size Datasets"

ARCHITECTURES: dict[str, Architecture] = {
    **{f"resnet{d}": Architecture(_resnet(d), _RESNET) for d in (18, 34, 50)},
    "toy-dilated": Architecture(lambda n, s: ToyDilated(n), "Yu & Koltun 2016, Multi-Scale Context Aggregation by Dilated Convolutions"),
    "vit-12x256-8x8": Architecture(lambda n, s: ViT(n, 256, 4, 12), _VIT),
    "vit-24x256-8x8": Architecture(lambda n, s: ViT(n, 256, 4, 24), _VIT),
    "vit-b-8x8": Architecture(lambda n, s: ViT(n, 768, 12, 12), _VIT),
    "vit-aux-3x4x256-8x8": Architecture(lambda n, s: ViTAux(n, 256, 4, 3, 4), "Lee et al. 2015, Deeply-Supervised Nets (auxiliary heads on a ViT)"),
    "vitn-12x256-8x8": Architecture(_vitn(), _VITN),
    "vitn-12x256-8x8-ra": Architecture(_vitn(relative=True), "Dai et al. 2019, Transformer-XL relative positional attention"),
    "vitn-12x256-8x8-dm": Architecture(_vitn(diag_mask=True), _SPT + " (diagonal masking)"),
    "vitn-12x256-8x8-lt": Architecture(_vitn(temperature="log_inv_tau"), _SPT + " (learnable temperature, log 1/tau)"),
    "vitn-12x256-8x8-ltv": Architecture(_vitn(temperature="tau"), _SPT + " (learnable temperature, tau)"),
    "vitn-12x256-8x8-dm-lt": Architecture(_vitn(diag_mask=True, temperature="log_inv_tau"), _SPT + " (diagonal masking and learnable log 1/tau)"),
}


class Classifier(nn.Module):
    """Input normaliser + architecture. forward returns logits and a dict of scalar extras:
    auxiliary losses `aux/<i>` (added to the training loss), and a learned attention temperature's
    `tau_mean`/`tau_std` across layers and each layer's `tau/<i>`. checked: (model name, classes)
    for a model from outside nbkit, whose logits are checked to be (batch, classes)."""

    def __init__(self, net: nn.Module, normalizer: Normalizer | None, checked: tuple[str, int] | None = None):
        super().__init__()
        self.normalizer = normalizer if normalizer is not None else nn.Identity()
        self.net = net
        self.checked = checked

    def forward(self, images: Tensor, targets: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        out = self.net(self.normalizer(images))  # images: (B, 3, H, W) floats in [0, 1]
        if self.checked is not None:  # a model from outside nbkit returns its logits alone
            check_logits(*self.checked, out, images.shape[0])
        logits, aux_logits = out if isinstance(out, tuple) else (out, [])
        extras = {}
        if targets is not None:
            for i, aux in enumerate(aux_logits):
                extras[f"aux/{i}"] = F.cross_entropy(aux.float(), targets)
        temperatures = getattr(getattr(self.net, "encoder", None), "temperatures", lambda: None)()
        if temperatures is not None:
            extras["tau_mean"] = temperatures.mean().detach()
            extras["tau_std"] = temperatures.std().detach()  # spread across layers
            extras.update({f"tau/{i}": t for i, t in enumerate(temperatures.detach())})  # per layer, as get_all_taus.py
        return logits, extras


class OutputShapeError(ValueError):
    """A model from outside nbkit whose output is not (batch, classes) logits."""


def check_logits(model: str, classes: int, logits, batch: int) -> None:
    """A model from outside nbkit must return (batch, classes) logits: say so at its first call."""
    if not isinstance(logits, Tensor) or tuple(logits.shape) != (batch, classes):
        got = f"shape {tuple(logits.shape)}" if isinstance(logits, Tensor) else f"a {type(logits).__name__}"
        raise OutputShapeError(f"model '{model}' returned {got}; expected logits of shape (batch, classes) = "
                               f"({batch}, {classes})")


def architecture(model: str) -> Architecture:
    """The architecture a settings' `model` names: nbkit's, timm/<name>, or package.module:callable."""
    if model.startswith(timm_models.PREFIX):
        timm_models.check_name(model)
        return Architecture(lambda n, s: timm_models.build(model, n, s.model_kwargs),
                            f"{timm_models.REFERENCE}: {model[len(timm_models.PREFIX):]}", own_head=True)
    if external_model(model):
        user_models.load(model)
        return Architecture(lambda n, s: user_models.build(model, n, s), f"your code: {model}", own_head=True)
    if model not in ARCHITECTURES:
        raise UnknownVariantError(f"unknown model '{model}'{closest(model, ARCHITECTURES)} Valid models: "
                                  f"{', '.join(ARCHITECTURES)}, timm/<name> or package.module:callable")
    return ARCHITECTURES[model]


def create_model(variant_or_settings: str | Settings, num_classes: int) -> Classifier:
    """The model of a variant (by name) or of resolved settings, for a dataset of num_classes."""
    s = get_variant(variant_or_settings).settings if isinstance(variant_or_settings, str) else variant_or_settings
    arch = architecture(s.model)
    head = num_classes if s.tailor_num_classes or arch.own_head else ORIGINAL_HEAD
    if num_classes > head:
        raise ValueError(f"a {head}-way head cannot classify {num_classes} classes; set tailor_num_classes")
    normalizer = Normalizer(3 if s.per_channel_normalizer else 1) if s.normalizer else None
    return Classifier(arch.build(head, s), normalizer, checked=(s.model, head) if arch.own_head else None)


def probe(s: Settings, num_classes: int, size: int = 32) -> None:
    """Build the model and run one training forward on two images, on the meta device (nothing
    allocated, nothing computed); a model that cannot run there is tried on the CPU instead."""
    def run():
        model = create_model(s, num_classes).train()
        model(torch.rand(2, 3, size, size), torch.zeros(2, dtype=torch.long))

    try:
        with torch.device("meta"):
            return run()
    except OutputShapeError:
        raise
    except Exception:  # noqa: BLE001 - e.g. an operation without a meta kernel: the CPU says whether it is real
        run()


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_flops(s: Settings, num_classes: int = 100, size: int = 32) -> float:
    """Floating-point operations of one training image's forward pass (a multiply-add is two),
    counted on the meta device: no weights allocated, nothing computed."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = create_model(s, num_classes).train()
        x, y = torch.empty(2, 3, size, size), torch.zeros(2, dtype=torch.long)  # 2: BatchNorm needs two
    with FlopCounterMode(display=False) as counter:
        model(x, y)
    return counter.get_total_flops() / 2


def variant_table(num_classes: int = 100, study=None) -> list[dict]:
    """Every variant (the study's: nbkit's own and a comparisons file's) with its description,
    model reference and parameter count."""
    from nbkit.design.variants import VARIANTS

    rows = []
    for name, variant in (study.variants if study is not None else VARIANTS).items():
        with torch.device("meta"):  # counts without allocating weights
            count = parameter_count(create_model(variant.settings, num_classes))
        rows.append({"variant": name, "description": variant.description,
                     "reference": architecture(variant.settings.model).reference, "parameters": count})
    return rows
