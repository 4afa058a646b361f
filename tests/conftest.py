from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def cifar10_archive(tmp_path_factory):
    """The real CIFAR-10 image folder from ../shared and one data dir whose decode cache the
    tests share (the first load decodes for about 15 s, later ones read the cache)."""
    archive = SHARED / "data" / "cifar10-images.tar.xz"
    if not archive.exists():
        pytest.skip(f"{archive} is absent (a user's clone without ../shared); CI has it")
    return archive, tmp_path_factory.mktemp("cifar10-data")
