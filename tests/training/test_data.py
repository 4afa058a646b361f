import pytest
import torch

from nbkit.training import image_folder
from nbkit.training.augment import augment
from nbkit.training.data import TRAIN_200, DatasetError, load_dataset
from tests.helpers import add_tar_member, tar_folder, write_cifar100, write_image_folder


def test_synthetic_is_deterministic_with_train_200_first_images():
    a, b = load_dataset("synthetic"), load_dataset("synthetic")
    assert torch.equal(a.images["train"], b.images["train"])
    assert torch.equal(a.images["train_200"], a.images["train"][:TRAIN_200])
    assert a.images["train"].dtype == torch.uint8 and a.images["train"].shape[1:] == (3, 32, 32)
    assert a.splits_eval == ("train_200", "test")


def test_val_split_is_held_out_with_a_fixed_seed():
    ds = load_dataset("synthetic", val_size=300)
    full = load_dataset("synthetic")
    assert ds.size("val") == 300 and ds.size("train") == full.size("train") - 300
    assert ds.splits_eval == ("train_200", "val", "test")
    assert torch.equal(ds.images["val"], load_dataset("synthetic", val_size=300).images["val"])
    rows = lambda t: {bytes(r.numpy()) for r in t}
    assert not rows(ds.images["val"]) & rows(ds.images["train"])
    assert not rows(ds.images["val"]) & rows(ds.images["train_200"])


def test_cifar100_official_layout_uses_fine_labels_and_meta_names(tmp_path, monkeypatch):
    monkeypatch.setenv("NBKIT_OFFLINE", "1")
    root = write_cifar100(tmp_path)
    ds = load_dataset("cifar100", tmp_path)
    assert ds.num_classes == 100 and ds.classes[3] == "fine3"
    import pickle
    train = pickle.loads((root / "train").read_bytes())
    assert torch.equal(ds.labels["train"], torch.tensor(train["fine_labels"]))
    first = torch.from_numpy(train["data"][0].reshape(3, 32, 32))
    assert torch.equal(ds.images["train"][0], first)  # channel-major rows
    assert torch.equal(ds.images["train_200"], ds.images["train"][:200])  # first 200, dataset order
    assert ds.size("test") == 50


def test_cifar_missing_offline_says_which_file_goes_where(tmp_path, monkeypatch):
    monkeypatch.setenv("NBKIT_OFFLINE", "1")
    with pytest.raises(DatasetError, match=r"put cifar-100-python.tar.gz .* in .*/ or its extracted cifar-100-python/"):
        load_dataset("cifar100", tmp_path)


def test_cifar_download_failure_is_one_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu
    monkeypatch.delenv("NBKIT_OFFLINE", raising=False)

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(tvu, "download_and_extract_archive", offline)
    with pytest.raises(DatasetError, match="download failed .*put cifar-10-python.tar.gz"):
        load_dataset("cifar10", tmp_path)


def test_cifar_pickle_with_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("NBKIT_OFFLINE", "1")
    root = write_cifar100(tmp_path)
    import os
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (root / "train").write_bytes(pickle.dumps({"data": Evil()}))
    with pytest.raises(DatasetError, match="refusing to load"):
        load_dataset("cifar100", tmp_path)


@pytest.mark.parametrize("kind", ["dir", "tar.gz", "zip"])
def test_image_folder_sources_decode_and_cache(tmp_path, kind, monkeypatch, capsys):
    monkeypatch.setattr(image_folder.DecodeProgress, "SAY_AFTER", 0.0)  # a long decode's progress, said at once
    folder = write_image_folder(tmp_path / "src")
    if kind == "dir":
        spec = folder
    elif kind == "tar.gz":
        spec = tar_folder(folder, tmp_path / "pets.tar.gz")
    else:
        import shutil
        spec = shutil.make_archive(str(tmp_path / "pets"), "zip", folder)
    ds = load_dataset(str(spec), tmp_path / "data")
    assert ds.classes == ["cat", "dog", "emu"]
    assert ds.size("train") == 18 and ds.size("test") == 9
    assert ds.images["train"].shape == (18, 3, 8, 8)
    assert ds.labels["train"].tolist() == [0] * 6 + [1] * 6 + [2] * 6
    assert len(list((tmp_path / "data" / "cache").glob("*.npz"))) == 1
    said = capsys.readouterr().err  # the first decode says how far it is
    assert "decoding the images of" in said and "27 of 27" in said
    monkeypatch.setattr(image_folder, "decode_splits", lambda *a: pytest.fail("decoded twice"))
    again = load_dataset(str(spec), tmp_path / "data")
    assert torch.equal(again.images["test"], ds.images["test"])
    assert "decoding" not in capsys.readouterr().err  # the cache: nothing to say


