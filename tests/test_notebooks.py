import os
import subprocess
import sys

import pytest

from nbkit.cli import main
from nbkit.comparisons import COMPARISONS

from .conftest import REPO
from .helpers import workbench_runs

NOTEBOOKS = list(COMPARISONS)


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    return workbench_runs(tmp_path_factory.mktemp("runs"))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_headless_as_a_script(name, runs_dir):
    done = subprocess.run([sys.executable, str(REPO / "notebooks" / f"{name}.py")], capture_output=True, text=True,
                          env={**os.environ, "NBKIT_RUNS_DIR": str(runs_dir)}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def export(name, runs_dir, out):
    done = subprocess.run([sys.executable, "-m", "marimo", "export", "html", str(REPO / "notebooks" / f"{name}.py"),
                           "-o", str(out), "--", "--runs-dir", str(runs_dir)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "failed" not in done.stdout + done.stderr, done.stdout + done.stderr
    return out.read_text()


def test_empty_runs_directory_shows_how_to_get_runs(tmp_path):
    html = export("models", tmp_path / "no-runs", tmp_path / "models.html")
    assert "No runs yet" in html and "nbkit sweep models" in html


def test_report_command_writes_html_and_chart_images(runs_dir, tmp_path, capsys):
    assert main(["report", "--runs-dir", str(runs_dir), "--out", str(tmp_path / "reports")]) == 0
    out = tmp_path / "reports"
    for name in NOTEBOOKS:
        html = (out / f"{name}.html").read_text()
        assert "vega" in html.lower()
        assert "resnet18" in html  # the charts' data travel inside the page
    models = (out / "models.html").read_text()
    assert "vitn-12x256-8x8-lt" in models and "Learned attention temperature" in models
    for name in NOTEBOOKS:
        for kind in ("loss", "accuracy"):
            for suffix in ("png", "svg"):
                path = out / "figures" / f"{name}-{kind}.{suffix}"
                assert path.stat().st_size > 1000, path
    assert (out / "figures" / "models-temperature.png").exists()
    assert (out / "figures" / "models-loss.png").read_bytes()[:4] == b"\x89PNG"
    assert "<svg" in (out / "figures" / "models-loss.svg").read_text()[:500]


def test_jupyter_panel_builds_and_its_controls_drive_the_view(runs_dir):
    from nbkit.jupyter import Panel

    panel = Panel("models", runs_dir=str(runs_dir))
    assert panel.dataset.value == "synthetic"
    assert set(panel.variants.value) == {"resnet18", "toy-dilated", "vitn-12x256-8x8", "vitn-12x256-8x8-ra",
                                         "vitn-12x256-8x8-lt"}
    panel.variants.value = ("resnet18", "vitn-12x256-8x8-lt")
    panel.seeds.value = "mean and min-max band"
    panel.load_button.click()
    assert set(panel.view.variant_table["variant"]) == {"resnet18", "vitn-12x256-8x8-lt"}
    assert set(panel.view.charts) == {"loss", "accuracy", "temperature"}
    panel.variants.value = ("toy-dilated",)
    panel.load_button.click()
    assert panel.view.variant_table["variant"].to_list() == ["toy-dilated"]
    assert "temperature" not in panel.view.charts
    panel.runs_dir.value = str(runs_dir / "missing")
    panel.load_button.click()
    assert panel.view is None and panel.dataset.options == ()


def test_jupyter_panel_refuses_an_unknown_comparison():
    from nbkit.jupyter import Panel

    with pytest.raises(ValueError, match="unknown comparison 'modles'; expected one of resnets, learning, models"):
        Panel("modles")
