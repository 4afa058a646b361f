"""nbkit: a workbench for comparing image-classification models."""

__version__ = "0.1.0"

__all__ = ["Settings", "VARIANTS", "create_model", "get_variant", "load_study", "resolve", "variant_table"]

# Loaded on first use (PEP 562): reading runs, sweeping on the CPU and the notebooks never import
# torch, which takes seconds.
_HOMES = {"Settings": "settings", "VARIANTS": "variants", "get_variant": "variants", "resolve": "variants",
          "create_model": "models", "variant_table": "models", "load_study": "study"}


def __getattr__(name):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module 'nbkit' has no attribute {name!r}")
