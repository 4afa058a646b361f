"""Reliability IV: what another writer of a shared runs directory, or a runs folder someone
sent, can make nbkit do: never write through a link, never read without bound or block."""

import os
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
