"""A live page's text and tables redraw only when their numbers move: a new training row leaves
their key as it was (the chart alone takes it), a new evaluation moves it."""

import json

from nbkit.rundir.reader import read_runs
from nbkit.view import pagekey
from nbkit.view.comparison_view import build_view
from tests.helpers import write_run


def test_a_new_train_row_keeps_the_tables_key_and_an_evaluation_moves_it(tmp_path):
    run = write_run(tmp_path, "resnet18", 0, {"test": [(10, 0.3)], "train_200": [(10, 0.5)]},
                    train=[(s, 2.0 - s / 100) for s in range(1, 11)])
    view = lambda: build_view(*read_runs(tmp_path), "synthetic", ["resnet18"])
    before = pagekey.numbers_key(view(), "synthetic", "resnets")
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 11, "split": "train", "time": 1.1, "loss": 1.8}) + "\n")
    assert pagekey.numbers_key(view(), "synthetic", "resnets") == before
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 20, "split": "test", "time": 2.0, "acc_top1": 0.4, "loss": 1.0}) + "\n")
    assert pagekey.numbers_key(view(), "synthetic", "resnets") != before
    assert pagekey.numbers_key(None, "synthetic", "resnets") is None
