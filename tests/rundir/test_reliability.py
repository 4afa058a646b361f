"""Faults injected on purpose: kills, signals, cut logs, bad input, hostile files, races."""

import errno
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import warnings

import pytest
import torch

from nbkit import resolve
from nbkit.cli import main
from nbkit.rundir.reader import read_runs
from nbkit.rundir.runlog import RunWriter, read_metrics
from nbkit.training.trainer import train
from tests.conftest import REPO
from tests.helpers import add_tar_member, write_image_folder, write_run

SETS = ["batch_size=16", "tailor_num_classes=true", "eval_batch_size=256", "constant_lr=3e-3", "log_every=4"]


def base(*flags, sets=()):
    """A small synthetic toy-dilated run; later flags and settings override earlier ones."""
    return ["toy-dilated", "--dataset", "synthetic", "--device", "cpu", *map(str, flags), "--set", *SETS, *sets]


def cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "nbkit", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, **kw)


def strip_time(run_dir):
    return [{k: v for k, v in r.items() if k != "time"} for r in read_metrics(run_dir / "metrics.jsonl")]


def status(run_dir):
    return json.loads((run_dir / "status.json").read_text())


# the interrupted runs: 40 steps (batch 16), a train row every 4, evaluations at 20 and 40
STEPS, EVERY = 40, 20


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, trained in this process: the CLI's own code path and thread count."""
    run = tmp_path_factory.mktemp("ref") / "run"
    assert main(["train", *base("--max-steps", STEPS, "--eval-every", EVERY, "--run-dir", run,
                                sets=["save_every=5"])]) == 0
    return run


def logged_step(run) -> int:
    """The last step with a train row in the run's metrics (0 before the first)."""
    try:
        text = (run / "metrics.jsonl").read_text()
    except FileNotFoundError:
        return 0
    return max(map(int, re.findall(r'"step": (\d+), "split": "train"', text)), default=0)


def interrupt(run, save_every: int, sig, timeout=300) -> subprocess.Popen:
    """Start a run in a child process and send it sig at a random step: once it has logged a train
    row at a random step between 8 and 28 (of 40), and a random moment more; the process."""
    p = cli("train", *base("--max-steps", STEPS, "--eval-every", EVERY, "--run-dir", run,
                           sets=[f"save_every={save_every}"]))
    target, deadline = random.choice(range(8, STEPS - 8, 4)), time.time() + timeout
    while logged_step(run) < target:
        assert p.poll() is None, p.stderr.read()
        assert time.time() < deadline, f"{run} never reached step {target}"
        time.sleep(0.01)
    time.sleep(random.uniform(0.0, 0.2))
    p.send_signal(sig)
    return p


def resume_in_process(run, capsys) -> None:
    """Resume with the CLI in this process (no second interpreter and torch import to pay for)."""
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--device", "cpu"]) == 0, capsys.readouterr().err


def test_sigkill_at_a_random_step_then_resume_gives_the_uninterrupted_metrics(reference, tmp_path, capsys):
    run = tmp_path / "run"
    p = interrupt(run, 5, signal.SIGKILL)
    p.wait()
    killed_at = torch.load(run / "checkpoint.pt", weights_only=True)["step"]
    assert killed_at < STEPS and status(run)["state"] == "running", "the run finished before the kill"
    resume_in_process(run, capsys)
    assert status(run)["state"] == "done"
    steps = [(row["step"], row["split"]) for row in read_metrics(run / "metrics.jsonl")]
    assert len(steps) == len(set(steps)), f"duplicated rows after a kill at step {killed_at}"
    assert strip_time(run) == strip_time(reference), f"killed after checkpoint {killed_at}"


