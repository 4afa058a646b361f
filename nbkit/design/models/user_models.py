"""Models from the user's own code: a model `package.module:callable` is imported (the working
directory on the import path, as `python -m` has it) and called with the dataset's class count:

- an nn.Module class: `Class(num_classes=N, **model_kwargs)`;
- any other callable: `callable(N, settings, **model_kwargs)`, returning an nn.Module.

A sweep's children run in the same working directory, so they import it the same way; a Ray
sweep ships the module's top-level package to its workers (nbkit.sweeps.ray_backend)."""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from pathlib import Path

from torch import nn

from nbkit.errors import UnknownVariantError, closest

IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def working_directory_importable() -> None:
    """The working directory on the import path, as `python -m` has it, for the `nbkit` script too."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())


def load(model: str):
    """The callable an import path names."""
    if not IMPORT_PATH.fullmatch(model):
        raise UnknownVariantError(f"model '{model}' is not an import path; expected package.module:callable")
    module_name, _, attr = model.partition(":")
    working_directory_importable()
    try:
        obj = importlib.import_module(module_name)
    except ImportError as e:
        raise UnknownVariantError(f"model '{model}': cannot import {module_name} ({e}); run from the directory "
                                  "that holds it, or put it on PYTHONPATH") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            raise UnknownVariantError(f"model '{model}': {getattr(obj, '__name__', module_name)} has no "
                                      f"'{part}'{closest(part, names)}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UnknownVariantError(f"model '{model}' names a {type(obj).__name__}; expected an nn.Module class or "
                                  "a function (num_classes, settings) -> nn.Module")
    return obj


def build(model: str, num_classes: int, settings) -> nn.Module:
    obj, kwargs = load(model), dict(settings.model_kwargs)
    is_class = isinstance(obj, type) and issubclass(obj, nn.Module)
    try:
        net = obj(num_classes=num_classes, **kwargs) if is_class else obj(num_classes, settings, **kwargs)
    except TypeError as e:  # most often a signature that does not fit
        raise ValueError(f"model '{model}' could not be called with num_classes={num_classes}"
                         f"{', settings' if not is_class else ''}{', **model_kwargs' if kwargs else ''} ({e})") from None
    if not isinstance(net, nn.Module):
        raise ValueError(f"model '{model}' returned {type(net).__name__}, not an nn.Module; expected a function "
                         "(num_classes, settings) -> nn.Module or an nn.Module class taking num_classes")
    return net


def source_file(model: str) -> str | None:
    """The file that defines an import path's callable (recorded with a run, for its readers),
    relative to the working directory when it is under it."""
    try:
        path = Path(inspect.getsourcefile(load(model))).resolve()
    except (TypeError, ValueError):
        return None
    return str(path.relative_to(Path.cwd().resolve())) if path.is_relative_to(Path.cwd().resolve()) else str(path)

