"""The study's three comparisons and nbkit's epochs comparison: which variants each holds and what
the original reported.

Notebooks, sweeps and reports read this table; nothing else lists comparison members. A
comparisons file (nbkit.design.comparisons_file) adds comparisons of the user's own on top of it: functions that
look comparisons up take that `study` (None: these alone).
"""

from __future__ import annotations

from dataclasses import dataclass

from nbkit.design.variants import VARIANTS
from nbkit.errors import UnknownVariantError, closest


@dataclass(frozen=True)
class Comparison:
    name: str
    question: str
    variants: tuple[str, ...]
    original_findings: str  # what the original study reported, in its own terms
    baseline: str | None = None  # the variant the others are measured against; None: the first
    expected: str = ""  # what the user expects (a comparisons file's)
    source: str | None = None  # the comparisons file that defines it; None: nbkit's own

    def __post_init__(self):
        if self.baseline is None:
            object.__setattr__(self, "baseline", self.variants[0])


_RESNET18_OPTIONS = tuple(v for v in VARIANTS if v.startswith("resnet18-") and VARIANTS[v].original
                          and v not in ("resnet18-aug", "resnet18-clr1e-4"))

COMPARISONS: dict[str, Comparison] = {
    "resnets": Comparison(
        "resnets",
        "Which ResNet settings help on a small-image dataset: normalisation layers, MixStyle, "
        "the input normaliser, a tailored head, or depth?",
        ("resnet18", *_RESNET18_OPTIONS, "resnet34", "resnet50"),
        "On CIFAR-100 after 5,000 steps the ResNets without MixStyle fit train_200 almost perfectly "
        "(top-1 0.995 to 1.0; with MixStyle 0.975, 0.915 and 0.585 for ms1, ms2, ms3) while test top-1 "
        "stayed between 0.33 and 0.39. In its words the ResNet \"severely overfits\", \"models with lower "
        "training accuracy have larger test accuracy\", and MixStyle \"helps alleviate this overfitting "
        "clearly\" (ms2 had the best test top-1 of these, 0.385 against 0.354 for the baseline). An open "
        "puzzle: the training loss drops suddenly after each epoch.",
    ),
    "learning": Comparison(
        "learning",
        "How much do the learning strategy (warm-up + decay against a constant rate) and data "
        "augmentation matter for the same ResNet-18?",
        ("resnet18", "resnet18-clr1e-4", "resnet18-aug"),
        "Its README says nothing about this comparison; its tables show augmentation with the best test "
        "top-1 of the whole study (0.408) and a constant rate of 1e-4 worst (0.318). Its train_200 of "
        "0.405 was scored on freshly augmented images (the probe went through the training pipeline), so "
        "it is not the clean fit of the other runs and says nothing about overfitting by itself: the "
        "clean train_200 - test gap measured here does.",
    ),
    "models": Comparison(
        "models",
        "How do ViTs and their attention variants compare with ResNet-18 and a tiny dilated CNN "
        "when trained from scratch for 5,000 steps?",
        ("resnet18", "toy-dilated", *(v for v in VARIANTS if v.startswith(("vit-", "vitn-")))),
        "Relative positional attention improved convergence (seen in its figure) and test top-1 (vitn-ra "
        "0.388 against 0.367 for vitn); the diagonal mask helped slightly (0.371); the learnable "
        "temperature did not help (0.365) though tau fell to about 0.9 (mean +- std across layers: "
        "0.9 +- 0.041 learning log 1/tau, 0.892 +- 0.046 learning tau). toy-dilated reached 0.189.",
    ),
    "epochs": Comparison(
        "epochs",
        "Why does the ResNet training loss drop at each epoch boundary? Is it memorisation of the examples "
        "trained on, and does loss on images never trained on drop there too?",
        ("resnet18", "resnet18-fixed", "resnet18-replacement", "resnet18-disjoint", "resnet18-half", "resnet18-aug",
         "toy-dilated", "vitn-12x256-8x8"),
        "The original left it open: \"Why does the loss suddenly drop periodically (after each epoch) for "
        "ResNet? Is it because of memorization?\" Its ResNet training curves step down at every epoch end.",
    ),
}


def _tables(study) -> tuple[dict, dict]:
    return (COMPARISONS, VARIANTS) if study is None else (study.comparisons, study.variants)


def expand(names: list[str], study=None) -> list[str]:
    """Comparison names and variant names (nbkit's, or a study's: nbkit.design.comparisons_file.Study) into a list
    of variants, order kept, no repeats."""
    comparisons, variants = _tables(study)
    out: list[str] = []
    for name in names:
        if name not in comparisons and name not in variants:
            hint = closest(name, [*comparisons, *variants])
            raise UnknownVariantError(f"unknown comparison or variant '{name}'{hint} Comparisons: "
                                      f"{', '.join(comparisons)}; variants: {', '.join(variants)}")
        members = comparisons[name].variants if name in comparisons else (name,)
        out += [v for v in members if v not in out]
    return out


def get_comparison(name: str, study=None) -> Comparison:
    """A comparison by name: nbkit's, or (with a study) a comparisons file's."""
    comparisons, _ = _tables(study)
    if name not in comparisons:
        raise UnknownVariantError(f"unknown comparison '{name}'; expected one of {', '.join(comparisons)}"
                                  f"{closest(name, comparisons)}")
    return comparisons[name]