def test_sigterm_checkpoints_marks_stopped_and_resumes_exactly(reference, tmp_path, capsys):
    run = tmp_path / "run"
    # save_every far away: the only mid-run checkpoint is the one SIGTERM writes
    p = interrupt(run, 1000, signal.SIGTERM)
    for _ in range(15):  # and again while it stops and exits, as an impatient user or a dying sweep sends them
        time.sleep(0.01)
        p.send_signal(signal.SIGTERM)
    err = p.stderr.read()
    code = p.wait(timeout=120)
    st = status(run)
    if st["state"] == "done":
        pytest.skip("the run finished before SIGTERM arrived")
    assert st["state"] == "stopped" and "SIGTERM" in st["reason"]
    assert code == 130 and "Traceback" not in err, (code, err)  # the stop's exit, not killed on the way out
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == st["step"]
    resume_in_process(run, capsys)
    assert strip_time(run) == strip_time(reference)


def test_non_finite_loss_fails_the_run_with_step_and_reason(tmp_path):
    name, s = resolve("toy-dilated", dataset="synthetic", batch_size=16, max_iter=40, eval_every=20, log_every=2,
                      tailor_num_classes=True, constant_lr=1e30, eval_batch_size=256)
    with pytest.raises(Exception, match="non-finite loss"):
        train(name, s, runs_dir=tmp_path, device="cpu")
    (run,) = tmp_path.glob("synthetic/toy-dilated/*")
    st = status(run)
    assert st["state"] == "failed" and "non-finite loss" in st["reason"] and 0 < st["step"] < 40


def test_reader_never_fails_while_a_run_is_being_written(tmp_path):
    run = write_run(tmp_path, "resnet18", 0, {"test": [(10, 0.1)]}, state="running")
    stop = threading.Event()

    def writer():
        with open(run / "metrics.jsonl", "a") as f:
            step = 20
            while not stop.is_set() and step < 20_000:
                line = json.dumps({"step": step, "split": "test", "time": 1.0, "acc_top1": 0.2, "loss": 1.0}) + "\n"
                f.write(line[:15])  # half a line visible to readers
                f.flush()
                f.write(line[15:])
                f.flush()
                step += 10
                time.sleep(0.0005)
        (run / "status.json.tmp").write_text("{")  # debris of an interrupted status write

    t = threading.Thread(target=writer)
    t.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(40):
                metrics, runs = read_runs(tmp_path)
                assert runs.height == 1 and metrics["step"].is_sorted()
    finally:
        stop.set()
        t.join()


def test_checkpoint_loading_never_runs_code(tmp_path):
    run = write_run(tmp_path, "toy-dilated", 0, {"test": [(10, 0.1)]}, state="stopped")
    config = json.loads((run / "config.json").read_text())
    _, s = resolve("toy-dilated", dataset="synthetic")
    config["settings"] = s.to_dict()
    (run / "config.json").write_text(json.dumps(config))
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"model": Evil()}, run / "checkpoint.pt")
    assert main(["train", "--resume", str(run), "--device", "cpu"]) == 2
    assert not marker.exists()


def test_hostile_names_are_escaped_in_markdown_and_html(tmp_path):
    import markdown

    from nbkit.analysis.tables import per_run, per_variant
    from nbkit.design.comparisons import COMPARISONS
    from nbkit.view.summary import findings, summary_markdown
    from nbkit.view.workbench import guidance

    evil = "<img src=x onerror=alert(1)>"
    write_run(tmp_path, evil, 0, {"train_200": [(10, 1.0)], "test": [(10, 0.4)]}, dataset="d")
    write_run(tmp_path, "resnet18", 0, {"train_200": [(10, 0.5)], "test": [(10, 0.3)]}, dataset="d")
    metrics, runs = read_runs(tmp_path)
    texts = [*findings(per_variant(metrics, runs), per_run(metrics, runs)), summary_markdown(tmp_path),
             guidance(COMPARISONS["models"], f"/runs/{evil}`<script>alert(2)</script>")]
    for text in texts:
        rendered = markdown.markdown(text, extensions=["tables"])
        assert "<img" not in rendered and "<script" not in rendered, rendered
    assert "&lt;img" in markdown.markdown(texts[0])


