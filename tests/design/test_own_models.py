"""Models from outside nbkit, trained: a timm architecture by name, a model from the user's own
module through a sweep's child processes (launched as the notebook launches), packed where vmap
can and refused where it cannot, shipped to Ray workers; a comparisons file driving sweep,
summary and report."""

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from nbkit.cli import main
from nbkit.design.settings import Settings
from nbkit.errors import RunStopped
from nbkit.rundir.runlog import read_metrics
from nbkit.training.trainer import train

SMALL = {"dataset": "synthetic", "batch_size": 16, "eval_batch_size": 256, "log_every": 2, "constant_lr": 1e-3}

MODULE = '''
from torch import nn

class Tiny(nn.Module):
    def __init__(self, num_classes, width=4):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.norm = nn.BatchNorm2d(width)
        self.head = nn.Linear(width, num_classes)
    def forward(self, x):
        return self.head(self.norm(self.conv(x)).mean((2, 3)))

class Branchy(Tiny):
    def forward(self, x):
        h = self.conv(x).mean((2, 3))
        return self.head(h if h.sum() > 0 else -h)  # data-dependent: vmap cannot batch it

class Flat(Tiny):
    def forward(self, x):
        return super().forward(x).flatten()
'''

STUDY = '''
[variants.tiny]
model = "own_models_train:Tiny"
description = "one convolution, BatchNorm, pooled, linear head"
model_kwargs = { width = 6 }

[variants.tiny-clr]
base = "tiny"
constant_lr = 1e-2

[variants.branchy]
model = "own_models_train:Branchy"

[comparisons.mine]
question = "Does a higher constant rate help tiny?"
variants = ["tiny", "tiny-clr"]
expected = "not in four steps"
'''


@pytest.fixture
def study(tmp_path, monkeypatch):
    """A user's project: own_models_train.py and study.toml in the working directory."""
    (tmp_path / "own_models_train.py").write_text(MODULE)
    (tmp_path / "study.toml").write_text(STUDY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path / "study.toml"
    sys.modules.pop("own_models_train", None)


def strip_time(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time"} for r in read_metrics(run_dir / "metrics.jsonl")]


def status(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


def test_a_timm_model_trains_on_synthetic_and_resumes_exactly(tmp_path):
    pytest.importorskip("timm")
    kwargs = {"img_size": 32, "patch_size": 16, "depth": 2}  # a tiny ViT: 4 patches, 2 blocks
    s = Settings(model="timm/test_vit", model_kwargs=kwargs, max_iter=4, eval_every=2, save_every=2, **SMALL)
    reference = train("timm-test-vit", s, run_dir=tmp_path / "reference", device="cpu")

    def stop_at_first_evaluation(_progress):
        os.kill(os.getpid(), signal.SIGTERM)  # as Ctrl-C or a sweep's stop: checkpoint, then stop

    run = tmp_path / "run"
    with pytest.raises(RunStopped):
        train("timm-test-vit", s, run_dir=run, device="cpu", progress=stop_at_first_evaluation)
    assert status(run)["state"] == "stopped" and status(run)["step"] == 2
    train("timm-test-vit", s, run_dir=run, device="cpu", resume=True)
    assert status(run)["state"] == "done" and strip_time(run) == strip_time(reference)
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl") if r["split"] == "test"] == [2, 4]
    config = json.loads((run / "config.json").read_text())
    assert config["settings"]["model_kwargs"] == kwargs
    timm_model = __import__("timm").create_model("test_vit", num_classes=10, **kwargs)
    assert config["parameters"] == sum(p.numel() for p in timm_model.parameters())


def test_without_timm_the_error_says_how_to_install_it(monkeypatch):
    from nbkit.design.models import create_model

    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(ValueError, match=r"timm/ models need timm, which is not installed; install it with "
                                         r"pip install '.\[timm\]'"):
        create_model(Settings(model="timm/resnet18"), 10)


def test_a_run_whose_model_output_is_not_batch_by_classes_fails_saying_so(study, capsys):
    """A model named by --set (no file to check it before the run): its first call says so, and
    the run is marked failed. A comparisons file's model is refused before any run folder exists."""
    run = study.parent / "run"
    args = ["train", "toy-dilated", "--set", "model=own_models_train:Flat", "--dataset", "synthetic",
            "--batch-size", "16", "--max-iter", "4", "--device", "cpu", "--run-dir", str(run)]
    assert main(args) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "nbkit train: error: model 'own_models_train:Flat' returned shape (160,); expected logits of shape "
        "(batch, classes) = (16, 10)")
    assert status(run)["state"] == "failed"
    with open(study, "a") as f:
        f.write('[variants.flat]\nmodel = "own_models_train:Flat"\n')
    args = ["train", "flat", "--comparisons", str(study), *args[4:-1], str(study.parent / "run2")]
    assert main(args) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"nbkit train: error: {study}: variants.flat.model:")
    assert not (study.parent / "run2").exists()


def test_a_comparisons_file_drives_a_launched_sweep_summary_and_report(study, capsys):
    """The notebook's launch path: `nbkit sweep --comparisons` in the background, whose children
    train the user's model from its module; then summary and report from the same file."""
    from nbkit.sweeps import background

    runs = study.parent / "runs"
    info = background.launch_sweep(runs, ["tiny-clr"], "synthetic", max_iter=4, seeds=1, device="cpu",
                                   eval_every=2, comparisons="study.toml")
    assert info["args"][-1] == f"--comparisons={study}"  # bound to its option
    deadline = time.time() + 300
    while background.active_sweeps(runs) and time.time() < deadline:
        time.sleep(0.2)
    state = background.sweep_state(info)
    assert state["state"] == "done", Path(info["log"]).read_text()
    assert [(r["variant"], r["state"], r["step"]) for r in state["runs"]] == [("tiny-clr", "done", "4 of 4")]
    (tiny_clr,) = runs.glob("synthetic/tiny-clr/*")
    config = json.loads((tiny_clr / "config.json").read_text())
    assert config["definition"]["options"] == {"model": "own_models_train:Tiny", "model_kwargs": {"width": 6},
                                               "constant_lr": 1e-2}
    assert config["definition"]["base"] == "tiny" and config["definition"]["source"] == str(study)
    assert config["parameters"] == 3 * 6 * 9 + 6 + 2 * 6 + 6 * 10 + 10 and config["settings"]["constant_lr"] == 1e-2

    capsys.readouterr()
    assert main(["summary", "--runs-dir", str(runs), "--comparisons", str(study), "--comparison", "mine",
                 "--by-variant"]) == 0
    table = capsys.readouterr().out
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:]] == ["tiny-clr"]
    assert main(["report", "--runs-dir", str(runs), "--comparisons", str(study), "--out", str(study.parent / "report")]) == 0
    written = capsys.readouterr().out.split()
    assert [Path(p).name for p in written if p.endswith(".html")] == ["mine.html"]
    page = (study.parent / "report" / "mine.html").read_text()
    assert "Does a higher constant rate help tiny?" in page and "not in four steps" in page
    assert "tiny-clr" in page and "Replication scorecard" not in page  # the original's claims are not this one's


