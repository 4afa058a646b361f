"""The run directory's contract: where the runs directory is, wherever a command starts."""

import json

from nbkit import workbench
from nbkit.cli import main
from nbkit.runlog import RUNS_DIR_ENV, runs_dir


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
