"""Reliability IV: what another writer of a shared runs directory, or a runs folder someone
sent, can make nbkit do: never write through a link, never read without bound or block."""

import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from nbkit.rundir import files


@pytest.fixture
def swapped(tmp_path, monkeypatch):
    """Every temporary file nbkit makes is swapped, at once, for a link to a victim file (another
    writer winning the race between creating the name and writing it)."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    made = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        fd, name = made(*args, **kwargs)
        os.unlink(name)
        os.symlink(victim, name)
        return fd, name

    monkeypatch.setattr(files.tempfile, "mkstemp", mkstemp)
    return victim


def test_a_checkpoint_is_written_through_its_descriptor_never_through_a_swapped_link(tmp_path, swapped):
    import torch

    from nbkit.rundir.checkpoint import save_checkpoint

    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(OSError, match="replaced while it was written"):
        save_checkpoint(run, {"model": torch.zeros(3)})
    assert swapped.read_bytes() == b"precious" and not (run / "checkpoint.pt").exists()
    assert not [p for p in run.iterdir()]  # no temporary left behind


def test_arrays_and_figures_are_written_through_their_descriptor(tmp_path, swapped):
    from nbkit.view.charts import Spec

    with pytest.raises(OSError, match="replaced while it was written"), files.replacing(tmp_path / "cache.npz") as f:
        np.savez(f, x=np.arange(3))
    chart = Spec({"$schema": "https://vega.github.io/schema/vega-lite/v6.json", "data": {"values": [{"a": 1}]},
                   "mark": "point", "encoding": {"x": {"field": "a", "type": "quantitative"}}})
    for name in ("figure.png", "figure.svg"):
        with pytest.raises(OSError, match="replaced while it was written"):
            chart.save(tmp_path / name)
    assert swapped.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim"]


def _sparse(path, size: int, head: bytes = b"", tail: bytes = b""):
    """A file of `size` bytes that takes no disk: head, zeros, tail."""
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size - len(tail))
        f.seek(size - len(tail))
        f.write(tail)
    return path


def _peak(fn) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_resume_cuts_a_huge_metrics_file_without_reading_it_whole(tmp_path):
    from nbkit.rundir.runlog import truncate_metrics

    rows = b'{"step": 1, "split": "train"}\n{"step": 9, "split": "train"}\n'
    path = _sparse(tmp_path / "metrics.jsonl", 200 << 20, head=rows, tail=b'\n{"step": 2, "split": "test"}\n')
    assert _peak(lambda: truncate_metrics(path, 5)) < 16 << 20  # 200 MiB read whole took twice that
    assert path.read_bytes() == b'{"step": 1, "split": "train"}\n{"step": 2, "split": "test"}\n'


def test_a_failed_childs_huge_log_is_tailed_for_its_last_line(tmp_path):
    from nbkit.sweeps.background import last_error
    from nbkit.sweeps.sweep import last_line

    log = _sparse(tmp_path / "train.log", 300 << 20, tail=b"\nnbkit train: error: boom\n")
    said = []
    assert _peak(lambda: said.extend([last_line(log), last_error(log)])) < 16 << 20
    assert said == ["nbkit train: error: boom"] * 2


def test_special_files_at_train_log_fail_their_run_alone(tmp_path):
    from nbkit.rundir.runlog import read_status
    from nbkit.sweeps.sweep import plan

    overrides = {"dataset": "synthetic", "max_iter": 2, "batch_size": 16, "eval_every": 2}
    fifo, link, folder, good = plan(["toy-dilated"], 4, overrides, tmp_path)
    for job in (fifo, link, folder):
        job.run_dir.mkdir(parents=True)
    os.mkfifo(fifo.run_dir / "train.log")
    (link.run_dir / "train.log").symlink_to(tmp_path / "elsewhere.log")
    (folder.run_dir / "train.log").mkdir()
    done = subprocess.run([sys.executable, "-m", "nbkit", "sweep", "toy-dilated", "--seeds", "4", "--dataset",
                           "synthetic", "--max-iter", "2", "--batch-size", "16", "--eval-every", "2", "--device",
                           "cpu", "--runs-dir", str(tmp_path)], capture_output=True, text=True, timeout=240)
    assert done.returncode == 1 and "sweep: 1 done, 0 skipped, 3 failed" in done.stderr, done.stderr
    assert read_status(good.run_dir)["state"] == "done"
    for job in (fifo, link, folder):
        status = read_status(job.run_dir)
        assert status["state"] == "failed" and status["reason"].startswith("cannot start: train.log: ")
    assert not (tmp_path / "elsewhere.log").exists()


def test_a_tmp_debris_folder_leaves_a_run_resumable(tmp_path):
    from nbkit.rundir.runlog import RunWriter, open_run

    run = tmp_path / "run"
    run.mkdir()
    RunWriter(run).config({"variant": "toy-dilated", "seed": 0})
    (run / ".metrics.jsonl.x.tmp").mkdir()
    (run / ".status.json.y.tmp").write_text("half")
    with open_run(run, tmp_path, "synthetic", "toy-dilated", 0, resume=True) as opened:
        assert opened == run
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".") and "tmp" in p.name) == [".metrics.jsonl.x.tmp"]


def test_an_image_folders_cache_key_reads_files_in_chunks(tmp_path):
    from nbkit.training.image_folder import _content_key
    from tests.helpers import write_image_folder

    folder = write_image_folder(tmp_path / "imgs")
    before = _content_key(folder)
    _sparse(folder / "train" / "cat" / "big.png", 512 << 20, head=b"\x89PNG\r\n\x1a\n")
    keys = []
    assert _peak(lambda: keys.append(_content_key(folder))) < 16 << 20  # read whole, it took 512 MiB
    assert keys[0] != before  # still by content


def test_the_ray_copy_of_a_run_takes_its_regular_files_only(tmp_path):
    from nbkit.sweeps.ray_backend import _local_files

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (tmp_path / "secret").write_text("not the run's")
    (run / "metrics.jsonl").symlink_to(tmp_path / "secret")
    os.mkfifo(run / "train.log")
    (run / "status.json").symlink_to("/dev/zero")
    assert _local_files(run) == {"config.json": b"{}"}


def test_stop_on_a_copied_runs_folder_never_stops_the_originals_sweep(tmp_path):
    import shutil
    import time

    from nbkit.sweeps import background

    original, copy = tmp_path / "original", tmp_path / "copy"
    info = background.launch_sweep(original, ["toy-dilated"], "synthetic", max_iter=100000, seeds=1, device="cpu")
    try:
        shutil.copytree(original / ".sweeps", copy / ".sweeps")  # the entry travels with a copy of the folder
        background._CHILDREN.clear()  # as after a notebook restart: the sweep is known only from /proc
        assert background.active_sweeps(copy) == [] and background.stop_sweeps(copy) == 0
        assert [s["pid"] for s in background.active_sweeps(original)] == [info["pid"]]
    finally:
        os.kill(info["pid"], 15)
        deadline = time.time() + 120
        while background.active_sweeps(original) and time.time() < deadline:
            time.sleep(0.2)


def test_every_run_of_a_pack_that_failed_before_its_status_records_the_packs_error(tmp_path, monkeypatch):
    import io

    from nbkit.rundir.runlog import read_status
    from nbkit.sweeps import sweep

    jobs = sweep.plan(["toy-dilated"], 2, {"dataset": "synthetic", "max_iter": 2}, tmp_path)
    monkeypatch.setattr(sweep, "pack_command", lambda unit, device, label: [
        sys.executable, "-c", "import sys; sys.exit('nbkit train: error: boom')"])
    outcome = sweep.run_sweep(jobs, device="cpu", pack=2, stream=io.StringIO(), poll=0.05)
    assert len(outcome["failed"]) == 2
    assert [read_status(j.run_dir)["reason"] for j in jobs] == ["nbkit train: error: boom"] * 2
