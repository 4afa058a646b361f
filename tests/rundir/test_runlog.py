"""The run directory's contract: where the runs directory is, wherever a command starts."""

import json

from nbkit.cli import main
from nbkit.rundir.runlog import RUNS_DIR_ENV, runs_dir
from nbkit.view import workbench


def test_runs_directory_is_the_projects_wherever_a_command_starts(tmp_path, monkeypatch, capsys):
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    monkeypatch.delenv(RUNS_DIR_ENV, raising=False)
    monkeypatch.chdir(project / "notebooks")
    expected = project / "artifacts" / "runs"
    assert runs_dir() == expected
    assert workbench.default_runs_dir({}) == str(expected)  # what the notebooks open
    code = main(["train", "toy-dilated", "--dataset", "synthetic", "--max-iter", "2", "--eval-every", "2",
                 "--batch-size", "16", "--device", "cpu", "--set", "tailor_num_classes=true", "eval_batch_size=256"])
    assert code == 0
    (config,) = expected.glob("synthetic/toy-dilated/*/config.json")
    assert capsys.readouterr().out.strip() == str(config.parent)
    assert json.loads(config.read_text())["variant"] == "toy-dilated"


def test_runs_directory_given_or_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(RUNS_DIR_ENV, str(tmp_path / "shared-runs"))
    assert runs_dir() == tmp_path / "shared-runs"
    assert workbench.default_runs_dir({}) == str(tmp_path / "shared-runs")
    assert runs_dir("mine") == tmp_path / "mine"  # a given path is relative to the working directory
    assert workbench.default_runs_dir({"runs-dir": "mine"}) == str(tmp_path / "mine")
    monkeypatch.delenv(RUNS_DIR_ENV)
    assert runs_dir() == tmp_path / "artifacts" / "runs"  # no project above: the working directory's


def test_a_run_directory_never_leaves_the_runs_directory(tmp_path, monkeypatch, capsys):
    from tests.helpers import write_image_folder

    folder = write_image_folder(tmp_path / "imgs")
    runs = tmp_path / "elsewhere" / "runs"
    args = ["--max-iter", "1", "--eval-every", "1", "--batch-size", "4", "--device", "cpu",
            "--runs-dir", str(runs), "--data-dir", str(tmp_path / "data"), "--set", "tailor_num_classes=true"]
    monkeypatch.chdir(folder)
    assert main(["train", "toy-dilated", *args, "--dataset", "."]) == 0
    monkeypatch.chdir(folder / "train")
    assert main(["train", "toy-dilated", *args, "--dataset", ".."]) == 0
    made = sorted(p.parent.relative_to(runs).as_posix().rsplit("/", 1)[0] for p in runs.rglob("config.json"))
    assert made == ["imgs/toy-dilated", "imgs/toy-dilated"]
    assert [p for p in tmp_path.rglob("config.json") if not p.is_relative_to(runs)] == []

    (tmp_path / "...yml").write_text("model: toy-dilated\n")  # a YAML config's run is named after its file: '..'
    capsys.readouterr()
    assert main(["train", str(tmp_path / "...yml"), *args, "--dataset", "synthetic"]) == 2
    assert capsys.readouterr().err.strip() == ("nbkit train: error: run name '..' is not a plain folder name; "
                                               "expected a name without slashes that is not '.' or '..'")
    assert sorted(p.name for p in runs.iterdir()) == ["imgs"]  # nothing written for the refused run
