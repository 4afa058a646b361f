"""The tables and the run set's protocol as people read them: human column names, numbers
formatted for their kind, "—" where a value is undefined, and the settings that set runs apart.
The frames in nbkit.tables keep full precision; these are for showing (notebook, Jupyter, report)."""

from __future__ import annotations

import html
from collections import Counter

import polars as pl

from .escape import md_text
from .runlog import read_config
from .settings import Settings

DASH = "—"
# what makes numbers comparable with the original's: the dataset and these settings
PROTOCOL_KEYS = ("max_iter", "batch_size", "warmup_min_lr", "warmup_max_lr", "warmup_num_steps", "gradient_clipping")
PROTOCOL_WORDS = {"max_iter": "steps", "batch_size": "batch", "warmup_min_lr": "lr start",
                  "warmup_max_lr": "peak lr", "warmup_num_steps": "warm-up steps", "gradient_clipping": "clipping"}
NOT_A_DIFFERENCE = {"seed", "data_dir", "dataset", "save_every", "eval_batch_size", "compile"}


def top1(v) -> str:
    return DASH if v is None else f"{v:.4f}"


def mean_std(m, s) -> str:
    """'0.6543 ± 0.0021'; the mean alone where one seed leaves the spread undefined."""
    return DASH if m is None else top1(m) + (f" ± {s:.4f}" if s is not None else "")


def count(v) -> str:
    if v is None:
        return DASH
    v = float(v)
    return f"{v / 1e6:.1f} M" if v >= 1e6 else f"{v / 1e3:.0f} k" if v >= 1e4 else f"{v:,.0f}"


def seconds(v) -> str:
    if v is None:
        return DASH
    return f"{v / 3600:.1f} h" if v >= 3600 else f"{v / 60:.1f} min" if v >= 60 else f"{v:.0f} s"


def signed(v) -> str:
    return DASH if v is None else f"{v:+.4f}"


def step(v) -> str:
    return DASH if v is None else f"{v:,.0f}"


def value(v) -> str:
    """A setting as written: integers with thousands separators, floats short."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return DASH if v is None else str(v)
    return f"{v:,}" if isinstance(v, int) else f"{v:g}"


def _get(row: dict, key: str):
    v = row.get(key)
    return None if v is None or (isinstance(v, float) and v != v) else v


def variant_table(per_variant: pl.DataFrame) -> pl.DataFrame:
    """One row per variant across seeds (tables.per_variant), as people read it; train_200 top-1
    is the best, the gap is final train_200 minus final test top-1."""
    if per_variant.is_empty():
        return pl.DataFrame({"Variant": []}, schema={"Variant": pl.String})
    has_val = "test_at_best_val_mean" in per_variant.columns
    rows = []
    for r in per_variant.iter_rows(named=True):
        best = mean_std(_get(r, "best_test_mean"), _get(r, "best_test_std") if r["seeds"] > 1 else None)
        at = _get(r, "best_test_step_mean")
        row = {"Variant": r["variant"], "Seeds": str(r["seeds"]),
               "Best test top-1 (step)": best + (f" ({step(at)})" if at is not None and best != DASH else "")}
        if has_val:
            row["Test top-1 at best val step"] = top1(_get(r, "test_at_best_val_mean"))
        row |= {"Final test top-1": mean_std(_get(r, "final_test_mean"),
                                             _get(r, "final_test_std") if r["seeds"] > 1 else None),
                "train_200 top-1": top1(_get(r, "best_train_200_mean")), "Gap": signed(_get(r, "gap_mean")),
                "Params": count(_get(r, "parameters")), "Time": seconds(_get(r, "wall_seconds_mean")),
                "img/s": count(_get(r, "images_per_second_mean"))}
        rows.append(row)
    return pl.DataFrame(rows)


def original_table(train_200: pl.DataFrame, test: pl.DataFrame) -> pl.DataFrame:
    """The original's two tables in one: each run's best train_200 and best test top-1 with
    their steps (ties to the earlier step), best test first."""
    if test.is_empty() and train_200.is_empty():
        return pl.DataFrame({"Run": []}, schema={"Run": pl.String})
    keys = ["run_id", "variant", "seed", "path"]
    parts = [t.select(*keys, pl.col("acc_top1").alias(name), pl.col("step").alias(name + " step"))
             for t, name in ((train_200, "train_200"), (test, "test")) if not t.is_empty()]
    both = parts[0].join(parts[1], on=keys, how="full", coalesce=True) if len(parts) == 2 else parts[0]
    if "test" in both.columns:
        both = both.sort(["test", "run_id"], descending=[True, False], nulls_last=True)
    return pl.DataFrame([{"Run": r["run_id"], "Variant": r["variant"], "Seed": DASH if r["seed"] is None else str(r["seed"]),
                          "Best train_200 top-1": top1(r.get("train_200")), "its step": step(r.get("train_200 step")),
                          "Best test top-1": top1(r.get("test")), "at step": step(r.get("test step"))}
                         for r in both.iter_rows(named=True)])


def configs(runs: pl.DataFrame) -> dict[str, dict]:
    """Each run's config.json by path ({} where unreadable)."""
    return {p: read_config(p) or {} for p in runs["path"]} if not runs.is_empty() else {}


