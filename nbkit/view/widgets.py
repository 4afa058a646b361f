"""The notebook's controls (marimo widgets), defined once for every comparison: the dataset, and
the view's variants, splits, x axis, smoothing, log scale, seed display and extra scalar, each at
what the user chose before (workbench.Choices)."""

from __future__ import annotations

from nbkit.analysis.curves import SEED_MODES, X_AXES
from nbkit.design.comparisons import Comparison
from nbkit.view.workbench import Catalogue, Choices


def dataset_control(cat: Catalogue, choices: Choices):
    import marimo as mo

    options = list(cat.datasets) or ["(none)"]
    value = choices.dataset if choices.dataset in options else options[0]
    return mo.ui.dropdown(options, value=value, label="dataset")


def view_controls(cat: Catalogue, comparison: Comparison, dataset: str | None, choices: Choices,
                  default_scalar_: str | None = None):
    """Variants, splits, x axis, smoothing, log scale, seed display and an extra scalar, as one
    marimo dictionary, each at what the user chose before (Choices) or its default."""
    import marimo as mo

    options = cat.options(dataset) or list(comparison.variants)
    splits = list(cat.splits) or ["train_200", "test"]
    extra = ["(none)", *cat.scalars]
    had = choices.settings
    keep = lambda key, allowed, default: had[key] if had.get(key) in allowed else default
    picked_splits = [s for s in had.get("splits", []) if s in splits] or [s for s in ("train_200", "val", "test")
                                                                          if s in splits]
    return mo.ui.dictionary({
        "variants": mo.ui.multiselect(options, value=choices.variants(options, comparison),
                                      label="variants (those without runs draw nothing)", full_width=True),
        "splits": mo.ui.multiselect(splits, value=picked_splits, label="top-1 on"),
        "x": mo.ui.dropdown(list(X_AXES), value=keep("x", X_AXES, "step"), label="x axis"),
        "smoothing": mo.ui.slider(steps=[0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99],
                                  value=keep("smoothing", (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99), 0.0),
                                  label="EMA smoothing", show_value=True, debounce=True),
        "log_scale": mo.ui.switch(value=bool(had.get("log_scale", False)), label="log-scale loss"),
        "seeds": mo.ui.radio(list(SEED_MODES), value=keep("seeds", SEED_MODES, SEED_MODES[0]), label="seeds",
                             inline=True),
        "scalar": mo.ui.dropdown(extra, value=keep("scalar", extra, default_scalar_ if default_scalar_ in extra
                                                   else "(none)"), label="also plot", searchable=True),
    })
