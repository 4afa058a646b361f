"""What the live notebook costs in the browser (Debian's Chromium, headless, driven by Playwright),
on generated runs directories of the original protocol's shape (benchmarks/refresh.py's runs, each
held "running" by this process as a trainer holds it), the comparison *all runs* so every run is on
the page:

- first load: from opening the page to the chart drawn, and to the Runs table shown;
- an update with one new row per run: from the press of the refresh button (its click event in the
  page) to the chart holding
  the new rows (the poll, the view, the cells that run again and the in-place redraw), its median;
- dimming: the longest stretch any output was dimmed (marimo's `marimo-output-stale`) per update,
  and how many outputs were dimmed at once;
- with --epochs, the epochs notebook on the shipped runs: to its first chart and its verdict.

    python benchmarks/browser.py [--runs 24 100] [--updates 8] [--epochs]

Prints a line per size and writes benchmarks/results/browser-<time>.json. Goals (issue 33): an
update under 0.3 s at 100 runs, nothing dimmed for more than 0.1 s, a first page of 24 runs
under 5 s, the epochs page under 8 s. The first notebook ever opened makes the Vega bundle (about 1.3 s,
nbkit.view.vega); the JSON says whether it was already in the cache.
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from refresh import append_row, make_runs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]

# in the page: each change of the number of dimmed outputs, and when the chart first holds a step
WATCH = """
window.__dims = []; window.__seen = {};
// the press of a button, as the page gets it (clicks inside marimo's shadow roots reach the window)
window.addEventListener('click', () => { window.__clicked = performance.now(); }, true);
// the live chart's element, looked for through the shadow roots until found (a search of the whole
// page on every frame would itself slow the page it measures)
window.chartElement = function () {
  if (window.__chart && window.__chart.isConnected) { return window.__chart; }
  const all = [...document.querySelectorAll('*')].flatMap(e => e.shadowRoot ?
    [...e.shadowRoot.querySelectorAll('[data-draws]')] : []).concat([...document.querySelectorAll('[data-draws]')]);
  window.__chart = all.length ? all[0] : null;
  return window.__chart;
};
(function loop() {
  const n = document.querySelectorAll('.marimo-output-stale').length;
  const last = window.__dims.length ? window.__dims[window.__dims.length - 1][1] : 0;
  if (n !== last) { window.__dims.push([performance.now(), n]); }
  const el = window.__want && !(window.__want in window.__seen) ? window.chartElement() : null;
  const view = el ? el.nbkitView : null;
  if (view) {
    try { if (view.data('loss-lines').some(r => r.step === window.__want)) { window.__seen[window.__want] = performance.now(); } }
    catch (e) {}
  }
  requestAnimationFrame(loop);
})();
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(notebook: str, runs_dir: Path, log: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    """notebooks/<notebook>.py served by `marimo run` on a free local port, once it accepts connections."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "marimo", "run", str(REPO / "notebooks" / f"{notebook}.py"),
                               "--headless", "--host", "127.0.0.1", "--port", str(port), "--no-token", "--",
                               "--runs-dir", str(runs_dir), *extra], stdout=open(log, "w"), stderr=subprocess.STDOUT,
                              cwd=REPO)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    return server, port


def hold(runs: list[Path]) -> list[int]:
    """Hold each run's lock, as its trainer would: the runs read 'running'."""
    fds = []
    for run in runs:
        fd = os.open(run / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fds.append(fd)
    return fds


def longest_dim(dims: list, start: float, end: float) -> tuple[float, int]:
    """The longest stretch (s) with any output dimmed between start and end, and the most dimmed at once."""
    longest, most, since = 0.0, 0, None
    for t, n in dims:
        if t < start:
            since = t if n and since is None else (None if not n else since)
            continue
        if t > end:
            break
        most = max(most, n)
        if n and since is None:
            since = t
        elif not n and since is not None:
            longest, since = max(longest, (t - max(since, start)) / 1000), None
    if since is not None:
        longest = max(longest, (end - max(since, start)) / 1000)
    return longest, most


def measure(n: int, updates: int, browser) -> dict:
    root = Path(tempfile.mkdtemp(prefix="nbkit-browser-"))
    runs = make_runs(root, n)
    fds = hold(runs)
    server, port = serve("models", root, root / "marimo.log", "--comparison", "all runs")
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.add_init_script(WATCH)
        start = time.perf_counter()
        page.goto(f"http://127.0.0.1:{port}")
        page.wait_for_function("() => { const el = window.__dims !== undefined && window.chartElement(); "
                               "return !!el && Number(el.dataset.draws) > 0; }", timeout=300_000, polling=100)
        chart_s = time.perf_counter() - start
        page.get_by_text("Run id", exact=True).first.wait_for(timeout=300_000)
        page_s = time.perf_counter() - start
        page.wait_for_timeout(3000)  # settled
        load_dims = page.evaluate("() => window.__dims.filter(d => d[1] > 0).length")  # the watcher sees dimming
        refresh = page.locator("select").filter(has_text="30s").first.locator("xpath=..").locator("button").first
        costs, dims = [], []
        for k in range(updates):
            step = 5010 + 10 * k
            page.evaluate(f"() => {{ window.__want = {step}; }}")
            append_row(runs, step)
            page.evaluate("() => { window.__clicked = undefined; }")
            refresh.click()
            page.wait_for_function(f"() => {step} in window.__seen", timeout=120_000, polling=50)
            page.wait_for_timeout(1500)  # whatever else runs after the chart
            seen, pressed = page.evaluate(f"() => [window.__seen[{step}], window.__clicked]")
            costs.append((seen - pressed) / 1000)
            dims.append(longest_dim(page.evaluate("() => window.__dims"), pressed, page.evaluate("() => performance.now()")))
        page.close()
        return {"runs": n, "first_chart_s": round(chart_s, 2), "first_page_s": round(page_s, 2),
                "dimmings_seen_while_loading": load_dims,
                "update_s": [round(c, 3) for c in costs], "update_median_s": round(statistics.median(costs), 3),
                "dimmed_longest_s": [round(d, 3) for d, _ in dims], "dimmed_most_outputs": [m for _, m in dims]}
    finally:
        server.terminate()
        server.wait(timeout=30)
        for fd in fds:
            os.close(fd)
        shutil.rmtree(root, ignore_errors=True)


def first_epochs_page(browser) -> dict:
    """The epochs notebook on the shipped artifacts/runs-epochs: from opening it to its first chart
    drawn, and to its verdict shown."""
    server, port = serve("epochs", REPO / "artifacts" / "runs-epochs",
                         Path(tempfile.mkdtemp(prefix="nbkit-browser-")) / "marimo.log")
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        start = time.perf_counter()
        page.goto(f"http://127.0.0.1:{port}")
        page.locator("svg.marks").first.wait_for(timeout=300_000)
        chart_s = time.perf_counter() - start
        page.get_by_text("Verdict:").first.wait_for(timeout=300_000)
        verdict_s = time.perf_counter() - start
        page.close()
        return {"notebook": "epochs", "runs_dir": "artifacts/runs-epochs", "first_chart_s": round(chart_s, 2),
                "verdict_s": round(verdict_s, 2)}
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[24, 100])
    parser.add_argument("--updates", type=int, default=8)
    parser.add_argument("--epochs", action="store_true", help="also the epochs notebook's first load")
    args = parser.parse_args()
    from nbkit.view import vega

    had_bundle = [p.name for p in vega.cache_dir().glob("vega-bundle-*.js")]  # else the first page makes it (about 1.3 s)
    out = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        for n in args.runs:
            result = measure(n, args.updates, browser)
            out.append(result)
            print(f"{n} runs: first chart {result['first_chart_s']} s, page {result['first_page_s']} s; update "
                  f"median {result['update_median_s']} s; dimmed at most {max(result['dimmed_longest_s'])} s "
                  f"({max(result['dimmed_most_outputs'])} outputs)", flush=True)
        epochs = first_epochs_page(browser) if args.epochs else None
        if epochs:
            print(f"epochs notebook: first chart {epochs['first_chart_s']} s, verdict {epochs['verdict_s']} s", flush=True)
        browser.close()
    RESULTS.mkdir(exist_ok=True)
    from nbkit.view import vega

    cached = [p.name for p in vega.cache_dir().glob("vega-bundle-*.js")]
    path = RESULTS / f"browser-{datetime.datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps({"command": "python benchmarks/browser.py " + " ".join(sys.argv[1:]),
                                "machine": f"{os.cpu_count()} CPUs, shared", "results": out, "epochs": epochs,
                                "vega_bundle_cached_before": had_bundle, "vega_bundle_cached_after": cached}, indent=1))
    print(path)


if __name__ == "__main__":
    main()
