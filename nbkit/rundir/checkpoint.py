"""Checkpoints: plain dicts of tensors and numbers, written whole or not at all. The one before
the last is kept (checkpoint.prev.pt) until the run is done, and resumed from when the last
cannot be read."""

from __future__ import annotations

import collections
import errno
import functools
import io
import os
import pickle
import shutil
import sys
import warnings
import zipfile
from pathlib import Path

from nbkit.design.settings import Settings
from nbkit.rundir import files

CHECKPOINT, PREVIOUS = "checkpoint.pt", "checkpoint.prev.pt"
CHECKPOINT_KEYS = ("model", "optimizer", "step", "settings", "generator", "cpu_rng", "perm", "window",
                   "extra_keys", "elapsed")


def save_checkpoint(run_dir: Path, checkpoint: dict) -> None:
    """A plain dict of tensors and numbers, written whole or not at all (nbkit.rundir.files); the one
    before is kept as checkpoint.prev.pt."""
    import torch

    try:
        with files.replacing(run_dir / CHECKPOINT) as f:  # written through its descriptor, never reopened by name
            torch.save(checkpoint, f)
            if (run_dir / CHECKPOINT).exists():  # renamed only once the new one is whole
                os.replace(run_dir / CHECKPOINT, run_dir / PREVIOUS)
    except Exception:
        if shutil.disk_usage(run_dir).free < (1 << 20):  # torch reports a short write as "unexpected pos"
            raise OSError(errno.ENOSPC, f"No space left on device (writing {CHECKPOINT})") from None
        raise


def has_checkpoint(run_dir: str | Path) -> bool:
    return (Path(run_dir) / CHECKPOINT).exists() or (Path(run_dir) / PREVIOUS).exists()


def _load(path: Path, device) -> dict:
    """One checkpoint file; ValueError (saying why) when it is missing, unreadable or incomplete."""
    import torch

    try:  # weights_only: a crafted pickle cannot run code
        with warnings.catch_warnings():  # torch's pickle-protocol notice would precede the one-line error
            warnings.simplefilter("ignore")
            with files.open_regular(path) as f:  # a FIFO or device planted there is refused, not waited on
                state = torch.load(f, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"it has no {path.name} yet") from None
    except Exception as e:
        raise ValueError(f"{path.name} is corrupt or not a checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or any(k not in state for k in CHECKPOINT_KEYS):
        raise ValueError(f"{path.name} is corrupt or not a checkpoint (keys missing)")
    max_iter = state["settings"].get("max_iter") if isinstance(state["settings"], dict) else None
    step, elapsed = state["step"], state["elapsed"]
    if isinstance(step, bool) or not isinstance(step, int) or not isinstance(max_iter, int) or not 0 <= step <= max_iter:
        raise ValueError(f"{path.name} is corrupt or not a checkpoint (step {step!r:.40}, expected 0..max_iter)")
    if isinstance(elapsed, bool) or not isinstance(elapsed, (int, float)) or not 0 <= elapsed < float("inf"):
        raise ValueError(f"{path.name} is corrupt or not a checkpoint (elapsed {elapsed!r:.40}, expected seconds)")
    return state


def load_checkpoint(run_dir: str | Path, device, settings: Settings | None = None, variant: str | None = None) -> dict:
    """The run's last checkpoint, or the one before when the last is unreadable (said on stderr);
    with settings (and variant), refused unless it was made with them."""
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
    if variant is not None and state.get("variant", variant) != variant:
        raise ValueError(f"cannot resume {run_dir}: its config.json names variant {variant!r:.60} but its checkpoint "
                         f"was trained as {state['variant']!r:.60}; expected config.json as the trainer wrote it")
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


# --- what a checkpoint says about its run, without torch ------------------------------------------

MAX_PICKLE_BYTES = 16 << 20  # a checkpoint's object structure (its tensors are stored apart)


class _Skeleton(pickle.Unpickler):
    """A torch checkpoint's object structure with every tensor read as None: dicts, numbers and
    strings only. Any other class in the pickle refuses the whole (nothing is ever called)."""

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module == "torch" and name.endswith("Storage")) or (module == "torch._utils" and name.startswith("_rebuild_")):
            return _nothing
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a checkpoint")

    def persistent_load(self, pid):
        return None


def _nothing(*args, **kwargs):
    return None


@functools.lru_cache(maxsize=4096)
def _skeleton(path: str, stamp: tuple) -> dict | None:
    try:
        with files.open_regular(path) as f, zipfile.ZipFile(f) as z:
            (name,) = [n for n in z.namelist() if n.endswith("/data.pkl")]
            if z.getinfo(name).file_size > MAX_PICKLE_BYTES:
                return None
            state = _Skeleton(io.BytesIO(z.read(name))).load()
    except Exception:  # noqa: BLE001 - an unreadable checkpoint tells nothing; loading it says why
        return None
    return state if isinstance(state, dict) else None


def saved_identity(run_dir: str | Path) -> dict | None:
    """The variant and seed a run's last readable checkpoint was trained as, read from its object
    structure alone (no torch, a millisecond); None without a readable checkpoint."""
    for name in (CHECKPOINT, PREVIOUS):
        path = Path(run_dir) / name
        try:
            st = path.stat()
        except OSError:
            continue
        state = _skeleton(str(path), (st.st_mtime_ns, st.st_size, st.st_ino))
        settings = state.get("settings") if state else None
        if isinstance(settings, dict) and isinstance(state.get("variant"), str):
            return {"variant": state["variant"], "seed": settings.get("seed")}
    return None
