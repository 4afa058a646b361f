"""Reports: the comparison notebook exported to HTML once per comparison, and each main chart
as PNG and SVG. Works from an installed nbkit: the notebook is part of the package."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .comparisons import COMPARISONS
from .reader import read_runs
from .workbench import build_view, datasets, variant_options

NOTEBOOK = Path(__file__).with_name("notebook.py")  # the one comparison notebook


def export_notebook(name: str, runs_dir: Path, out: Path) -> Path:
    """Run the comparison notebook for comparison `name` on runs_dir and write its HTML; a
    failing cell is an error."""
    target = out / f"{name}.html"
    tmp = out / f".{name}.html.tmp"
    with tempfile.TemporaryDirectory() as scratch:  # marimo leaves a session snapshot beside what it exports
        source = Path(shutil.copy(NOTEBOOK, scratch))
        cmd = [sys.executable, "-m", "marimo", "export", "html", str(source), "-o", str(tmp),
               "--force", "--", "--comparison", name, "--runs-dir", str(runs_dir)]
        done = subprocess.run(cmd, capture_output=True, text=True)
    text = done.stdout + done.stderr
    if done.returncode != 0 or "failed to execute" in text or not tmp.exists():
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"exporting the {name} comparison failed: {text.strip().splitlines()[-1] if text.strip() else done.returncode}")
    tmp.replace(target)
    return target


def export_figures(runs_dir: Path, out: Path, dataset: str | None = None) -> list[Path]:
    """Each comparison's main charts (mean and min-max band over seeds) as PNG and SVG."""
    metrics, runs = read_runs(runs_dir)
    written = []
    if runs.is_empty() or metrics.is_empty():
        return written
    out.mkdir(parents=True, exist_ok=True)
    for comparison in COMPARISONS.values():
        chosen = dataset or (datasets(runs, comparison) or [None])[0]
        _, variants = variant_options(runs, comparison, chosen)
        if not variants:
            continue
        view = build_view(metrics, runs, chosen, variants, seeds="mean and min-max band")
        for kind, chart in view.charts.items():
            for suffix in ("png", "svg"):
                path = out / f"{comparison.name}-{kind.replace(' ', '-')}.{suffix}"
                chart.save(str(path), **({"scale_factor": 1.5} if suffix == "png" else {}))
                written.append(path)
    return written


def export_all(runs_dir: str | Path, out_dir: str | Path, figures_dir: str | Path | None = None,
               dataset: str | None = None) -> list[Path]:
    runs_dir, out = Path(runs_dir).resolve(), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [export_notebook(name, runs_dir, out) for name in COMPARISONS]
    written += export_figures(runs_dir, Path(figures_dir) if figures_dir else out / "figures", dataset)
    return written
