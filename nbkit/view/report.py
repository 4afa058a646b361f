"""Reports: each comparison as one self-contained HTML document (intro, the run set's protocol,
the linked interactive charts, findings and tables) that renders with the network off, and each
main chart as PNG and SVG. The charts' JavaScript (Vega, Vega-Lite, Vega-Embed) is inlined from
the copy vl-convert ships, so a report is one file to mail or archive. A report is a document:
no code, no widgets, no local paths. Works from an installed nbkit."""

from __future__ import annotations

import base64
import hashlib
import html
import json
from pathlib import Path

from nbkit.analysis import scorecard as claims
from nbkit.analysis.measures import measured
from nbkit.design.comparisons import COMPARISONS, Comparison
from nbkit.rundir import files
from nbkit.rundir.reader import read_runs
from nbkit.view import charts
from nbkit.view import scorecard as scorecard_text
from nbkit.view.comparison_view import build_view, registry_order
from nbkit.view.escape import markdown_html
from nbkit.view.present import Table
from nbkit.view.workbench import (
    answer,
    answer_lines,
    curves_note,
    datasets,
    default_scalar,
    has_claims,
    intro,
    notes,
    original,
    sections,
    variant_options,
)

STYLE = """
body { font: 15px/1.55 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; max-width: 1020px;
       margin: 2rem auto; padding: 0 1.5rem; }
h1 { font-size: 1.9rem; margin-bottom: .5rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 13px; margin: .8rem 0; width: 100%; }
th, td { padding: 4px 8px; border-bottom: 1px solid #e5e5e5; text-align: left; white-space: nowrap; }
th { background: #f6f6f6; } tbody tr:hover { background: #fafafa; }
.wide { overflow-x: auto; } td.num, th.num { text-align: right; } .wrap td { white-space: normal; } .note { color: #555; font-size: 13px; } #curves { margin: 1rem 0; }
"""
EMBED_OPTIONS = {"renderer": "svg", "actions": {"export": True, "source": False, "compiled": False, "editor": False}}


def javascript() -> str:
    """Vega, Vega-Lite and Vega-Embed as one script (nbkit.view.vega)."""
    from nbkit.view import vega

    return vega.javascript()


def _md(text: str) -> str:
    return markdown_html(text)  # raw HTML shown as text, no javascript: links: a report runs no script of a run's


def _script_json(value) -> str:
    """JSON inside a <script>: no '<' (so no '</script>' or '<!--'), '>' or '&' left for the HTML
    parser to read (json.dumps already escapes the line separators JavaScript cannot hold)."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def document(comparison: Comparison, frames: tuple, dataset: str | None = None, script: str | None = None) -> str:
    """The report of one comparison as an HTML string; frames: read_runs' (metrics, runs)."""
    metrics, runs = frames
    chosen = dataset or (datasets(runs, comparison) or [None])[0]
    options, variants = variant_options(runs, comparison, chosen)
    parts = [_md(intro(comparison))]
    if runs.is_empty() or metrics.is_empty() or not variants:
        parts.append(_md(f"**No runs of this comparison in this run set.** Train some with "
                         f"`nbkit sweep {comparison.name}`, then run `nbkit report` again."))
        return _page(comparison, parts, None, script)
    view = build_view(metrics, runs, chosen, variants, splits=("train_200", "val", "test"),
                      scalar=default_scalar(metrics), palette=charts.colours(runs, registry_order()),
                      baseline=comparison.baseline, own=not has_claims(comparison))
    said = notes(view, sortable=False)
    verdicts = {}
    if comparison.source is None:  # the original's claims: nbkit's comparisons only
        card = claims.scorecard(measured(*claims.of_dataset(metrics, runs, chosen)), comparison.name)
        verdicts = scorecard_text.verdict_counts(card)
    extra = sections(view, comparison, chosen)
    parts += [_md(answer(view, verdicts, chosen, answer_lines(view, comparison))), _md(original(comparison)),
              "<h2>This run set</h2>", _md(view.protocol),
              "<h2>Curves</h2>", _md(curves_note(comparison)), "<div id='curves'></div>",
              *([f"<div class='wrap'>{_md(scorecard_text.section(metrics, runs, comparison.name, chosen))}</div>"]
                if comparison.source is None else []),  # the original's claims: nbkit's comparisons only
              *(part for i, s in enumerate(extra) for part in (
                  f"<h2>{html.escape(s.title)}</h2>", _md(s.text), *([f"<div id='section{i}'></div>"] if s.chart else []),
                  *([f"<div class='wide'>{Table(s.table).to_html()}</div>"] if s.table is not None else []))),
              "<h2>Per variant, across seeds</h2>", _md(said["per variant"]),
              f"<div class='wide'>{view.variant_rows.to_html()}</div>",
              "<h2>The original's tables</h2>", _md(said["original"]),
              f"<div class='wide'>{view.original_rows.to_html()}</div>",
              "<h2>Runs</h2>", _md(said["runs"]), f"<div class='wide'>{view.run_rows.to_html()}</div>"]
    specs = {"curves": view.dashboard.to_dict(),
             **{f"section{i}": s.chart.to_dict() for i, s in enumerate(extra) if s.chart is not None}}
    return _page(comparison, parts, specs, script)


