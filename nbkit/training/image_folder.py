"""Image folders as datasets: a directory, or a .tar/.tar.gz/.tar.xz/.zip of one, holding
train/<class>/<image> and test/<class>/<image>; decoded once in parallel and cached by content.

Archives are untrusted: members with absolute paths, '..' or links are refused, and what an
archive or folder may expand to is bounded before anything is allocated: pixels per image
(NBKIT_MAX_IMAGE_PIXELS, default 16.8 million) and bytes read or decoded in all
(NBKIT_MAX_DATASET_BYTES, default 8 GiB). macOS metadata (__MACOSX/, ._*) is skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tarfile
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np

from nbkit.errors import DatasetError, terminal
from nbkit.rundir import files

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".zip")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
PIXELS_ENV, BYTES_ENV = "NBKIT_MAX_IMAGE_PIXELS", "NBKIT_MAX_DATASET_BYTES"
HEAD_BYTES = 256 << 10  # what is read of an archive member before it must show an image header


def _limit(env: str, default: int) -> int:
    try:
        return int(os.environ.get(env, default))
    except ValueError:
        raise DatasetError(f"{env} expects a whole number, got {os.environ[env]!r}") from None


def max_image_pixels() -> int:
    return _limit(PIXELS_ENV, 1 << 24)


def max_dataset_bytes() -> int:
    return _limit(BYTES_ENV, 8 << 30)


def _too_big(source: Path, what: str, size: int, limit: int, env: str) -> DatasetError:
    return DatasetError(f"{source}: {what} would take {size:,} bytes, more than the {limit:,} allowed; "
                        f"set {env} higher to load it")


def _is_image(p: PurePosixPath) -> bool:
    """An image file, not macOS metadata (__MACOSX/ folders, ._ AppleDouble files)."""
    return (p.suffix.lower() in IMAGE_SUFFIXES and "__MACOSX" not in p.parts
            and not any(part.startswith("._") for part in p.parts))


def folder_name(path: Path) -> str:
    name = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _content_key(path: Path) -> str:
    """A hash of an archive's bytes or a folder's images (names and bytes), read in chunks and at
    most max_dataset_bytes() in all (what loading refuses beyond): never a file whole in memory."""
    h, budget = hashlib.sha256(), max_dataset_bytes() + 1
    if path.is_file():
        budget = _hash_chunks(h, path, budget)
    else:  # by content: pixels may change while sizes and times stay
        for p in sorted(path.rglob("*")):
            if budget > 0 and p.is_file() and _is_image(PurePosixPath(p.relative_to(path).as_posix())):
                h.update(f"{p.relative_to(path)}\0".encode())
                one = hashlib.sha256()
                budget = _hash_chunks(one, p, budget)
                h.update(one.digest())
    return h.hexdigest()[:20]


def _hash_chunks(h, path: Path, budget: int) -> int:
    """Feed up to budget bytes of path to h, 1 MiB at a time; the budget left."""
    with open(path, "rb") as f:
        while budget > 0 and (chunk := f.read(min(1 << 20, budget))):
            h.update(chunk)
            budget -= len(chunk)
    return budget


def load_image_folder(path: Path, cache_dir: Path):
    """(train_x, train_y, test_x, test_y, classes) of an image folder, decoded once and cached."""
    if not path.exists():
        raise DatasetError(f"dataset path {path} does not exist; expected an image folder or archive")
    cache = cache_dir / f"{folder_name(path)}-{_content_key(path)}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return z["train_x"], z["train_y"], z["test_x"], z["test_y"], [str(c) for c in z["classes"]]
    members = _read_archive(path) if path.is_file() else _read_directory(path)
    arrays = decode_splits(members, path)
    cache_dir.mkdir(parents=True, exist_ok=True)
    train_x, train_y, test_x, test_y, classes = arrays
    with files.replacing(cache) as f:  # whole or not at all, through the descriptor that made it
        np.savez(f, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, classes=np.array(classes))
    return arrays


def _safe_member(name: str, archive: Path) -> PurePosixPath:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]):
        raise DatasetError(f"{archive}: refusing archive member {name!r} (absolute path or '..')")
    return p


def _read_archive(path: Path) -> list[tuple[PurePosixPath, bytes]]:
    out, budget = [], max_dataset_bytes()

    def take(name: str, size: int) -> None:  # before a member is read: what it expands to counts
        nonlocal budget
        budget -= size
        if budget < 0:
            raise _too_big(path, f"its images (up to {name})", max_dataset_bytes() - budget, max_dataset_bytes(),
                           BYTES_ENV)

    try:
        if path.name.endswith(".zip"):
            with zipfile.ZipFile(path) as z:
                for info in z.infolist():
                    p = _safe_member(info.filename, path)
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise DatasetError(f"{path}: refusing archive member {info.filename!r} (a link)")
                    if not info.is_dir() and _is_image(p):
                        take(info.filename, info.file_size)  # zipfile reads no more than this
                        with z.open(info) as f:
                            out.append((p, _read_image(info.filename, info.file_size, f, path)))
        else:
            with tarfile.open(path) as t:
                for m in t:
                    p = _safe_member(m.name, path)
                    if m.issym() or m.islnk() or m.isdev():
                        raise DatasetError(f"{path}: refusing archive member {m.name!r} (a link or device)")
                    if m.isfile() and _is_image(p):
                        take(m.name, m.size)
                        out.append((p, _read_image(m.name, m.size, t.extractfile(m), path)))
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
        raise DatasetError(f"{path} is not a readable archive ({type(e).__name__}: {e}); "
                           "expected a .tar, .tar.gz, .tar.xz or .zip of train/<class>/ and test/<class>/") from None
    return out


def _read_directory(path: Path) -> list[tuple[PurePosixPath, bytes]]:
    files = [(PurePosixPath(p.relative_to(path).as_posix()), p) for p in sorted(path.rglob("*")) if p.is_file()]
    files = [(rel, p) for rel, p in files if _is_image(rel)]
    total = sum(p.stat().st_size for _, p in files)
    if total > max_dataset_bytes():
        raise _too_big(path, "its images", total, max_dataset_bytes(), BYTES_ENV)
    out = []
    for rel, p in files:
        with open(p, "rb") as f:
            out.append((rel, _read_image(str(rel), p.stat().st_size, f, path)))
    return out


def _read_image(name: str, size: int, f, source: Path) -> bytes:
    """A member's bytes, refused from its first HEAD_BYTES unless they begin an image header of
    at most max_image_pixels() and the member is no larger than such an image can be (8 bytes a
    pixel, 16-bit RGBA stored raw, plus HEAD_BYTES of metadata): a bomb is never read whole."""
    head = f.read(min(size, HEAD_BYTES))
    w, h = _header_size(name, head, source)
    most = w * h * 8 + HEAD_BYTES
    if size > most:
        raise DatasetError(f"{source}: image {name} is {size:,} bytes, more than a {w}x{h} image can take "
                           f"({most:,}); refusing to read it")
    return head + f.read() if size > len(head) else head


def decode_splits(members, source: Path):
    # the folder holding train/ and test/ may sit below a top-level folder (cifar10/train/...)
    by_split: dict[str, dict[str, list]] = {"train": {}, "test": {}}
    roots: dict[tuple, str] = {}  # the folders holding train/ and test/, with an image of each
    for p, data in members:
        parts = p.parts
        if len(parts) >= 3 and parts[-3] in by_split:  # <root>/<split>/<class>/<image>
            roots.setdefault(parts[:-3], str(p))
            by_split[parts[-3]].setdefault(parts[-2], []).append((str(p), data))
    if len(roots) > 1:  # e.g. a copy nested inside (test/train/...): never mixed into the splits
        shown = "; ".join(f"{'/'.join(root) or '.'}/ (e.g. {example})" for root, example in sorted(roots.items()))
        raise DatasetError(f"{source} holds train/ or test/ folders in more than one place: {shown}; expected "
                           "one folder holding train/<class>/<image> and test/<class>/<image>")
    if not members:
        raise DatasetError(f"{source} holds no images; expected train/<class>/*.png|jpg and test/<class>/...")
    missing = [s for s, classes in by_split.items() if not classes]
    if missing:
        raise DatasetError(f"{source} has no {' or '.join(m + '/' for m in missing)} folder of class folders; "
                           "expected train/<class>/<image> and test/<class>/<image>")
    classes = sorted(by_split["train"])
    if sorted(by_split["test"]) != classes:
        only_train = sorted(set(classes) - set(by_split["test"]))
        only_test = sorted(set(by_split["test"]) - set(classes))
        raise DatasetError(f"{source}: classes differ between train/ and test/ "
                           f"(only in train: {only_train}, only in test: {only_test})")
    size = _first_size([item for split in by_split.values() for v in split.values() for item in v], source)
    decoded = sum(len(v) for split in by_split.values() for v in split.values()) * size[0] * size[1] * 3
    if decoded > max_dataset_bytes():
        raise _too_big(source, f"{size[0]}x{size[1]} images decoded", decoded, max_dataset_bytes(), BYTES_ENV)
    out = []
    progress = DecodeProgress(source, sum(len(v) for split in by_split.values() for v in split.values()))
    for split in ("train", "test"):
        items, ys = [], []
        for label, c in enumerate(classes):
            for name, data in sorted(by_split[split][c]):
                items.append((name, data))
                ys.append(label)
        out += [_decode_all(items, source, size, progress), np.array(ys, dtype=np.int64)]
    progress.close()
    return out[0], out[1], out[2], out[3], classes


class DecodeProgress:
    """How far the first decode of a dataset is, on stderr, once it has taken SAY_AFTER seconds
    (CIFAR-10 takes minutes on two cores; later loads read the cache, and a small folder says
    nothing): one line redrawn on a terminal, in a log a line per quarter."""

    SAY_AFTER = 2.0

    def __init__(self, source: Path, total: int):
        import sys
        import time

        self.source, self.total, self.done, self.said = source, max(1, total), 0, -1
        self.tty, self.out, self.clock, self.start = sys.stderr.isatty(), sys.stderr, time.monotonic, time.monotonic()

    def add(self, n: int) -> None:
        self.done += n
        quarter = 4 * self.done // self.total
        if self.clock() - self.start >= self.SAY_AFTER and (self.tty or quarter > self.said):
            self.said = quarter
            line = (f"nbkit: decoding the images of {terminal(str(self.source.name))} once (later loads read "
                    f"the cache): {self.done:,} of {self.total:,}")
            print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=self.out, flush=True)

    def close(self) -> None:
        if self.tty and self.said >= 0:
            print(file=self.out, flush=True)


def _first_size(items: list[tuple[str, bytes]], source: Path) -> tuple[int, int]:
    """(width, height) of the first image, from its header alone; every image must have it."""
    return _header_size(*min(items), source)


def _header_size(name: str, data: bytes, source: Path) -> tuple[int, int]:
    """(width, height) of an image from its header (the start of its bytes), within the pixel limit."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    except Exception as e:
        raise DatasetError(f"{source}: image {name} will not decode ({type(e).__name__}: {e})") from None
    if w * h > max_image_pixels():
        raise DatasetError(f"{source}: image {name} is {w}x{h}, more than the {max_image_pixels():,} pixels "
                           f"allowed per image; set {PIXELS_ENV} higher to load it")
    return w, h


