"""Launching runs from a page: the launch form (marimo) and its defaults from the loaded runs, what
a launch starts in one line, and the state of the sweeps launched on a runs directory."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from nbkit.design.comparisons import Comparison
from nbkit.view import present
from nbkit.view.comparison_view import registry_order
from nbkit.view.escape import md_code, md_text

BUILTIN_DATASETS = ("cifar10", "cifar100", "synthetic")



def launch_defaults(runs: pl.DataFrame, dataset: str | None, cfgs: dict | None = None,
                    data_dir: str | Path = "data") -> dict:
    """The launch form's starting values, from the loaded runs of `dataset`: where their data
    came from (only a path that exists here: runs made elsewhere name a path this machine may not
    have), their steps, evaluation interval, seeds and device; the original protocol where there
    are none, where CIFAR-100 is in data_dir (offline it could not be fetched: else a short
    synthetic run). `missing` names a source path that is not here."""
    out = {"dataset": dataset if dataset in BUILTIN_DATASETS else "cifar100",
           "max_iter": 5000, "eval_every": 100, "warmup": 500, "seeds": 2, "device": "auto", "missing": None}
    chosen = runs.filter(pl.col("dataset") == dataset) if dataset and not runs.is_empty() else pl.DataFrame()
    if chosen.is_empty():
        if out["dataset"] == "cifar100" and not cifar100_here(data_dir):  # offline it could not be fetched: a run that works
            out.update(dataset="synthetic", max_iter=200, eval_every=20, warmup=20)
        return out
    configs = cfgs if cfgs is not None else present.configs(chosen)
    configs = [configs.get(p) or {} for p in chosen["path"]]
    settings = [c.get("settings") if isinstance(c.get("settings"), dict) else {} for c in configs]
    usual = lambda values, default: Counter(values).most_common(1)[0][0] if values else default
    sources = [x for x in dict.fromkeys((c.get("dataset") or {}).get("source") if isinstance(c.get("dataset"), dict)
                                        else None for c in configs) if isinstance(x, str) and x]
    if dataset not in BUILTIN_DATASETS and sources:
        here = [x for x in sources if Path(x).exists()]
        out["dataset"] = here[0] if here else ""
        out["missing"] = None if here else sources[0]
    ints = lambda key: [s[key] for s in settings if isinstance(s.get(key), int) and not isinstance(s.get(key), bool)
                        and s[key] >= 1]
    out["max_iter"] = usual(ints("max_iter"), out["max_iter"])
    out["eval_every"] = usual(ints("eval_every"), out["eval_every"])
    warmups = [s["warmup_num_steps"] for s in settings if isinstance(s.get("warmup_num_steps"), int)
               and not isinstance(s.get("warmup_num_steps"), bool) and 0 <= s["warmup_num_steps"] < out["max_iter"]]
    out["warmup"] = usual(warmups, min(out["warmup"], out["max_iter"] // 10))
    seeds = chosen.group_by("variant").len()["len"]
    out["seeds"] = max(1, min(20, int(seeds.max()))) if seeds.len() else out["seeds"]
    out["device"] = "cpu" if usual([c.get("device") for c in configs if c.get("device")], "auto") == "cpu" else "auto"
    return out


def cifar100_here(data_dir: str | Path = "data") -> bool:
    """Whether CIFAR-100's files are under data_dir (unpacked or as the archive), so a run needs no download."""
    data = Path(data_dir)
    return (data / "cifar-100-python" / "train").is_file() or (data / "cifar-100-python.tar.gz").is_file()


def warmup_problem(max_iter, warmup) -> str | None:
    """Why a form's warm-up cannot go with its steps (the rate would never reach its peak), or None."""
    if warmup is None or max_iter is None or int(warmup) < int(max_iter):
        return None
    return (f"The warm-up ({int(warmup):,} steps) is not shorter than the run ({int(max_iter):,} steps): the learning "
            f"rate would never reach its peak and the runs would barely learn. Expected fewer warm-up steps, "
            f"e.g. {int(max_iter) // 10:,}.")


def launch_summary(request: dict) -> str:
    """What a launch starts, in one line (markdown): every variant and how many seeds."""
    seeds = int(request.get("seeds") or 1)
    names = ", ".join(md_code(v) for v in request.get("variants") or [])
    return (f"{len(request.get('variants') or []) * seeds} run(s): {names}, {seeds} seed(s) each, on "
            f"{md_code(request.get('dataset'))}, {request.get('max_iter')} steps")