def test_two_sweeps_on_one_runs_directory_never_share_a_run(tmp_path):
    args = ["sweep", "toy-dilated", "--seeds", "2", "--dataset", "synthetic", "--max-steps", "24",
            "--eval-every", "8", "--batch-size", "16", "--device", "cpu", "--runs-dir", str(tmp_path),
            "--set", "tailor_num_classes=true", "eval_batch_size=256", "log_every=4"]
    a, b = cli(*args), cli(*args)
    assert a.wait(timeout=300) == 0 and b.wait(timeout=300) == 0, (a.stderr.read(), b.stderr.read())
    _, runs = read_runs(tmp_path)
    assert runs.height == 2 and set(runs["state"]) == {"done"}
    for run in runs["path"]:
        rows = [(r["step"], r["split"]) for r in read_metrics(f"{run}/metrics.jsonl")]
        assert len(rows) == len(set(rows)) == 6 + 3 * 2  # 6 train rows, 3 evaluations x (train_200, test)
        config = json.loads(open(f"{run}/config.json").read())
        assert config["run_id"] == os.path.basename(run)


# --- bad input: each a one-line error, a non-zero exit, and no run marked done ----------------

def _folder(tmp_path, mutate=None):
    folder = write_image_folder(tmp_path / "imgs")
    if mutate:
        mutate(folder)
    return str(folder)


def _archive(tmp_path, content: bytes, name="data.tar.gz"):
    (tmp_path / name).write_bytes(content)
    return str(tmp_path / name)


def _tar_with(tmp_path, member, kind=tarfile.REGTYPE):
    add_tar_member(tmp_path / "evil.tar", member, kind=kind, linkname="/etc/passwd")
    return str(tmp_path / "evil.tar")


def _resumable(tmp_path):
    run = tmp_path / "runs" / "r"
    assert main(["train", *base("--max-steps", 2, "--eval-every", 2, "--run-dir", run)]) == 0
    return run


def _yaml(tmp_path, text):
    (tmp_path / "c.yml").write_text(text)
    return str(tmp_path / "c.yml")


def _corrupt_checkpoint(tmp_path):
    run = _resumable(tmp_path)
    (run / "checkpoint.pt").write_bytes(b"\x80\x04garbage")
    (run / "status.json").write_text('{"state": "stopped", "step": 1}')
    return ["train", "--resume", str(run), "--device", "cpu"]


def _resume_other_config(tmp_path):
    run = _resumable(tmp_path)
    (run / "status.json").write_text('{"state": "stopped", "step": 1}')
    return ["train", "--resume", str(run), "--device", "cpu", "--set", "max_iter=99"]


def _made(path):
    path.mkdir(parents=True, exist_ok=True)
    return path


def _mixed_sizes(folder):
    from PIL import Image
    Image.new("RGB", (9, 9)).save(folder / "train" / "cat" / "big.png")


# a few hundred bytes that expand to 9**9 strings ("billion laughs")
YAML_BOMB = "dataset: [&a [lol,lol,lol,lol,lol,lol,lol,lol,lol], " + ", ".join(
    f"&{b} [{', '.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi")) + "]\n"


