"""Resuming a run folder, which may be one someone sent: a run folder is data. Resuming never
builds a model the folder names unless the user named it for this command: a sweep resumes only
the run it asked for (variant and settings equal to the recorded ones), and a plain
`nbkit train --resume` of a run whose model is code (an import path, or timm with its keyword
arguments) needs that model named by the user (`--set model=...`, or a comparisons file passed
with `--comparisons` that defines the run's variant with that model). The checkpoint is checked
before the model is built (nbkit.training.trainer)."""

from __future__ import annotations

from pathlib import Path

from nbkit.design.settings import Settings, external_model
from nbkit.rundir.runlog import resume_settings


def resumable(run_dir: str | Path, overrides: dict | None = None, asked: tuple[str, Settings] | None = None,
              study=None) -> tuple[str, Settings]:
    """The variant and settings to resume run_dir with; ValueError (one line, saying what was
    recorded and what was asked) when the run folder names a model the user did not.

    asked: the (variant, settings) a sweep asked for; study: the comparisons file the user passed
    (nbkit.design.comparisons_file.Study), whose variants name their models."""
    variant, settings = resume_settings(run_dir, overrides)
    if asked is not None:
        asked_variant, asked_settings = asked
        if variant != asked_variant or settings.identity() != asked_settings.identity():
            recorded, wanted = settings.identity(), asked_settings.identity()
            differ = sorted(k for k in recorded.keys() | wanted.keys() if recorded.get(k) != wanted.get(k))
            raise ValueError(f"cannot resume {run_dir}: it records model {settings.model!r:.80} (variant "
                             f"{variant!r:.60}) but this sweep asked for variant {asked_variant!r:.60} (model "
                             f"{asked_settings.model!r:.80}), settings that differ: {', '.join(differ) or 'none'}; "
                             "a run folder is data, never a model to build: move it away to start the run afresh")
        return asked_variant, asked_settings
    if external_model(settings.model) and not _named(variant, settings, overrides or {}, study):
        raise ValueError(f"cannot resume {run_dir}: it records model {settings.model!r:.80}, code that a run folder "
                         "cannot ask to run; if you trust it, name it yourself: --set model="
                         f"{settings.model:.80} (or --comparisons FILE defining variant {variant!r:.60} with it)")
    return variant, settings


def _named(variant: str, settings: Settings, overrides: dict, study) -> bool:
    """Whether the user named the run's model for this command."""
    if overrides.get("model") == settings.model:
        return True
    own = getattr(study, "own_variants", None) or {}
    if variant not in own:
        return False
    defined = study.variants[variant].settings
    return defined.model == settings.model and dict(defined.model_kwargs) == dict(settings.model_kwargs)
