"""Datasets as uint8 image tensors kept on the training device.

Sources: the official CIFAR "python version" files (downloaded when missing and online), any
image folder (nbkit.training.image_folder), and a small deterministic synthetic set for tests.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nbkit.errors import DatasetError
from nbkit.training.image_folder import ARCHIVE_SUFFIXES, folder_name, load_image_folder

if TYPE_CHECKING:  # torch is imported where tensors are made: a sweep's driver on the CPU needs none
    import torch

TRAIN_200 = 200  # the original's overfitting probe: 200 training images evaluated like test
SUBSET_SEED = 0  # fixed seed for train_200 of class-ordered folders and for the val split
TRAIN_SIZE_SEED = 1  # fixed seed of the permutation whose first N images a smaller training set keeps


@dataclass
class Dataset:
    name: str
    classes: list[str]
    source: str
    images: dict[str, torch.Tensor]  # split -> (N, 3, H, W) uint8
    labels: dict[str, torch.Tensor]  # split -> (N,) int64
    splits_eval: tuple[str, ...] = field(default=())  # the evaluated splits, train_200 first

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def size(self, split: str) -> int:
        return len(self.labels[split])

    def describe(self) -> dict:
        return {"name": self.name, "source": self.source, "classes": self.classes,
                "num_classes": self.num_classes, "sizes": {k: self.size(k) for k in self.labels}}


def is_builtin(spec: str) -> bool:
    return spec in ("cifar10", "cifar100", "synthetic")


def dataset_name(spec: str) -> str:
    """The name a dataset's runs are filed under: cifar100, synthetic, or the folder's name
    (`.` and `..` by the folder they stand for)."""
    return spec if is_builtin(spec) else folder_name(Path(os.path.abspath(spec)))


def load_dataset(spec: str, data_dir: str | Path = "data", val_size: int = 0, train_size: int = 0,
                 train_fraction: float = 1.0) -> Dataset:
    """`cifar100`, `cifar10`, `synthetic`, or a path to an image folder or archive; val_size images
    held out, then the training split cut to train_size and train_fraction (see training_subset)."""
    data_dir = Path(data_dir)
    if spec in ("cifar10", "cifar100"):
        train_x, train_y, test_x, test_y, classes, source = _load_cifar(spec, data_dir)
        name, class_ordered = spec, False
    elif spec == "synthetic":
        train_x, train_y, test_x, test_y, classes = synthetic_arrays()
        name, source, class_ordered = "synthetic", "synthetic", False
    elif os.sep in spec or "/" in spec or Path(spec).exists() or spec.endswith(ARCHIVE_SUFFIXES):
        path = Path(spec)
        train_x, train_y, test_x, test_y, classes = load_image_folder(path, data_dir / "cache")
        name, source, class_ordered = dataset_name(spec), str(path), True
    else:
        raise DatasetError(f"unknown dataset '{spec}'; expected cifar100, cifar10, synthetic, "
                           "or a path to an image folder or .tar/.tar.gz/.tar.xz/.zip archive")
    return _with_splits(name, classes, source, train_x, train_y, test_x, test_y, val_size, class_ordered,
                        train_size, train_fraction)


def training_subset(keep: np.ndarray, train_size: int = 0, train_fraction: float = 1.0) -> np.ndarray:
    """The training images kept (indices, in dataset order): the first train_size (0: all) of a
    fixed seeded permutation of `keep`, then the first train_fraction of those, so a smaller set
    lies inside a larger one and only the epoch length changes between them."""
    if train_size > len(keep):
        raise DatasetError(f"train_size {train_size} exceeds the {len(keep)} training images (after val_size); "
                           f"expected at most {len(keep)}, or 0 for all")
    if not train_size and train_fraction == 1.0:
        return keep
    order = np.random.default_rng(TRAIN_SIZE_SEED).permutation(keep)
    return np.sort(order[:int((train_size or len(keep)) * train_fraction)])


def _with_splits(name, classes, source, train_x, train_y, test_x, test_y, val_size, class_ordered,
                 train_size=0, train_fraction=1.0) -> Dataset:
    n = len(train_y)
    if val_size >= n:
        raise DatasetError(f"val_size {val_size} leaves none of the {n} training images to train on")
    rng = np.random.default_rng(SUBSET_SEED)
    order = rng.permutation(n)
    val_idx = np.sort(order[:val_size])
    keep = training_subset(np.setdiff1d(np.arange(n), val_idx), train_size, train_fraction)  # in dataset order
    # train_200: the first 200 in dataset order, or a seeded sample when the order is by class
    k = min(TRAIN_200, len(keep))
    probe = np.sort(rng.choice(keep, k, replace=False)) if class_ordered else keep[:k]
    import torch

    as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a))
    images = {"train": as_t(train_x[keep]), "train_200": as_t(train_x[probe]), "test": as_t(test_x)}
    labels = {"train": as_t(train_y[keep]), "train_200": as_t(train_y[probe]), "test": as_t(test_y)}
    splits = ("train_200", "test")
    if val_size:
        images["val"], labels["val"] = as_t(train_x[val_idx]), as_t(train_y[val_idx])
        splits = ("train_200", "val", "test")
    labels = {k: v.long() for k, v in labels.items()}
    return Dataset(name, list(classes), source, images, labels, splits)


# --- synthetic -----------------------------------------------------------------------------

def synthetic_arrays(num_classes: int = 10, train: int = 2000, test: int = 500, size: int = 32):
    """Each class is a smooth random prototype (colour and layout) plus noise: learnable fast."""
    rng = np.random.default_rng(1234)
    coarse = rng.uniform(0, 1, (num_classes, 3, 4, 4))
    protos = coarse.repeat(size // 4, axis=2).repeat(size // 4, axis=3)  # (K, 3, size, size)

    def draw(n):
        y = rng.integers(0, num_classes, n)
        x = protos[y] * 0.6 + rng.uniform(0, 0.4, (n, 3, size, size))
        return (x * 255).round().astype(np.uint8), y.astype(np.int64)

    train_x, train_y = draw(train)
    test_x, test_y = draw(test)
    return train_x, train_y, test_x, test_y, [f"class_{k}" for k in range(num_classes)]


# --- CIFAR, official python version --------------------------------------------------------

def _cifar_spec(name: str):
    from torchvision.datasets import CIFAR10, CIFAR100  # their URLs, file names and md5 sums

    cls = CIFAR10 if name == "cifar10" else CIFAR100
    label_key = "labels" if name == "cifar10" else "fine_labels"
    names_key = "label_names" if name == "cifar10" else "fine_label_names"
    return cls, label_key, names_key


class _ArrayUnpickler(pickle.Unpickler):
    """CIFAR's pickles hold dicts of numpy arrays, lists and strings: allow only those."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return _ArrayUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise DatasetError(f"{path} is not a readable CIFAR pickle ({e})") from None