def _rgb(im) -> np.ndarray:
    """(H, W, 3) uint8; 16-bit greyscale is scaled to 8 bits, not clipped to white."""
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        grey = (np.asarray(im).astype(np.int64) >> 8).clip(0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.asarray(im.convert("RGB"))


def _decode_chunk(items, size) -> list:
    """(name, array) per image, or [(name, error)] at the first that will not decode; an image
    of another size is reported from its header, before it is decoded."""
    from PIL import Image

    arrays = []
    for name, data in items:
        try:
            with Image.open(io.BytesIO(data)) as im:
                if im.size != size:
                    return [(name, im.size)]
                arrays.append((name, _rgb(im)))
        except Exception as e:
            return [(name, f"{type(e).__name__}: {e}")]
    return arrays


def _decode_all(items, source: Path, size: tuple[int, int], progress: DecodeProgress | None = None) -> np.ndarray:
    workers = max(1, min(8, os.cpu_count() or 1))
    chunks = [items[i:i + 2000] for i in range(0, len(items), 2000)]
    results = []
    with ProcessPoolExecutor(workers) if workers > 1 and len(chunks) > 1 else contextlib.nullcontext() as pool:
        decoded = pool.map(_decode_chunk, chunks, [size] * len(chunks)) if pool else (_decode_chunk(c, size) for c in chunks)
        for chunk, result in zip(chunks, decoded):  # in order, as each chunk is done
            results.append(result)
            if progress is not None:
                progress.add(len(chunk))
    arrays = [a for r in results for a in r]
    for name, a in arrays:
        if isinstance(a, str):
            raise DatasetError(f"{source}: image {name} will not decode ({a})")
        if isinstance(a, tuple):
            raise DatasetError(f"{source}: image {name} is {a[0]}x{a[1]}, expected {size[0]}x{size[1]} like the others")
    return np.stack([a for _, a in arrays]).transpose(0, 3, 1, 2).copy()  # (N, 3, H, W)
