"""Reports: the three notebooks exported to HTML, and each main chart as PNG and SVG."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


from .comparisons import COMPARISONS
from .workbench import REPO, build_view, datasets, load, variant_options

NOTEBOOKS = REPO / "notebooks"


def export_notebook(name: str, runs_dir: Path, out: Path) -> Path:
    """Run notebooks/<name>.py on runs_dir and write its HTML; a failing cell is an error."""
    target = out / f"{name}.html"
    tmp = out / f".{name}.html.tmp"
    cmd = [sys.executable, "-m", "marimo", "export", "html", str(NOTEBOOKS / f"{name}.py"), "-o", str(tmp),
           "--force", "--", "--runs-dir", str(runs_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    text = done.stdout + done.stderr
    if done.returncode != 0 or "failed to execute" in text or not tmp.exists():
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"exporting notebooks/{name}.py failed: {text.strip().splitlines()[-1] if text.strip() else done.returncode}")
    tmp.replace(target)
    return target


def export_figures(runs_dir: Path, out: Path, dataset: str | None = None) -> list[Path]:
    """Each comparison's main charts (mean and min-max band over seeds) as PNG and SVG."""
    metrics, runs = load(runs_dir)
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
                path = out / f"{comparison.name}-{kind}.{suffix}"
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