def _load_cifar(name: str, data_dir: Path):
    cls, label_key, names_key = _cifar_spec(name)
    root = data_dir / cls.base_folder
    files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    if not all((root / f).exists() for f in files):
        _download_cifar(cls, data_dir, root)

    def read(parts):
        dicts = [_unpickle(root / f) for f, _ in parts]
        try:
            x = np.concatenate([np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32) for d in dicts])
            y = np.concatenate([np.asarray(d[label_key], dtype=np.int64) for d in dicts])
        except KeyError as e:
            raise DatasetError(f"{root}: a CIFAR file lacks the key {e}; expected 'data' and '{label_key}'") from None
        return x, y

    train_x, train_y = read(cls.train_list)
    test_x, test_y = read(cls.test_list)
    classes = _unpickle(root / cls.meta["filename"])[names_key]
    return train_x, train_y, test_x, test_y, classes, str(root)


def _download_cifar(cls, data_dir: Path, root: Path) -> None:
    where = f"put {cls.filename} (from {cls.url}) in {data_dir}/ or its extracted {cls.base_folder}/ folder there"
    if os.environ.get("NBKIT_OFFLINE"):
        raise DatasetError(f"{root} is missing and NBKIT_OFFLINE is set: {where}")
    from torchvision.datasets.utils import download_and_extract_archive

    archive = data_dir / cls.filename
    try:
        if archive.exists():  # a user-placed archive: verify and extract it
            from torchvision.datasets.utils import check_integrity, extract_archive
            if not check_integrity(str(archive), cls.tgz_md5):
                raise DatasetError(f"{archive} fails its md5 check ({cls.tgz_md5}); download it again")
            extract_archive(str(archive), str(data_dir))
        else:
            download_and_extract_archive(cls.url, str(data_dir), filename=cls.filename, md5=cls.tgz_md5)
    except DatasetError:
        raise
    except Exception as e:  # no network, proxy, checksum: all end the same way for the user
        raise DatasetError(f"{root} is missing and the download failed ({type(e).__name__}): {where}") from None