def test_class_ordered_folder_gets_a_fixed_seeded_train_200(tmp_path):
    folder = write_image_folder(tmp_path / "src", classes=[f"c{i}" for i in range(10)], per_class=(30, 2))
    a = load_dataset(str(folder), tmp_path / "d1")
    b = load_dataset(str(folder), tmp_path / "d2")
    assert torch.equal(a.labels["train_200"], b.labels["train_200"])
    assert len(set(a.labels["train_200"].tolist())) == 10  # a sample, not the first classes only


@pytest.mark.parametrize("name, content, message", [
    ("nothing", None, "does not exist"),
    ("empty.tar.gz", b"", "not a readable archive"),
    ("junk.zip", b"PK-not-a-zip", "not a readable archive"),
    ("cut.tar.xz", b"\xfd7zXZ\x00\x00", "not a readable archive"),
])
def test_unreadable_sources(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(DatasetError, match=message):
        load_dataset(str(tmp_path / name), tmp_path / "data")


def test_folder_without_test_split(tmp_path):
    folder = write_image_folder(tmp_path / "src")
    import shutil
    shutil.rmtree(folder / "test")
    with pytest.raises(DatasetError, match="no test/ folder"):
        load_dataset(str(folder), tmp_path / "data")


def test_classes_differ_between_splits(tmp_path):
    folder = write_image_folder(tmp_path / "src")
    (folder / "test" / "emu").rename(folder / "test" / "owl")
    with pytest.raises(DatasetError, match=r"classes differ .*only in train: \['emu'\], only in test: \['owl'\]"):
        load_dataset(str(folder), tmp_path / "data")


def test_image_that_will_not_decode(tmp_path):
    folder = write_image_folder(tmp_path / "src")
    (folder / "train" / "dog" / "0001.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="train/dog/0001.png will not decode"):
        load_dataset(str(folder), tmp_path / "data")
    assert not list((tmp_path / "data").rglob("*.npz"))  # nothing half-written


@pytest.mark.parametrize("name, kind, message", [
    ("../evil.png", "file", "absolute path or '..'"),
    ("/etc/evil.png", "file", "absolute path or '..'"),
    ("train/cat/link.png", "sym", "a link"),
])
def test_unsafe_archive_members_are_refused(tmp_path, name, kind, message):
    import tarfile
    archive = tmp_path / "bad.tar"
    add_tar_member(archive, name, kind=tarfile.SYMTYPE if kind == "sym" else tarfile.REGTYPE, linkname="/etc/passwd")
    with pytest.raises(DatasetError, match=message):
        load_dataset(str(archive), tmp_path / "data")


def test_unknown_dataset_name():
    with pytest.raises(DatasetError, match="unknown dataset 'cifar1000'; expected cifar100, cifar10, synthetic"):
        load_dataset("cifar1000")


def test_augmentation_shapes_range_and_per_sample_randomness():
    x = torch.rand(64, 3, 32, 32) * 0.8 + 0.2  # no zeros before augmenting
    out = augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert (out == 0).any()  # zero fill from padding and rotation
    same = augment(x[:1].expand(64, -1, -1, -1).contiguous(), torch.Generator().manual_seed(1))
    distinct = {bytes(s.numpy()) for s in same}
    assert len(distinct) > 50  # each sample draws its own crop, flip and angle
    again = augment(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_augmentation_disabled_parts_are_identity():
    x = torch.rand(8, 3, 32, 32)
    assert torch.equal(augment(x, torch.Generator().manual_seed(0), padding=0, degrees=0, flip_p=0), x)
    flipped = augment(x, torch.Generator().manual_seed(0), padding=0, degrees=0, flip_p=1)
    assert torch.equal(flipped, x.flip(-1))


def test_shared_cifar10_archive_loads(cifar10_archive):
    archive, data_dir = cifar10_archive
    ds = load_dataset(str(archive), data_dir)
    assert ds.name == "cifar10-images"
    assert ds.classes[:3] == ["airplane", "automobile", "bird"]
    assert ds.size("train") == 50000 and ds.size("test") == 10000
    mean = ds.images["train"].float().mean() / 255  # README: channel means 0.4913/0.4821/0.4465
    assert abs(mean.item() - (0.4913 + 0.4821 + 0.4465) / 3) < 0.002


# --- what an image folder may expand to -------------------------------------------------------

def load_in_child(source, data_dir, **env) -> tuple[str, float]:
    """(the error, or "loaded"; peak resident MB) of loading a dataset in a fresh process."""
    import os
    import subprocess
    import sys

    code = ("import resource, sys\nfrom nbkit.training.data import load_dataset, DatasetError\n"
            "try:\n    load_dataset(sys.argv[1], sys.argv[2]); print('loaded')\n"
            "except DatasetError as e:\n    print(e)\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    done = subprocess.run([sys.executable, "-c", code, str(source), str(data_dir)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **env})
    *message, peak = done.stdout.strip().splitlines()
    return "\n".join(message), float(peak)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """Peak resident MB of a fresh process loading a small image folder."""
    root = tmp_path_factory.mktemp("small")
    return load_in_child(write_image_folder(root / "imgs"), root / "data")[1]


def test_a_zip_bomb_is_refused_before_it_is_read(tmp_path, baseline):
    import zipfile

    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("data/train/cat/0.png", "w") as f:  # 512 MiB of zeros, half a MB on disk
            for _ in range(8):
                f.write(bytes(1 << 26))
    assert archive.stat().st_size < 2 << 20
    message, peak = load_in_child(archive, tmp_path / "data", NBKIT_MAX_DATASET_BYTES=str(256 << 20))
    assert message.endswith("bomb.zip: its images (up to data/train/cat/0.png) would take 536,870,912 bytes, "
                            "more than the 268,435,456 allowed; set NBKIT_MAX_DATASET_BYTES higher to load it")
    assert peak < baseline + 100, (peak, baseline)  # the member was never read


def test_images_of_too_many_pixels_are_refused_from_their_header(tmp_path, baseline):
    from PIL import Image

    folder = write_image_folder(tmp_path / "imgs")
    for i in range(4):  # small on disk, 64 M pixels (192 MB decoded) each
        Image.new("1", (8000, 8000)).save(folder / "test" / "cat" / f"000{i}.png")
    message, peak = load_in_child(tar_folder(folder, tmp_path / "big.tar.gz"), tmp_path / "data2")
    assert message.endswith("image imgs/test/cat/0000.png is 8000x8000, more than the 16,777,216 pixels allowed "
                            "per image; set NBKIT_MAX_IMAGE_PIXELS higher to load it")
    assert peak < baseline + 100, (peak, baseline)
    assert not list((tmp_path / "data2").rglob("*.npz"))


def test_the_default_limits_are_eight_gib_and_sixteen_million_pixels(monkeypatch):
    monkeypatch.delenv("NBKIT_MAX_DATASET_BYTES", raising=False)
    monkeypatch.delenv("NBKIT_MAX_IMAGE_PIXELS", raising=False)
    assert (image_folder.max_dataset_bytes(), image_folder.max_image_pixels()) == (8 << 30, 1 << 24)
    monkeypatch.setenv("NBKIT_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(DatasetError, match="NBKIT_MAX_IMAGE_PIXELS expects a whole number, got 'lots'"):
        image_folder.max_image_pixels()


def _flat_folder(root, size=32, per_class=(6, 3), suffix=".png"):
    """One flat colour per image: a few hundred bytes on disk, size*size*3 decoded."""
    from PIL import Image

    for split, n in zip(("train", "test"), per_class):
        for k, c in enumerate(("cat", "dog", "emu")):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("RGB", (size, size), (40 * k, 10 * i, 100)).save(root / split / c / f"{i:04d}{suffix}")
    return root


def test_the_decoded_size_is_bounded_before_decoding(tmp_path, monkeypatch):
    folder = _flat_folder(tmp_path / "imgs")  # 27 images of 32x32x3
    decoded = 27 * 32 * 32 * 3
    monkeypatch.setenv("NBKIT_MAX_DATASET_BYTES", str(decoded - 1))
    with pytest.raises(DatasetError, match=r"32x32 images decoded would take 82,944 bytes, more than the 82,943"):
        load_dataset(str(folder), tmp_path / "data")
    monkeypatch.setenv("NBKIT_MAX_DATASET_BYTES", str(decoded))
    assert load_dataset(str(folder), tmp_path / "data").size("train") == 18


def test_sixteen_bit_greyscale_is_scaled_not_white(tmp_path):
    import numpy as np
    from PIL import Image

    folder = write_image_folder(tmp_path / "imgs")
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(folder / "test" / "cat" / "0000.png")
    ds = load_dataset(str(folder), tmp_path / "data")
    assert Image.open(folder / "test" / "cat" / "0000.png").mode.startswith("I")
    assert int(ds.images["test"][0].max()) == 40000 >> 8 == int(ds.images["test"][0].min())


def test_macos_metadata_in_an_archive_is_skipped(tmp_path):
    import shutil

    folder = write_image_folder(tmp_path / "imgs")
    (folder / "__MACOSX" / "train" / "cat").mkdir(parents=True)
    (folder / "__MACOSX" / "train" / "cat" / "._0000.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (folder / "train" / "cat" / "._0001.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    ds = load_dataset(str(shutil.make_archive(str(tmp_path / "mac"), "zip", folder)), tmp_path / "data")
    assert ds.size("train") == 18 and ds.size("test") == 9


def test_a_folder_whose_pixels_change_is_decoded_again(tmp_path):
    import os

    from PIL import Image

    folder = _flat_folder(tmp_path / "imgs", size=8, suffix=".bmp")  # uncompressed: the size never changes
    first = load_dataset(str(folder), tmp_path / "data")
    path = folder / "test" / "cat" / "0000.bmp"
    stat = path.stat()
    Image.new("RGB", (8, 8), (255, 255, 255)).save(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    again = load_dataset(str(folder), tmp_path / "data")
    assert not torch.equal(first.images["test"], again.images["test"])