def _page(comparison: Comparison, parts: list[str], specs: dict[str, dict] | None, script: str | None) -> str:
    """The page; specs: element id -> the Vega-Lite chart drawn there. Its content security
    policy lets only its own scripts run (by hash), so markup that reached the page any other
    way runs nothing (Vega compiles its expressions with Function: 'unsafe-eval')."""
    scripts = []
    if specs:
        scripts = [script if script is not None else javascript()] + [
            f"vegaEmbed('#{key}', {_script_json(spec)}, {_script_json(EMBED_OPTIONS)})"
            f".catch(e => {{ document.getElementById('{key}').textContent = 'The charts failed: ' + e; }});"
            for key, spec in specs.items()]
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in scripts)
    policy = f"default-src 'none'; img-src data: blob:; style-src 'unsafe-inline'; script-src 'unsafe-eval' {hashes}"
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{policy}\">"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>nbkit: {html.escape(comparison.name)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n" + "\n".join(f"<script>{s}</script>" for s in scripts) + "\n</body></html>\n")


def write_report(comparison: str | Comparison, runs_dir: str | Path, out: str | Path, dataset: str | None = None,
                 script: str | None = None, frames: tuple | None = None) -> Path:
    """Write <out>/<name>.html (replaced whole, never left half-written) for a comparison (one of
    nbkit's by name, or any Comparison: a comparisons file's, nbkit.design.comparisons_file); frames: the runs
    directory already read (read_runs), else it is read here."""
    comparison = COMPARISONS[comparison] if isinstance(comparison, str) else comparison
    out, name = Path(out), comparison.name
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{name}.html"
    files.write_text(target, document(comparison, frames or read_runs(runs_dir), dataset, script))
    return target


def export_figures(runs_dir: Path, out: Path, dataset: str | None = None, frames: tuple | None = None,
                   comparisons: list[Comparison] | None = None) -> list[Path]:
    """Each comparison's main charts (mean and min-max band over seeds), and its tuning charts where
    its runs include trials, as PNG and SVG; comparisons: which (default: nbkit's)."""
    metrics, runs = frames or read_runs(runs_dir)
    written = []
    if runs.is_empty() or metrics.is_empty():
        return written
    out.mkdir(parents=True, exist_ok=True)
    for comparison in comparisons or COMPARISONS.values():
        chosen = dataset or (datasets(runs, comparison) or [None])[0]
        options, variants = variant_options(runs, comparison, chosen)
        if not variants:
            continue
        view = build_view(metrics, runs, chosen, variants, seeds="mean and min-max band",
                          palette=charts.colours(runs, registry_order()))
        from nbkit.view.tuning_view import figures

        for kind, chart in {**view.charts, **figures(view)}.items():
            for suffix in ("png", "svg"):
                path = out / f"{comparison.name}-{kind}.{suffix}"
                chart.save(path, **({"scale_factor": 1.5} if suffix == "png" else {}))  # whole or not at all
                written.append(path)
    return written


def export_all(runs_dir: str | Path, out_dir: str | Path, figures_dir: str | Path | None = None,
               dataset: str | None = None, comparisons: list[Comparison] | None = None) -> list[Path]:
    """Every comparison's report and figures; comparisons: which (default: nbkit's; a
    comparisons file's come from nbkit.design.comparisons_file.load_study(path).own_comparisons)."""
    runs_dir, out = Path(runs_dir).resolve(), Path(out_dir)
    comparisons = list(comparisons or COMPARISONS.values())
    script, frames = javascript(), read_runs(runs_dir)  # once for the reports and the figures
    written = [write_report(c, runs_dir, out, dataset, script, frames) for c in comparisons]
    written += export_figures(runs_dir, Path(figures_dir) if figures_dir else out / "figures", dataset, frames,
                              comparisons)
    return written
