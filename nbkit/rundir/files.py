"""Writing files whole. Every file nbkit writes goes to a fresh temporary name in the folder of
its target, created exclusively (a link planted there is never followed), and is renamed over
the target (a link at the target is replaced, never written through). A reader sees the old
file or the new one, never half of one; a write that fails leaves no temporary file. Appending
(logs) opens with O_NOFOLLOW for the same reason.

Reading what a runs directory holds (which anyone who can write there may have planted) goes
through `open_regular`/`read_regular`: a regular file only, no link followed at its name, never a
FIFO or device (which would block a view, or feed it without end), and never more than a bound."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: a temporary file gets the mode an ordinary one would


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[BinaryIO]:
    """A fresh temporary file beside `path`, open to write (binary): written through the
    descriptor that created it, never reopened by name (which another writer of a shared folder
    could swap for a link); renamed over `path` when the block ends without an error, removed
    when it raises."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            fd = None  # the file object owns it now
            yield f
            f.flush()
            if not os.path.samestat(os.fstat(f.fileno()), os.lstat(tmp)):  # the name now points elsewhere
                raise OSError(errno.EEXIST, "temporary file replaced while it was written", tmp)
        os.replace(tmp, path)
    except BaseException:
        if fd is not None:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes(path: str | Path, data: bytes, fsync: bool = True) -> None:
    """Replace `path` with `data`, whole or not at all."""
    with replacing(path) as f:
        f.write(data)
        f.flush()
        if fsync:
            os.fsync(f.fileno())


def write_text(path: str | Path, text: str, fsync: bool = True) -> None:
    write_bytes(path, text.encode("utf-8"), fsync)


def open_in_place(path: str | Path):
    """An existing file opened to be rewritten in place (read-write), refusing to follow a link."""
    return os.fdopen(os.open(path, os.O_RDWR | os.O_NOFOLLOW), "r+")


def open_append(path: str | Path, mode: str = "a"):
    """A file opened for appending (created if missing), refusing (OSError) a link at its name and
    anything but a regular file (a FIFO is refused at once, never waited on)."""
    return _regular(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                            0o666), path, mode)


def open_regular(path: str | Path, mode: str = "rb"):
    """`path` opened to read, refusing (OSError) a link at its name and anything but a regular
    file; opened without blocking, so a FIFO is refused at once rather than waiting for a writer."""
    return _regular(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC), path, mode)


def _regular(fd: int, path: str | Path, mode: str):
    """The file object of fd, opened without blocking, if it is a regular file (closed, OSError, if not)."""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | Path, limit: int) -> bytes:
    """A regular file's bytes (see open_regular), refusing (OSError) one larger than limit."""
    with open_regular(path) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes", str(path))
    return data


def tail_lines(path: str | Path, limit: int = 64 << 10) -> list[str]:
    """The non-blank lines of a regular file's last `limit` bytes (a log's end, however long the
    log), stripped; OSError as open_regular raises it."""
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        f.seek(max(0, size - limit))
        data = f.read(limit)
    lines = data.decode("utf-8", errors="replace").splitlines()
    if size > limit and lines:
        lines = lines[1:]  # the first is cut
    return [line.strip() for line in lines if line.strip()]