BAD_INPUT = {
    "unknown variant": (lambda t: ["train", "resnet81"], "unknown variant 'resnet81'; did you mean 'resnet18'"),
    "unknown setting": (lambda t: ["train", *base(sets=["lr=1"])], "unknown setting 'lr'"),
    "mistyped bool": (lambda t: ["train", *base(sets=["normalizer=perhaps"])], "normalizer expects a bool"),
    "mistyped int": (lambda t: ["train", *base(sets=["max_iter=ten"])], "max_iter expects a int, got 'ten'"),
    "out of range": (lambda t: ["train", "resnet18", "--set", "mixstyle_level=7"], "mixstyle_level expects 0..4"),
    "resnet option on a vit": (lambda t: ["train", "vit-12x256-8x8", "--set", "resnet_norm_type=gn"],
                               "apply to resnet models only"),
    "set without =": (lambda t: ["train", *base(sets=["seed"])], "--set expects key=value"),
    "malformed yaml": (lambda t: ["train", _yaml(t, "model: [resnet18\n")], "is not valid YAML"),
    "yaml unknown key": (lambda t: ["train", _yaml(t, "model: resnet18\nlearning_rate: 1\n")], "unknown setting 'learning_rate'"),
    "yaml not a mapping": (lambda t: ["train", _yaml(t, "- resnet18\n")], "expects a mapping"),
    "missing yaml": (lambda t: ["train", str(t / "nope.yml")], "config file not found"),
    "dataset missing offline": (lambda t: ["train", "resnet18", "--dataset", "cifar100"], "put cifar-100-python.tar.gz"),
    "unknown dataset": (lambda t: ["train", "resnet18", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    "corrupt archive": (lambda t: ["train", "resnet18", "--dataset", _archive(t, b"\x1f\x8bnot gzip")], "not a readable archive"),
    "empty archive": (lambda t: ["train", "resnet18", "--dataset", _archive(t, b"", "e.tar.xz")], "not a readable archive"),
    "archive without images": (lambda t: ["train", "resnet18", "--dataset", _tar_with(t, "readme.txt")], "holds no images"),
    "archive member with ..": (lambda t: ["train", "resnet18", "--dataset", _tar_with(t, "../x.png")], "refusing archive member"),
    "archive member link": (lambda t: ["train", "resnet18", "--dataset", _tar_with(t, "train/a/l.png", tarfile.SYMTYPE)],
                            "(a link or device)"),
    "folder without test/": (lambda t: ["train", "resnet18", "--dataset", _folder(t, lambda f: shutil.rmtree(f / "test"))],
                             "has no test/ folder"),
    "classes differ": (lambda t: ["train", "resnet18", "--dataset", _folder(t, lambda f: (f / "test" / "emu").rename(f / "test" / "owl"))],
                       "classes differ between train/ and test/"),
    "image will not decode": (lambda t: ["train", "resnet18", "--dataset", _folder(t, lambda f: (f / "train" / "cat" / "0000.png").write_bytes(b"no"))],
                              "train/cat/0000.png will not decode"),
    "images of mixed sizes": (lambda t: ["train", "resnet18", "--dataset", _folder(t, _mixed_sizes)], "expected 8x8 like the others"),
    "runs dir not writable": (lambda t: ["train", *base("--runs-dir", (t / "file").write_text("") or t / "file")],
                              "is not writable"),
    "batch larger than the data": (lambda t: ["train", *base(sets=["batch_size=100000"])], "exceeds the"),
    "val split too large": (lambda t: ["train", *base("--val-size", 5000)], "val_size 5000 leaves none"),
    "cuda without a gpu": (lambda t: ["train", *base("--device", "cuda")], "no CUDA GPU is available"),
    "corrupt checkpoint on resume": (_corrupt_checkpoint, "is corrupt or not a checkpoint"),
    "resume with a different config": (_resume_other_config, "cannot resume"),
    "resume a folder without a run": (lambda t: ["train", "--resume", str(t), "--device", "cpu"], "no readable config.json"),
    "sweep of an unknown comparison": (lambda t: ["sweep", "modles"], "unknown comparison or variant 'modles'; did you mean 'models'"),
    "seed beyond 64 bits": (lambda t: ["train", *base("--seed", 2**70)], "seed expects a number within"),
    "negative seed": (lambda t: ["train", *base("--seed", -3)], "seed expects 0.."),
    "resume with a run dir": (lambda t: ["train", "--resume", str(_resumable(t)), "--run-dir", str(t / "other")],
                              "give either VARIANT|CONFIG.yml [--run-dir DIR] or --resume RUN_DIR, not both"),
    "summary of a dataset outside": (lambda t: ["summary", "--runs-dir", str(_made(t / "runs")), "--dataset", "../*"],
                                     "dataset name '../*' is not a plain folder name"),
    "yaml alias bomb": (lambda t: ["train", _yaml(t, YAML_BOMB)], "found an alias (*a)"),
    "yaml list for a value": (lambda t: ["train", _yaml(t, "model: resnet18\ndataset: [a, b]\n")],
                              "dataset expects one value"),
    "summary of a missing runs directory": (lambda t: ["summary", "--runs-dir", str(t / "nowhere")],
                                            "nowhere does not exist; expected a folder of runs"),
    "report of a runs directory that is a file": (lambda t: ["report", "--runs-dir", str((t / "f").write_text("") or t / "f")],
                                                  "is not a folder; expected a folder of runs"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_clear_line_and_no_run_is_marked_done(case, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NBKIT_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # default runs and data directories land in the test's folder
    make, message = BAD_INPUT[case]
    args = make(tmp_path)
    capsys.readouterr()
    code = main(args + (["--runs-dir", str(tmp_path / "runs")] if "--runs-dir" not in args and args[0] == "train"
                        and "--resume" not in args else []))
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert message in err, err
    assert len(err.splitlines()) == 1, err
    for st in tmp_path.rglob("status.json"):
        assert json.loads(st.read_text())["state"] != "done" or "r" == st.parent.name and case.startswith(("corrupt", "resume"))


def test_disk_full_while_writing_fails_the_run_cleanly(tmp_path, capsys, monkeypatch):
    calls = {"n": 0}
    real = RunWriter.metrics

    def full(self, rows):
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, rows)

    monkeypatch.setattr(RunWriter, "metrics", full)
    code = main(["train", *base("--max-steps", 40, "--eval-every", 8, "--runs-dir", tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1] == "nbkit train: error: [Errno 28] No space left on device"
    (run,) = tmp_path.glob("synthetic/toy-dilated/*")
    assert status(run)["state"] == "failed" and "No space left" in status(run)["reason"]
    assert not list(run.glob(".*tmp*"))  # no half-written files left


# --- an unreadable last checkpoint ---------------------------------------------------------------

def _small(**changes):
    return resolve("toy-dilated", **{**dict(dataset="synthetic", batch_size=16, max_iter=16, eval_every=4,
                                            save_every=4, log_every=2, tailor_num_classes=True, constant_lr=3e-3,
                                            eval_batch_size=256), **changes})


def test_an_unreadable_last_checkpoint_falls_back_to_the_one_before(tmp_path, capsys):
    # checkpoints at 4 and 8; evaluations at 12 and 16 only (the progress hook fires there too), each costing about as
    # much as the 16 training steps: the power cut at step 12 leaves checkpoints 8 and 4
    name, s = _small(eval_every=12)
    reference = train(name, s, run_dir=tmp_path / "reference", device="cpu")

    def fail_at_12(p):
        if p["step"] == 12:
            raise RuntimeError("power cut")

    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="power cut"):
        train(name, s, run_dir=run, device="cpu", progress=fail_at_12)
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 8
    assert torch.load(run / "checkpoint.prev.pt", weights_only=True)["step"] == 4
    (run / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes()[:1000])  # cut short
    capsys.readouterr()
    train(name, s, run_dir=run, device="cpu", resume=True)
    assert "checkpoint.pt is corrupt or not a checkpoint (RuntimeError); resuming from the checkpoint before it " \
           "(step 4)" in capsys.readouterr().err
    assert status(run)["state"] == "done" and strip_time(run) == strip_time(reference)
    assert not (run / "checkpoint.prev.pt").exists()  # a finished run keeps one checkpoint


def test_a_sweep_reports_a_childs_own_early_failure_and_restart_discards_it(tmp_path):
    import io

    from nbkit.sweeps.sweep import plan, run_sweep

    overrides = _small()[1].to_dict()
    (job,) = plan(["toy-dilated"], 1, {k: v for k, v in overrides.items() if k != "model"}, tmp_path)
    train(job.variant, job.settings, run_dir=job.run_dir, device="cpu")
    (job.run_dir / "checkpoint.pt").write_bytes(b"\x80\x04garbage")  # and no earlier one: the run was done
    (job.run_dir / "status.json").write_text('{"state": "stopped", "step": 8, "reason": "stopped by SIGTERM"}')
    for _ in range(2):  # the same on every rerun: the child's error, never "stopped"
        out = io.StringIO()
        outcome = run_sweep([job], device="cpu", stream=out)
        assert [j.label for j in outcome["failed"]] == [job.label] and not outcome["stopped"], out.getvalue()
        assert "checkpoint.pt is corrupt or not a checkpoint" in out.getvalue()
        assert status(job.run_dir)["state"] == "failed" and "--restart" in status(job.run_dir)["reason"]
    assert main(["train", "--resume", str(job.run_dir), "--device", "cpu", "--restart"]) == 0
    assert status(job.run_dir)["state"] == "done"
    assert [r["step"] for r in read_metrics(job.run_dir / "metrics.jsonl") if r["split"] == "test"] == [4, 8, 12, 16]


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1000 KiB tmpfs (room for two checkpoints of the run below, not three); skipped where
    this user cannot mount one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1000k", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)])


def test_a_really_full_disk_fails_the_run_cleanly_and_it_resumes_exactly(small_tmpfs, tmp_path, capsys):
    # checkpoints every 4 steps, the third does not fit; evaluations at 8 and 16 (they cost more than training)
    args = base("--max-steps", 16, "--eval-every", 8, sets=["save_every=4", "log_every=2"])
    reference = tmp_path / "reference"
    assert main(["train", *args, "--run-dir", str(reference)]) == 0
    run = small_tmpfs / "run"
    capsys.readouterr()
    assert main(["train", *args, "--run-dir", str(run)]) == 2  # the CLI, in this process: no torch import to repeat
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        "nbkit train: error: [Errno 28] No space left on device (writing checkpoint.pt)"
    st = status(run)
    assert st["state"] == "failed" and "No space left on device" in st["reason"] and st["step"] < 16
    assert sorted(f.name for f in run.iterdir()) == sorted([".lock", "checkpoint.pt", "checkpoint.prev.pt",
                                                           "config.json", "metrics.jsonl", "status.json"])
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_tmpfs)], check=True)
    assert main(["train", "--resume", str(run), "--device", "cpu"]) == 0, capsys.readouterr().err
    assert status(run)["state"] == "done" and strip_time(run) == strip_time(reference)
    assert sorted(f.name for f in run.iterdir()) == [".lock", "checkpoint.pt", "config.json", "metrics.jsonl",
                                                    "status.json"]


def test_variants_refuse_a_class_count_below_one(capsys):
    with pytest.raises(SystemExit) as e:
        main(["variants", "--num-classes", "-1"])
    assert e.value.code == 2
    assert "argument --num-classes: expected a whole number of at least 1, got '-1'" in capsys.readouterr().err


def test_a_line_break_in_a_run_folder_name_keeps_the_summary_a_table(tmp_path):
    import markdown

    from nbkit.view.summary import summary_markdown

    run = write_run(tmp_path, "resnet18", 0, {"train_200": [(10, 1.0)], "test": [(10, 0.4)]}, dataset="d")
    run.rename(run.with_name("two\nlines|and `code`"))
    text = summary_markdown(tmp_path)
    rows = [line for line in text.splitlines() if line.startswith("| d/")]
    assert len(rows) == 2 and all(r.count(" | ") == 3 for r in rows), text
    assert ">d/resnet18/two lines|and `code`</td>" in markdown.markdown(text, extensions=["tables"])


# --- a stop always leaves a checkpoint; a run ends as what happened to it ------------------------

def test_a_second_ctrl_c_while_stopping_keeps_the_stop_checkpoint(tmp_path, monkeypatch):
    import nbkit.training.trainer as trainer
    from nbkit.errors import RunStopped

    name, s = _small(save_every=1000)
    real = trainer.write_checkpoint

    def impatient(run, state):  # Ctrl-C again while the stop checkpoint is being written
        os.kill(os.getpid(), signal.SIGINT)
        real(run, state)

    def first_ctrl_c(p):  # at the first evaluation (the hook also sees each log window)
        if p["evaluated"]:
            monkeypatch.setattr(trainer, "write_checkpoint", impatient)
            os.kill(os.getpid(), signal.SIGINT)

    run = tmp_path / "run"
    with pytest.raises(BaseException) as ended:  # before: a KeyboardInterrupt cut the checkpoint
        train(name, s, run_dir=run, device="cpu", progress=first_ctrl_c)
    assert isinstance(ended.value, RunStopped), repr(ended.value)
    st = status(run)
    assert st["state"] == "stopped" and st["step"] == 4 == torch.load(run / "checkpoint.pt", weights_only=True)["step"]


def test_a_signal_or_an_error_during_start_never_leaves_a_run_running(tmp_path, monkeypatch):
    import nbkit.training.trainer as trainer
    from nbkit.errors import RunStopped

    name, s = _small(save_every=1000)
    real_status = RunWriter.status

    def interrupted(self, state, step, **fields):  # a dying sweep's SIGTERM (or Ctrl-C) as the run starts
        real_status(self, state, step, **fields)
        if state == "running" and step == 0:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(RunWriter, "status", interrupted)
    run = tmp_path / "run"
    with pytest.raises(BaseException) as ended:
        train(name, s, run_dir=run, device="cpu")
    assert isinstance(ended.value, RunStopped), repr(ended.value)
    st = status(run)
    assert st["state"] == "stopped" and st["step"] == 1 == torch.load(run / "checkpoint.pt", weights_only=True)["step"]
    assert not list(run.glob(".*tmp*"))
    monkeypatch.undo()

    def broken(*args):
        raise RuntimeError("a checkpoint of another shape")

    (run / "status.json").write_text('{"state": "running", "step": 1}')  # as a SIGKILL leaves it
    monkeypatch.setattr(trainer, "_restore", broken)
    with pytest.raises(RuntimeError):
        train(name, s, run_dir=run, device="cpu", resume=True)
    st = status(run)
    assert st["state"] == "failed" and st["reason"] == "RuntimeError: a checkpoint of another shape"


def test_a_run_whose_log_is_deleted_meanwhile_fails_saying_so(tmp_path):
    name, s = _small()
    run = tmp_path / "run"

    def delete_log(p):  # at the first evaluation; the next train row finds it gone
        (run / "metrics.jsonl").unlink(missing_ok=True)

    with pytest.raises(Exception) as ended:  # before: the run went on and ended done, with no metrics
        train(name, s, run_dir=run, device="cpu", progress=delete_log)
    assert type(ended.value).__name__ == "RunLogLost"
    st = status(run)
    assert st["state"] == "failed" and "metrics.jsonl was deleted or replaced while the run was writing it" in st["reason"]


def test_a_run_is_who_its_checkpoint_says_and_crafted_steps_are_refused(tmp_path, capsys):
    name, s = _small(eval_every=8)
    run = tmp_path / "runs" / "synthetic" / name / "r-s0"

    def power_cut(p):  # at the first evaluation, after the checkpoint at step 4
        if p["evaluated"]:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        train(name, s, run_dir=run, device="cpu", progress=power_cut)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "variant": "resnet50", "seed": 7}))  # edited by hand
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, runs = read_runs(tmp_path / "runs")
    assert runs.select("variant", "seed").rows() == [(name, 0)]
    said = [str(w.message).split("config.json: ")[-1] for w in caught]
    assert said == ["its variant 'resnet50' is not what its checkpoint was trained as ('toy-dilated'); showing the "
                    "checkpoint's", "its seed 7 is not what its checkpoint was trained as (0); showing the checkpoint's"]
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--device", "cpu"]) == 2
    assert "its config.json names variant 'resnet50' but its checkpoint was trained as 'toy-dilated'" in \
        capsys.readouterr().err
    (run / "config.json").write_text(json.dumps(config))
    saved = torch.load(run / "checkpoint.pt", weights_only=True)
    for step in (10**12, -5):
        torch.save({**saved, "step": step}, run / "checkpoint.pt")
        assert main(["train", "--resume", str(run), "--device", "cpu"]) == 2
        assert f"checkpoint.pt is corrupt or not a checkpoint (step {step}, expected 0..max_iter)" in capsys.readouterr().err
    assert status(run)["state"] == "failed"


