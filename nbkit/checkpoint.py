"""Checkpoints: plain dicts of tensors and numbers, written whole or not at all. The one before
the last is kept (checkpoint.prev.pt) until the run is done, and resumed from when the last
cannot be read."""

from __future__ import annotations

import errno
import os
import shutil
import sys
import warnings
from pathlib import Path

from .settings import Settings

CHECKPOINT, PREVIOUS = "checkpoint.pt", "checkpoint.prev.pt"
CHECKPOINT_KEYS = ("model", "optimizer", "step", "settings", "generator", "cpu_rng", "perm", "window",
                   "extra_keys", "elapsed")


def save_checkpoint(run_dir: Path, checkpoint: dict) -> None:
    """A plain dict of tensors and numbers, written whole or not at all; the one before is kept
    as checkpoint.prev.pt."""
    import torch

    tmp = run_dir / f".{CHECKPOINT}.tmp"
    try:
        torch.save(checkpoint, tmp)
    except BaseException as e:
        full = shutil.disk_usage(run_dir).free < (1 << 20)  # torch reports a short write as "unexpected pos"
        tmp.unlink(missing_ok=True)
        if full and isinstance(e, Exception):
            raise OSError(errno.ENOSPC, f"No space left on device (writing {CHECKPOINT})") from None
        raise
    if (run_dir / CHECKPOINT).exists():
        os.replace(run_dir / CHECKPOINT, run_dir / PREVIOUS)
    os.replace(tmp, run_dir / CHECKPOINT)


def has_checkpoint(run_dir: str | Path) -> bool:
    return (Path(run_dir) / CHECKPOINT).exists() or (Path(run_dir) / PREVIOUS).exists()


def _load(path: Path, device) -> dict:
    """One checkpoint file; ValueError (saying why) when it is missing, unreadable or incomplete."""
    import torch

    try:  # weights_only: a crafted pickle cannot run code
        with warnings.catch_warnings():  # torch's pickle-protocol notice would precede the one-line error
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"it has no {path.name} yet") from None
    except Exception as e:
        raise ValueError(f"{path.name} is corrupt or not a checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or any(k not in state for k in CHECKPOINT_KEYS):
        raise ValueError(f"{path.name} is corrupt or not a checkpoint (keys missing)")
    return state


def load_checkpoint(run_dir: str | Path, device, settings: Settings | None = None) -> dict:
    """The run's last checkpoint, or the one before when the last is unreadable (said on stderr);
    with settings, refused unless it was made with them."""
    run_dir = Path(run_dir)
    try:
        state = _load(run_dir / CHECKPOINT, device)
    except ValueError as last:
        try:
            state = _load(run_dir / PREVIOUS, device)
        except ValueError:
            if not (run_dir / PREVIOUS).exists() and not (run_dir / CHECKPOINT).exists():
                raise ValueError(f"cannot resume {run_dir}: {last}") from None
            raise ValueError(f"cannot resume {run_dir}: {last}, and no earlier checkpoint is readable; "
                             f"to begin it again with its settings: nbkit train --resume {run_dir} --restart") from None
        print(f"nbkit: {last}; resuming from the checkpoint before it (step {state['step']})", file=sys.stderr)
    if settings is not None and _identity(state.get("settings")) != settings.identity():
        raise ValueError(f"cannot resume {run_dir}: its checkpoint was made with other settings")
    return state


def any_checkpoint_loads(run_dir: Path) -> bool:
    for name in (CHECKPOINT, PREVIOUS):
        try:
            _load(run_dir / name, "cpu")
            return True
        except ValueError:
            continue
    return False


def drop_previous(run_dir: Path) -> None:
    """A finished run needs no fallback checkpoint."""
    (run_dir / PREVIOUS).unlink(missing_ok=True)


def _identity(saved) -> dict | None:
    """A checkpoint's settings as Settings.identity() (a checkpoint made before a setting existed
    matches that setting's default)."""
    try:
        return Settings(**saved).identity()
    except (TypeError, ValueError):
        return None