def _settings(config: dict) -> dict:
    s = config.get("settings")
    return s if isinstance(s, dict) else {}


def differences(cfgs: dict[str, dict]) -> dict[str, str]:
    """Per run, the settings where it differs from what most of the runs use ('use_augmentation=True')."""
    settings = {p: _settings(c) for p, c in cfgs.items()}
    keys = sorted({k for s in settings.values() for k in s} - NOT_A_DIFFERENCE)
    usual = {k: Counter(repr(s.get(k)) for s in settings.values()).most_common(1)[0][0] for k in keys}
    return {p: ", ".join(f"{k}={s.get(k)}" for k in keys if repr(s.get(k)) != usual[k]) or DASH
            for p, s in settings.items()}


def protocol_gaps(config: dict, original: dict | None = None) -> list[str]:
    """How a run's protocol differs from the original's (CIFAR-100, Settings' defaults)."""
    original = original or Settings().to_dict()
    s, gaps = _settings(config), []
    name = (config.get("dataset") or {}).get("name") if isinstance(config.get("dataset"), dict) else None
    if name != original["dataset"]:
        gaps.append(f"dataset {name or '?'}")
    for k in PROTOCOL_KEYS:
        if k in s and s[k] != original[k]:
            gaps.append(f"{PROTOCOL_WORDS[k]} {value(s[k])}")
    return gaps


def run_table(per_run: pl.DataFrame, cfgs: dict[str, dict], runs: pl.DataFrame | None = None) -> pl.DataFrame:
    """One row per run: state, progress, best numbers, protocol and the settings that set it apart."""
    if per_run.is_empty():
        return pl.DataFrame({"Run": []}, schema={"Run": pl.String})
    diff, rows = differences(cfgs), []
    last = dict(runs.select("path", "last_step").iter_rows()) if runs is not None and "last_step" in runs.columns else {}
    for r in per_run.sort("variant", "seed", nulls_last=True).iter_rows(named=True):
        config = cfgs.get(r["path"], {})
        gaps = protocol_gaps(config)
        rows.append({"Run": r["run_id"], "Variant": r["variant"], "Seed": DASH if r["seed"] is None else str(r["seed"]),
                     "State": r["state"] or DASH,
                     "Step": f"{step(last.get(r['path']))} of {step(_settings(config).get('max_iter'))}",
                     "Best train_200 top-1": top1(_get(r, "best_train_200")), "Best test top-1": top1(_get(r, "best_test")),
                     "Images/s": count(_get(r, "images_per_second")), "Device": value(config.get("device")),
                     "Protocol": "as the original" if not gaps else "differs: " + ", ".join(gaps),
                     "Settings apart from the others": diff.get(r["path"], DASH)})
    frame = pl.DataFrame(rows)
    # what every run shares is said once, in the run set's protocol, not repeated on each row
    same = [c for c in ("Step", "Device", "Protocol") if frame.height > 1 and frame[c].n_unique() == 1]
    return frame.drop(same)


def protocol(runs: pl.DataFrame, cfgs: dict[str, dict]) -> str:
    """What this run set is (markdown): per dataset, steps, batch, device and labels, and
    whether its protocol is the original's."""
    if runs.is_empty():
        return ""
    original = Settings().to_dict()
    parts = []
    for dataset in sorted(runs["dataset"].drop_nulls().unique()):
        chosen = [cfgs.get(p, {}) for p in runs.filter(pl.col("dataset") == dataset)["path"]]
        values = lambda get: md_text(", ".join(value(v) for v in sorted({repr(get(c)): get(c) for c in chosen
                                                                         if get(c) is not None}.values(), key=str))
                                     or DASH)
        labels = sorted({md_text(c.get("label")) for c in chosen if c.get("label")})
        gaps = sorted({md_text(g) for c in chosen for g in protocol_gaps(c, original)})
        text = (f"**{md_text(dataset)}**: {len(chosen)} run(s); {values(lambda c: _settings(c).get('max_iter'))} steps, "
                f"batch {values(lambda c: _settings(c).get('batch_size'))}, evaluated every "
                f"{values(lambda c: _settings(c).get('eval_every'))} steps; device {values(lambda c: c.get('device'))}")
        text += "; labelled " + "; ".join(f"“{l}”" for l in labels) if labels else ""
        text += (f". **Differs from the original's protocol** ({original['dataset']}, {original['max_iter']:,} steps, "
                 f"batch {original['batch_size']}): {', '.join(gaps)}; compare its numbers with each other, not with "
                 "the original's." if gaps else ". Same protocol as the original.")
        parts.append(text)
    return "\n\n".join(f"- {p}" for p in parts)


def to_html(frame: pl.DataFrame) -> str:
    """A table as plain HTML (for reports)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v) if v is not None else DASH)}</td>" for v in row) + "</tr>"
                   for row in frame.iter_rows())
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