@dataclass(frozen=True)
class SweepStatus:
    """The sweep launched from a page (its sweep_state) and how many launched sweeps run on the runs directory."""
    launched: dict | None
    active: int


def sweep_status(background, launched: dict | None, root) -> SweepStatus:
    return SweepStatus(background.sweep_state(launched) if launched is not None else None,
                       len(background.active_sweeps(root)) if root is not None else 0)


def launch_form(comparison: Comparison, runs: pl.DataFrame, dataset: str | None, cfgs: dict | None = None,
                variants: list[str] | None = None, preset: dict | None = None):
    """The launch form: variants, dataset, steps, evaluation interval, warm-up, seeds, device, runs
    at once, settings, backend. A marimo form: its value (background.launch_sweep's keyword
    arguments) is exactly what the page shows when Launch is pressed. Defaults come from the loaded
    runs; preset (a tuned trial's: nbkit.view.tuning_view.presets) fills in its variant and settings."""
    import marimo as mo

    d = launch_defaults(runs, dataset, cfgs)
    variants = list(comparison.variants) or variants or registry_order()  # "all runs": any variant
    preset = preset or {}
    chosen = [v for v in preset.get("variants") or [] if v in variants] or variants[:2]
    note = (f" (these runs read {md_code(d['missing'])}, which is not on this machine)" if d["missing"] else "")
    fields = {
        "variants": mo.ui.multiselect(variants, value=chosen, label="variants", full_width=True),
        "dataset": mo.ui.text(value=d["dataset"], label="dataset (name or path)" + note, full_width=True,
                              placeholder="cifar100, cifar10, synthetic or a path to an image folder or archive"),
        "max_iter": mo.ui.number(start=1, stop=100000, value=d["max_iter"], label="steps"),
        "eval_every": mo.ui.number(start=1, stop=100000, value=d["eval_every"], label="evaluate every"),
        "warmup": mo.ui.number(start=0, stop=100000, value=d["warmup"], label="warm-up steps"),
        "seeds": mo.ui.number(start=1, stop=20, value=d["seeds"], label="seeds"),
        "device": mo.ui.dropdown(["auto", "cpu", "cuda"], value=d["device"], label="device"),
        "jobs": mo.ui.number(start=1, stop=16, value=2, label="runs at once (per GPU; on the CPU, in all)"),
        "backend": mo.ui.dropdown(["local", "ray"], value="local", label="backend"),
        "address": mo.ui.text(value="", placeholder="auto or HOST:PORT (empty: a local instance)",
                              label="Ray address", full_width=True),
        "settings": mo.ui.text(value=preset.get("settings", ""), full_width=True,
                               label="settings (KEY=VALUE, space-separated; e.g. a tuned trial's)",
                               placeholder="warmup_max_lr=0.001 warmup_num_steps=20"),
    }
    layout = mo.md("{variants}\n\n{dataset}\n\n" + " ".join("{" + k + "}" for k in
                                                            ("max_iter", "eval_every", "warmup", "seeds", "device", "jobs"))
                   + "\n\n{settings}\n\n{backend} {address}")
    return layout.batch(**fields).form(submit_button_label="Launch runs", bordered=False,
                                       validate=_form_problem)


def _form_problem(v: dict) -> str | None:
    if not (v["variants"] and str(v["dataset"]).strip()):
        return "Pick at least one variant and a dataset."
    return warmup_problem(v.get("max_iter"), v.get("warmup"))


def sweep_report(launched: dict | None, state: dict | None, active: int):
    """The sweeps on this runs directory (marimo elements): how many launched from a notebook
    are running and, for the one launched from this page, its state, its runs and, if it
    failed, its one-line error."""
    import marimo as mo

    out = [mo.md(f"**{active} sweep(s) launched from a notebook are running on this runs directory.**")]
    if launched is not None and state is not None:
        out.append(mo.md(f"Launched sweep (pid {launched['pid']}, started {md_text(launched['started'])}): "
                         f"**{md_text(state['state'])}**; {launch_summary(launched.get('request') or {})}; its log: "
                         f"{md_code(launched['log'])}"))
        if state.get("error"):
            out.append(mo.callout(mo.md(f"The sweep failed: {md_code(state['error'])}"), kind="danger"))
        if state.get("runs"):
            out.append(mo.ui.table(pl.DataFrame(state["runs"]), selection=None, show_data_types=False,
                                   label="its runs"))
    return out