def test_a_sweep_packs_a_vmappable_model_and_refuses_one_vmap_cannot_train(study, capsys):
    from nbkit.design.comparisons_file import load_study
    from nbkit.training.pack import train_pack

    flags = ["--comparisons", str(study), "--dataset", "synthetic", "--max-iter", "2", "--device", "cpu",
             "--runs-dir", str(study.parent / "runs"), "--seeds", "2", "--pack", "2"]
    assert main(["sweep", "branchy", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nbkit sweep: error: branchy cannot train packed: vmap fails on its model "
                          "own_models_train:Branchy (") and err.endswith("sweep it with --pack 1") and "\n" not in err
    assert not (study.parent / "runs").exists()

    variant = load_study(study).variants["tiny"]
    settings = [variant.settings.replace(seed=k, max_iter=2, eval_every=2, **SMALL) for k in (0, 1)]
    dirs = [study.parent / "packed" / f"s{k}" for k in (0, 1)]
    train_pack("tiny", settings, dirs, device="cpu", definition=variant.definition())
    for d in dirs:
        config = json.loads((d / "config.json").read_text())
        assert status(d)["state"] == "done" and config["pack_size"] == 2 and config["definition"]["name"] == "tiny"


def test_a_ray_worker_gets_the_users_module_and_the_variant_whole(study, monkeypatch):
    """Without Ray: what the driver ships (py_modules) and how an actor starts its child."""
    import subprocess

    from nbkit.design.comparisons_file import load_study
    from nbkit.sweeps import ray_backend
    from nbkit.sweeps.sweep import plan

    jobs = plan(["mine"], 1, SMALL, study.parent / "runs", load_study(study))
    assert ray_backend.user_modules(jobs) == ["own_models_train"]
    shipped = ray_backend.shipped_modules(jobs)
    assert shipped[1:] == [str(study.parent / "own_models_train.py")] and shipped[0].endswith("nbkit")

    started = {}
    monkeypatch.setattr(subprocess, "Popen", lambda cmd, **kw: started.update(cmd=cmd, env=kw["env"]))
    tiny = next(j for j in jobs if j.variant == "tiny")
    spec = ray_backend.run_spec(tiny, study.parent / "runs", "cpu", 1, None)
    marker = study.parent / "marker"
    marker.write_text("")
    ray_backend.RunActor(spec, str(marker), "auto").start({})
    assert str(study.parent) in started["env"]["PYTHONPATH"].split(os.pathsep)
    definition = started["cmd"][started["cmd"].index("--variant-json") + 1]
    assert json.loads(definition) == tiny.definition
