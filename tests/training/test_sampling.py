"""Sampling as a setting (epoch, fixed, replacement) and the training-set size: each order is what
it says, seeded and exact on resume; a smaller training set lies inside a larger one; bad values
are one-line errors."""

import json

import numpy as np
import pytest
import torch

from nbkit import resolve
from nbkit.cli import main
from nbkit.design.settings import Settings
from nbkit.errors import DatasetError, SettingsError
from nbkit.rundir.runlog import read_metrics
from nbkit.training.data import Dataset, load_dataset
from nbkit.training.distributed import SINGLE
from nbkit.training.loader import TrainBatches
from nbkit.training.trainer import train
from tests.helpers import write_image_folder

N, B = 40, 8  # 5 steps per epoch


def indexed(n=N) -> Dataset:
    """Tiny images whose label is their index in the training split: a batch's labels are its examples."""
    images = torch.zeros(n, 3, 2, 2, dtype=torch.uint8)
    return Dataset("indexed", ["x"], "test", {"train": images}, {"train": torch.arange(n)})


def loader(sampling, seed=0, n=N, count_seen=False, switch_epoch=0) -> TrainBatches:
    generator = torch.Generator().manual_seed(seed)
    switch_epoch = switch_epoch or (2 if sampling == "disjoint" else 0)
    return TrainBatches(indexed(n), B, SINGLE, torch.device("cpu"), generator, augmented=False,
                        sampling=sampling, count_seen=count_seen, switch_epoch=switch_epoch)


def epochs(batches: TrainBatches, count: int, start: int = 0) -> list[list[int]]:
    """The examples of each of `count` epochs, in training order."""
    steps = batches.steps
    return [[i for step in range(start + e * steps, start + (e + 1) * steps) for i in batches(step)[1].tolist()]
            for e in range(count)]


def test_epoch_sampling_is_a_fresh_permutation_each_epoch_as_before():
    order = epochs(loader("epoch"), 3)
    assert all(sorted(e) == list(range(N)) for e in order)
    assert order[0] != order[1] != order[2]
    # the order runs made before sampling was a setting trained on: the generator's randperm, sliced
    assert order[0] == torch.randperm(N, generator=torch.Generator().manual_seed(0)).tolist()
    dropped = epochs(loader("epoch", n=N + 5), 2)  # drop_last: 40 distinct examples of 45 per epoch
    assert all(len(set(e)) == len(e) == N for e in dropped) and set(dropped[0]) != set(dropped[1])


def test_fixed_sampling_repeats_one_permutation_every_epoch():
    order = epochs(loader("fixed"), 3)
    assert sorted(order[0]) == list(range(N)) and order[0] == order[1] == order[2]
    assert order[0] != list(range(N))  # shuffled once, not the split's own order


def test_replacement_sampling_repeats_examples_within_an_epoch():
    order = epochs(loader("replacement"), 3)
    assert all(len(e) == N and 0 <= min(e) and max(e) < N for e in order)
    assert all(len(set(e)) < N for e in order)  # 40 draws of 40: a repeat is near certain (1 - 40!/40^40)
    assert order[0] != order[1]


