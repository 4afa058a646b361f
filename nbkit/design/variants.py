"""The study's 23 variants, and nbkit's own (marked original=False): each a name, a one-line
description and the settings it changes.

This table is the one place a variant is defined; the CLI, notebooks, sweeps and tests read it.
A comparisons file (nbkit.design.comparisons_file) adds variants of the user's own on top of it: functions that
look variants up take that `study` (None: these 23 alone).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nbkit.design.settings import Settings, load_yaml
from nbkit.errors import SettingsError, UnknownVariantError, closest


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    options: dict = field(default_factory=dict)  # settings that differ from the defaults
    base: str | None = None  # the variant it was written as a change of (a comparisons file's)
    source: str | None = None  # the comparisons file that defines it; None: nbkit's own
    original: bool = True  # False: nbkit's own, not a variant of the original study

    @property
    def settings(self) -> Settings:
        return Settings(**{"model": self.name, **self.options})

    def defined_options(self) -> dict:
        """The settings it sets (its model always), as plain JSON; imports nothing."""
        return {k: v for k, v in self.settings.to_dict().items() if k in self.options or k == "model"}

    def definition(self) -> dict:
        """Everything that defines it, as plain JSON (a run's config.json records it whole); for a
        model of the user's code, the file defining it (imported: for a run or a check only)."""
        options = self.defined_options()
        out = {"name": self.name, "description": self.description, "base": self.base, "options": options,
               "source": self.source or "nbkit"}
        if ":" in options["model"] and not options["model"].startswith("timm/"):  # the user's code: where it is
            from nbkit.design.models.user_models import source_file

            out["model_file"] = source_file(options["model"])
        return out


def _v(name, description, **options):
    return name, Variant(name, description, options)


def _own(name, description, **options):
    return name, Variant(name, description, options, original=False)


VARIANTS: dict[str, Variant] = dict([
    _v("resnet18", "ResNet-18, ImageNet stem, 1000-way head: the baseline"),
    _v("resnet18-aug", "resnet18 with crop, flip and rotation augmentation", model="resnet18", use_augmentation=True),
    _v("resnet18-clr1e-4", "resnet18 with a constant learning rate of 1e-4", model="resnet18", constant_lr=1e-4),
    _v("resnet18-gn", "resnet18 with GroupNorm (16 groups) for every BatchNorm", model="resnet18", resnet_norm_type="gn"),
    _v("resnet18-ms1", "resnet18 with MixStyle after layer1", model="resnet18", mixstyle_level=1),
    _v("resnet18-ms2", "resnet18 with MixStyle after layer1 and layer2", model="resnet18", mixstyle_level=2),
    _v("resnet18-ms3", "resnet18 with MixStyle after layer1, layer2 and layer3", model="resnet18", mixstyle_level=3),
    _v("resnet18-pcnorm", "resnet18 with a per-channel input normaliser", model="resnet18", per_channel_normalizer=True),
    _v("resnet18-tnc", "resnet18 with its head tailored to the dataset's classes", model="resnet18", tailor_num_classes=True),
    _v("resnet18-wonorm", "resnet18 without the input normaliser", model="resnet18", normalizer=False),
    _v("resnet34", "ResNet-34, ImageNet stem, 1000-way head"),
    _v("resnet50", "ResNet-50 (bottleneck blocks), ImageNet stem, 1000-way head"),
    _v("toy-dilated", "four dilated 3x3 convolutions (32 channels), pooled, linear head"),
    _v("vit-12x256-8x8", "ViT, 12 post-norm layers of width 256, 4 heads, 8x8 patches"),
    _v("vit-24x256-8x8", "ViT, 24 post-norm layers of width 256, 4 heads, 8x8 patches"),
    _v("vit-b-8x8", "ViT-Base: 12 post-norm layers of width 768, 12 heads, 8x8 patches"),
    _v("vit-aux-3x4x256-8x8", "ViT of 3 blocks x 4 layers, width 256, an auxiliary head after each block"),
    _v("vitn-12x256-8x8", "pre-norm ViT, 12 layers of width 256, 4 heads, 8x8 patches"),
    _v("vitn-12x256-8x8-ra", "vitn with Transformer-XL relative positional attention"),
    _v("vitn-12x256-8x8-dm", "vitn with a diagonal attention mask (no token attends to itself)"),
    _v("vitn-12x256-8x8-lt", "vitn with a learnable attention temperature, learning log(1/tau)"),
    _v("vitn-12x256-8x8-ltv", "vitn with a learnable attention temperature, learning tau"),
    _v("vitn-12x256-8x8-dm-lt", "vitn with the diagonal mask and the learnable log(1/tau)"),
    # nbkit's own, for the epochs comparison: the data order and the epoch length as controls
    _own("resnet18-fixed", "resnet18 seeing one fixed order every epoch (not in the original)",
         model="resnet18", sampling="fixed"),
    _own("resnet18-replacement", "resnet18 drawing every batch with replacement: no epochs (not in the original)",
         model="resnet18", sampling="replacement"),
    _own("resnet18-half", "resnet18 on the first half of its training set: epochs half as long (not in the original)",
         model="resnet18", train_fraction=0.5),
    _own("resnet18-disjoint", "resnet18 on one half of its training set for 6 epochs, then on the other, never-seen "
         "half (not in the original)", model="resnet18", sampling="disjoint", switch_epoch=6),
])


def get_variant(name: str, study=None) -> Variant:
    """A variant by name: nbkit's, or (with a study, nbkit.design.comparisons_file.Study) a comparisons file's."""
    table = VARIANTS if study is None else study.variants
    try:
        return table[name]
    except KeyError:
        raise UnknownVariantError(f"unknown variant '{name}'{closest(name, table)} "
                                  f"Valid variants: {', '.join(table)}") from None


def variant_of(settings: Settings) -> str | None:
    """The name of the variant whose settings these are, ignoring dataset and run-level keys."""
    model_keys = ("model", "use_augmentation", "constant_lr", "resnet_norm_type", "mixstyle_level",
                  "normalizer", "per_channel_normalizer", "tailor_num_classes")
    for name, variant in VARIANTS.items():
        ref = variant.settings
        if all(getattr(ref, k) == getattr(settings, k) for k in model_keys):
            return name
    return None


def resolve(spec: str | Path, study=None, **overrides) -> tuple[str, Settings]:
    """A variant name (nbkit's, or a study's) or an original-format YAML path into (run name, settings).

    A YAML config is named after its file, as the original named its log folders.
    """
    path = Path(spec)
    if str(spec).endswith((".yml", ".yaml")):
        values = {**load_yaml(path), **overrides}
        try:
            return path.stem, Settings(**values)
        except SettingsError as e:
            raise SettingsError(f"{path}: {e}") from None
    variant = get_variant(str(spec), study)
    return variant.name, variant.settings.replace(**overrides) if overrides else variant.settings
