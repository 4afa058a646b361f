"""timm architectures by name: a model `timm/<name>` is timm's `<name>`, built from scratch
(pretrained=False) with the dataset's class count and the variant's model_kwargs.

timm (PyTorch Image Models, Wightman 2019) is an optional extra: pip install '.[timm]'."""

from __future__ import annotations

from torch import nn

from nbkit.errors import UnknownVariantError, closest

PREFIX = "timm/"
REFERENCE = "Wightman 2019, PyTorch Image Models (timm), trained from scratch"


def import_timm():
    try:
        import timm
    except ImportError:
        raise UnknownVariantError("timm/ models need timm, which is not installed; install it with "
                                  "pip install '.[timm]' (or pip install timm)") from None
    return timm


def check_name(model: str) -> str:
    """timm's name of a `timm/<name>` model, refused with the closest timm names when timm has none such."""
    timm, name = import_timm(), model[len(PREFIX):]
    if not timm.is_model(name):
        pattern = f"{name.split('_')[0]}*"
        raise UnknownVariantError(f"unknown timm model '{name}'{closest(name, timm.list_models())} "
                                  f"(timm.list_models('{pattern}') lists those named like it)")
    return name


def build(model: str, num_classes: int, kwargs: dict) -> nn.Module:
    """The architecture, randomly initialised: no weights are downloaded."""
    name = check_name(model)
    if kwargs.get("pretrained"):
        raise ValueError(f"{model}: pretrained weights are not used: nbkit trains timm models from scratch "
                         "(they would need a download from the Hugging Face hub); drop pretrained from model_kwargs")
    try:
        return import_timm().create_model(name, **{**kwargs, "pretrained": False, "num_classes": num_classes})
    except TypeError as e:
        raise ValueError(f"{model} does not take these model_kwargs {dict(kwargs)} ({e})") from None