def test_bf16_on_the_cpu_says_it_is_slow(tmp_path, capsys):
    capsys.readouterr()
    assert main(["train", *base("--max-steps", 1, "--eval-every", 1, "--precision", "bf16", "--runs-dir", tmp_path)]) == 0
    assert "nbkit: warning: precision bf16 on the CPU trains many times slower than fp32" in capsys.readouterr().err
    from nbkit.design.settings import Settings
    from nbkit.training.schedule import cpu_bf16_warning

    assert cpu_bf16_warning(Settings(precision="fp32"), torch.device("cpu")) is None
    assert cpu_bf16_warning(Settings(precision="bf16"), torch.device("cuda")) is None


# --- image folders ------------------------------------------------------------------------------

def test_a_copy_nested_inside_an_image_folder_is_refused_not_mixed_in(tmp_path):
    from nbkit.errors import DatasetError
    from nbkit.training.data import load_dataset

    folder = write_image_folder(tmp_path / "imgs")
    shutil.copytree(folder / "train", folder / "test" / "train")
    with pytest.raises(DatasetError, match=r"holds train/ or test/ folders in more than one place: \./ \(e\.g\. "
                                           r"test/cat/0000\.png\); test/ \(e\.g\. test/train/cat/0000\.png\)"):
        load_dataset(str(folder), tmp_path / "data")


