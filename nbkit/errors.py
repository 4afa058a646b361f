"""How things go wrong, in one place: nbkit's exception types, the exit codes a process ends
with, the "did you mean" hint, the SIGTERM/SIGINT handling that turns a signal into a stop at
the next safe point, and text made safe for the terminal an error or a progress line is printed on.

Every error a user can act on is a ValueError subclass whose message is one line: what was
wrong, what was expected, the closest valid choice.
"""

from __future__ import annotations

import contextlib
import difflib
import re
import signal
import threading
from typing import Callable, Iterable

# what a terminal obeys (escapes, bells, C1) or reorders the line by (bidirectional controls)
_TERMINAL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def terminal(value) -> str:
    """Text for a terminal: control characters (escape sequences, bells, carriage returns) as
    visible \\x.. codes, so a name can neither rewrite the screen nor hide what precedes it."""
    return _TERMINAL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}",
                         str(value))


# exit codes of `nbkit` (and of each run a sweep starts)
OK, FAILED, ERROR, BUSY, STOPPED = 0, 1, 2, 75, 130  # BUSY: EX_TEMPFAIL, another process holds the run


class SettingsError(ValueError):
    """A setting that does not exist or has a value of the wrong kind."""


class UnknownVariantError(ValueError):
    """A variant, model or comparison name that is not in the registry."""


class DatasetError(ValueError):
    """A dataset that is missing, malformed or unreadable; the message says what to do."""


class RunBusy(RuntimeError):
    """The run directory is held by another process, or already holds a finished run."""


class RunStopped(Exception):
    """Raised in the training loop after SIGTERM/SIGINT, so the run checkpoints and marks itself stopped."""


class RunLogLost(RuntimeError):
    """A run's metrics.jsonl was deleted or replaced while the run was writing it."""


class NonFiniteLoss(Exception):
    """The training loss became NaN or infinite."""


def closest(name: str, choices: Iterable[str]) -> str:
    """"; did you mean 'x'?" for the nearest valid choice, or "" when none is near."""
    close = difflib.get_close_matches(str(name), list(choices), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def exit_code(e: BaseException) -> int:
    """The exit status a command ends with after e."""
    if isinstance(e, RunBusy):
        return BUSY
    if isinstance(e, (RunStopped, KeyboardInterrupt)):
        return STOPPED
    return ERROR


_AFTER_A_STOP: list = []  # [SIG_IGN] in a process that exits once its run stops (the nbkit command)


def ignore_signals_after_a_stop() -> None:
    """For a process that exits once its run is stopped (the nbkit command): a signal that arrives
    after the stop, while it exits, is ignored rather than killing it half-way out (a burst of
    SIGTERMs from a dying sweep, a second Ctrl-C). A notebook keeps its own handlers."""
    _AFTER_A_STOP[:] = [signal.SIG_IGN]


@contextlib.contextmanager
def stop_signals(on_signal: Callable[[str], None] | None = None):
    """While inside, SIGTERM, SIGINT and SIGHUP (its terminal closed) do not kill the process: their
    names are appended to the yielded list (and passed to on_signal), for the caller to stop at its
    next safe point.
    Outside the main thread, where Python cannot install handlers, signals keep their defaults."""
    requested: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def handler(signum, frame):
        requested.append(signal.Signals(signum).name)
        if on_signal:
            on_signal(requested[-1])

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        yield requested
    finally:
        for s, h in old.items():  # once stopped, a process that exits next never restores a killing default
            signal.signal(s, _AFTER_A_STOP[0] if requested and _AFTER_A_STOP else h)
