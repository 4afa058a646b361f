"""Small fixtures: image folders, CIFAR files in the official layout, hand-written run logs."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from nbkit.rundir.runlog import LOCK, RunWriter, new_run_dir

_HELD: list[int] = []  # locks of the planted "running" runs: held while the tests' process lives, as a trainer's


def write_image_folder(root: Path, classes=("cat", "dog", "emu"), per_class=(6, 3), size=8, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    for split, n in zip(("train", "test"), per_class):
        for k, c in enumerate(classes):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                a = np.full((size, size, 3), (40 * k) % 220, np.uint8) + rng.integers(0, 30, (size, size, 3), dtype=np.uint8)
                Image.fromarray(a).save(root / split / c / f"{i:04d}.png")
    return root


def tar_folder(folder: Path, archive: Path, arcname: str = "imgs") -> Path:
    with tarfile.open(archive, "w:gz") as t:
        t.add(folder, arcname=arcname)
    return archive


def add_tar_member(archive: Path, name: str, data: bytes = b"x", kind=tarfile.REGTYPE, linkname="") -> None:
    with tarfile.open(archive, "w") as t:
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.size = kind, linkname, len(data) if kind == tarfile.REGTYPE else 0
        t.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def write_cifar100(data_dir: Path, n_train=300, n_test=50, classes=100, seed=0) -> Path:
    """Pickled dicts as the official cifar-100-python/{train,test,meta}."""
    rng = np.random.default_rng(seed)
    root = data_dir / "cifar-100-python"
    root.mkdir(parents=True)
    for name, n in (("train", n_train), ("test", n_test)):
        d = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             "fine_labels": rng.integers(0, classes, n).tolist(),
             "coarse_labels": rng.integers(0, 20, n).tolist()}
        (root / name).write_bytes(pickle.dumps(d))
    (root / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"fine{i}" for i in range(classes)],
                                              "coarse_label_names": [f"c{i}" for i in range(20)]}))
    return root


def write_run(runs_dir: Path, variant: str, seed: int, evals: dict[str, list[tuple[int, float]]],
              train: list[tuple[int, float]] = (), state="done", dataset="synthetic", **config) -> Path:
    """A run directory with chosen metrics, written through the same writer the trainer uses."""
    run = new_run_dir(runs_dir, dataset, variant, f"fixture-s{seed}")
    w = RunWriter(run)
    w.config({"variant": variant, "seed": seed, "dataset": {"name": dataset}, "run_id": run.name,
              "settings": {"max_iter": max((s for rows in evals.values() for s, _ in rows), default=0)
                                           or max((s for s, _ in train), default=1)},
              "parameters": 1000, "steps_per_epoch": 10, **config})
    rows = [{"step": s, "split": "train", "time": s / 10, "loss": l, "acc_top1": 0.5, "lr": 1e-3} for s, l in train]
    for split, points in evals.items():
        rows += [{"step": s, "split": split, "time": s / 10, "acc_top1": a, "loss": 1.0} for s, a in points]
    w.metrics(sorted(rows, key=lambda r: r["step"]))
    last = max((r["step"] for r in rows), default=0)
    w.status(state, last, images_per_second=100.0, **({"reason": "boom"} if state == "failed" else {}))
    w.close()
    if state == "running":
        hold_lock(run)
    return run


def hold_lock(run: Path) -> None:
    """A planted run still training: its process holds the run's lock (held while the tests' process lives)."""
    fd = os.open(run / LOCK, os.O_CREAT | os.O_RDWR, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _HELD.append(fd)


def workbench_runs(root: Path, dataset: str = "synthetic") -> Path:
    """Runs the notebooks are tested on: several variants with two seeds, a run with learned
    temperatures, a failed run and one still running. Curves are simple functions of the step."""
    def curves(variant, seed, steps, state, tau=False, base=0.3):
        evals = {"train_200": [(s, min(1.0, base + s / 400 + seed * 0.01)) for s in steps],
                 "test": [(s, base + s / 1000 + seed * 0.01) for s in steps]}
        run = write_run(root, variant, seed, evals, state=state, dataset=dataset,
                        train=[(s, 2.0 - s / 300 - seed * 0.05) for s in range(10, steps[-1] + 1, 10)])
        if tau:
            with open(run / "metrics.jsonl", "a") as f:
                for s in range(10, steps[-1] + 1, 10):
                    f.write(json.dumps({"step": s, "split": "train", "time": s, "tau_mean": 1 - s / 1000,
                                        "tau_std": 0.01 * seed + 0.02, "grad_norm": 5 / (1 + s / 100),
                                        **{f"tau/{i}": 1 - s / 1000 + 0.01 * (i - 1) for i in range(3)}}) + "\n")
        return run

    full = [50, 100, 150, 200]
    for seed in (0, 1):
        curves("resnet18", seed, full, "done", base=0.30)
        curves("toy-dilated", seed, full, "done", base=0.10)
        curves("vitn-12x256-8x8-lt", seed, full, "done", tau=True, base=0.25)
    curves("vitn-12x256-8x8", 0, [50], "failed", base=0.2)
    curves("vitn-12x256-8x8-ra", 0, [50, 100], "running", base=0.28)
    return root


def trial_run(root, variant, trial, val, test, state="done", reason=None, study="s"):
    """A trial's run folder: val and test top-1 per step as given ({step: value})."""
    d = root / "ds" / variant / f"tune-{study}-t{trial:03d}"
    d.mkdir(parents=True)
    cfg = {"variant": variant, "seed": 0, "run_id": d.name, "dataset": {"name": "ds"},
           "settings": {"max_iter": 40, "seed": 0, "eval_every": 20, "warmup_max_lr": 1e-3 * (trial + 1)},
           "tune": {"study": f"{variant}-{study}", "trial": trial, "values": {"warmup_max_lr": 1e-3 * (trial + 1),
                                                                             "use_augmentation": trial % 2 == 0},
                    "space": ["warmup_max_lr log-uniform [0.0001, 0.01]", "use_augmentation in {false, true}"]}}
    (d / "config.json").write_text(json.dumps(cfg))
    rows = [{"step": s, "split": "val", "acc_top1": v, "time": s / 10} for s, v in val.items()]
    rows += [{"step": s, "split": "test", "acc_top1": v, "time": s / 10} for s, v in test.items()]
    rows.append({"step": 1, "split": "train", "loss": 2.0, "acc_top1": 0.1, "time": 0.1})
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sorted(rows, key=lambda r: r["step"])))
    (d / "status.json").write_text(json.dumps({"state": state, "step": max(val) if val else 0,
                                               **({"reason": reason} if reason else {})}))
    if state == "running":
        hold_lock(d)
    return d