def test_a_zip_bomb_is_refused_from_its_first_bytes_at_the_default_limits(tmp_path):
    """512 MiB of zeros named as a PNG, and behind a real PNG header: neither is read whole."""
    import io
    import zipfile

    from PIL import Image

    header = io.BytesIO()
    Image.new("RGB", (1, 1)).save(header, "PNG")
    for name, head in (("zeros", b""), ("header", header.getvalue())):
        with zipfile.ZipFile(tmp_path / f"{name}.zip", "w", zipfile.ZIP_DEFLATED) as z:
            with z.open("data/train/cat/0.png", "w") as f:
                f.write(head)
                for _ in range(8):
                    f.write(bytes(1 << 26))
    code = ("import re, sys\nfrom nbkit.training.data import load_dataset, DatasetError\n"
            "for archive in sys.argv[1:]:\n    try:\n        load_dataset(archive, 'data'); print('loaded')\n"
            "    except DatasetError as e:\n        print(e)\n"  # this process's own peak (ru_maxrss keeps the forking parent's)
            "print(int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1]) >> 10)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBKIT_MAX")}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "zeros.zip"), str(tmp_path / "header.zip")],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    zeros, crafted, peak = done.stdout.strip().splitlines()
    assert "zeros.zip: image data/train/cat/0.png will not decode" in zeros, done.stderr
    assert crafted.endswith(f"header.zip: image data/train/cat/0.png is {len(header.getvalue()) + (8 << 26):,} bytes, "
                            "more than a 1x1 image can take (262,152); refusing to read it")
    assert int(peak) < 300, peak  # MiB: far less than the 512 MiB member


def test_a_stopped_command_never_restores_a_killing_signal_default_but_a_notebook_keeps_its_handlers(monkeypatch):
    """Between the trainer's stop and the process's exit, a SIGTERM must not find the default (kill)
    handler in the nbkit command; in a notebook (no ignore_signals_after_a_stop) the old handlers return."""
    from nbkit import errors

    mine = lambda *a: None  # noqa: E731
    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    signal.signal(signal.SIGTERM, mine)
    try:
        monkeypatch.setattr(errors, "_AFTER_A_STOP", [])
        with errors.stop_signals() as requested:
            requested.append("SIGTERM")  # a stop was asked for
        assert signal.getsignal(signal.SIGTERM) is mine  # a notebook: its own handler back
        errors.ignore_signals_after_a_stop()
        with errors.stop_signals():
            pass  # no stop: handlers restored
        assert signal.getsignal(signal.SIGTERM) is mine
        with errors.stop_signals() as requested:
            requested.append("SIGTERM")
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN  # the command: ignored while it exits
    finally:
        for s, h in old.items():
            signal.signal(s, h)