def test_disjoint_sampling_trains_on_one_half_then_on_the_other_never_seen_half():
    n = 48  # halves of 24: 3 steps an epoch
    batches = loader("disjoint", n=n, switch_epoch=2, count_seen=True)
    assert batches.steps == n // 2 // B  # an epoch is half the set
    order = epochs(batches, 4)
    first, second = set(order[0]), set(order[2])
    assert all(len(e) == len(set(e)) == n // 2 for e in order)  # each epoch a permutation of one half
    assert set(order[1]) == first and set(order[3]) == second and order[0] != order[1]
    assert not first & second and first | second == set(range(n))  # disjoint halves of the whole set
    assert first != set(range(n // 2))  # a seeded split, not the split's own (class-sorted) order
    # the halves are the same for every seed (one split), the order within them is the run's
    other = epochs(loader("disjoint", seed=5, n=n, switch_epoch=2), 4)
    assert set(other[0]) == first and other[0] != order[0]
    # the seen probe: once in the second epoch, never trained on in the first epoch after the switch
    fresh = loader("disjoint", n=n, switch_epoch=2, count_seen=True)
    groups = [fresh(step) and fresh.groups.tolist() for step in range(4 * fresh.steps)]
    assert all(g == 1 for g in groups[fresh.steps]) and all(g == 0 for g in groups[2 * fresh.steps])
    assert all(g == 1 for g in groups[3 * fresh.steps])


@pytest.mark.parametrize("sampling", ["epoch", "fixed", "replacement", "disjoint"])
def test_each_order_is_seeded(sampling):
    assert epochs(loader(sampling, seed=3), 2) == epochs(loader(sampling, seed=3), 2)
    assert epochs(loader(sampling, seed=3), 2) != epochs(loader(sampling, seed=4), 2)


@pytest.mark.parametrize("sampling", ["epoch", "fixed", "replacement", "disjoint"])
@pytest.mark.parametrize("at", [3, 5, 10])  # mid-epoch, and at the end of the first and second epochs
def test_each_order_and_the_seen_counts_continue_exactly_from_the_saved_state(sampling, at):
    steps = 15  # three epochs
    whole = loader(sampling, count_seen=True)
    expected = [(whole(step)[1], whole.groups) for step in range(steps)]
    first = loader(sampling, count_seen=True)
    for step in range(at):
        first(step)
    saved = {**first.state_dict(), "generator": first.generator.get_state()}
    resumed = loader(sampling, seed=99, count_seen=True)
    resumed.generator.set_state(saved["generator"])
    resumed.load_state_dict(saved)
    for step in range(at, steps):
        y = resumed(step)[1]
        assert torch.equal(y, expected[step][0]) and torch.equal(resumed.groups, expected[step][1]), step
    assert torch.equal(resumed.seen.counts, whole.seen.counts)


# --- through the trainer: exact on resume, the setting in config.json --------------------------

SMALL = dict(tailor_num_classes=True, constant_lr=3e-3, batch_size=16, train_size=64, max_iter=12, eval_every=10,
             save_every=4, log_every=2, eval_batch_size=256)


def tiny_images(root) -> dict:
    """Settings that train on an 8x8 image folder (4 classes, 24 training and 4 test images each;
    its cache in a data dir of its own): a step costs a sixteenth of a 32x32 one."""
    folder = write_image_folder(root / "tiny", classes=("a", "b", "c", "d"), per_class=(24, 4), size=8)
    return {"dataset": str(folder), "data_dir": str(root / "data")}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_images(tmp_path_factory.mktemp("tiny"))


def strip_time(run):
    return [{k: v for k, v in r.items() if k != "time"} for r in read_metrics(run / "metrics.jsonl")]


def test_a_run_resumed_at_an_epoch_end_logs_what_the_uninterrupted_run_logs(tiny, tmp_path):
    """fixed sampling: the resumed run must not draw a new order at the epoch's end (the loader
    covers the other orders and mid-epoch states); the seen counts travel in the checkpoint."""
    sampling = "fixed"
    name, s = resolve("toy-dilated", **SMALL, **tiny, sampling=sampling, seen_probe=True)
    reference = train(name, s, run_dir=tmp_path / "reference", device="cpu")

    def fail_at_10(p):  # the last checkpoint is step 8, the end of epoch 2
        if p["step"] == 10:
            raise RuntimeError("power cut")

    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="power cut"):
        train(name, s, run_dir=run, device="cpu", progress=fail_at_10)
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 8
    train(name, s, run_dir=run, device="cpu", resume=True)
    assert strip_time(run) == strip_time(reference)
    config = json.loads((run / "config.json").read_text())
    assert config["settings"]["sampling"] == sampling and config["steps_per_epoch"] == 4
    assert config["dataset"]["sizes"]["train"] == 64


# --- the training-set size --------------------------------------------------------------------

def test_a_smaller_training_set_lies_inside_a_larger_one_and_val_stays():
    whole = load_dataset("synthetic", val_size=100)
    big = load_dataset("synthetic", val_size=100, train_size=400)
    small = load_dataset("synthetic", val_size=100, train_size=200)
    half = load_dataset("synthetic", val_size=100, train_size=400, train_fraction=0.5)
    assert (whole.size("train"), big.size("train"), small.size("train")) == (1900, 400, 200)
    assert torch.equal(half.images["train"], small.images["train"])  # the first half of the same permutation
    rows = lambda ds: {bytes(x.numpy()) for x in ds.images["train"]}
    assert rows(small) < rows(big) < rows(whole)
    assert torch.equal(big.images["val"], whole.images["val"]) and torch.equal(big.labels["val"], whole.labels["val"])
    assert {bytes(x.numpy()) for x in small.images["train_200"]} <= rows(small)  # the probe images are trained on
    assert load_dataset("synthetic").size("train") == 2000  # the default keeps every image, as before
    assert np.array_equal(load_dataset("synthetic", train_size=0).images["train"].numpy(),
                          load_dataset("synthetic").images["train"].numpy())


@pytest.mark.parametrize("changes, message", [
    ({"sampling": "epochs"}, "sampling expects one of epoch, fixed, replacement, disjoint, got 'epochs'; "
                             "did you mean 'epoch'?"),
    ({"sampling": "shuffle"}, "sampling expects one of epoch, fixed, replacement, disjoint, got 'shuffle'$"),
    ({"sampling": "disjoint"}, "sampling disjoint trains on one half of the training set, then on the other: set "
                               "switch_epoch"),
    ({"switch_epoch": 3}, "switch_epoch 3 applies to sampling disjoint only, not 'epoch'"),
    ({"sampling": "disjoint", "switch_epoch": -1}, "switch_epoch expects >= 0 epochs, got -1"),
    ({"train_size": 100}, r"train_size 100 is below one batch \(batch_size 128\); expected at least 128"),
    ({"train_fraction": 0.0}, r"train_fraction expects a share in \(0, 1\], got 0.0"),
    ({"train_fraction": 1.5}, r"train_fraction expects a share in \(0, 1\], got 1.5"),
    ({"boundary_eval": 5}, "boundary_eval 5 scores the held-out val split; set val_size too"),
])
def test_bad_epochs_settings_are_refused_in_one_line(changes, message):
    with pytest.raises(SettingsError, match=message) as e:
        Settings(**changes)
    assert "\n" not in str(e.value)


def test_a_training_set_larger_than_the_split_is_refused(tmp_path):
    with pytest.raises(DatasetError, match=r"train_size 1950 exceeds the 1900 training images \(after val_size\); "
                                           r"expected at most 1900, or 0 for all"):
        load_dataset("synthetic", val_size=100, train_size=1950)


def test_the_cli_says_what_cut_the_training_set_below_a_batch(tmp_path, capsys):
    code = main(["train", "toy-dilated", "--dataset", "synthetic", "--device", "cpu", "--runs-dir", str(tmp_path),
                 "--batch-size", "64", "--set", "train_size=100", "train_fraction=0.5"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "batch_size 64 exceeds the 50 training images (train_size 100 x train_fraction 0.5)" in err
    assert not list(tmp_path.rglob("config.json"))  # refused before a run directory was made
