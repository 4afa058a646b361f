"""The tables and the run set's protocol as people read them: human column names, "—" where a
value is undefined, and the settings that set runs apart. A table keeps its numbers as numbers
(so it sorts and exports as numbers) and carries how each column is shown: marimo's table takes
the formats as its format_mapping, the reports and the Jupyter panel render them as HTML. The
frames in nbkit.analysis.tables keep full precision."""

from __future__ import annotations

import functools
import html
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import polars as pl

from nbkit.design.settings import Settings
from nbkit.rundir.runlog import read_config
from nbkit.view.escape import md_text

DASH = "—"
# what makes numbers comparable with the original's: the dataset and these settings
PROTOCOL_KEYS = ("max_iter", "batch_size", "warmup_min_lr", "warmup_max_lr", "warmup_num_steps", "gradient_clipping")
PROTOCOL_WORDS = {"max_iter": "steps", "batch_size": "batch", "warmup_min_lr": "lr start",
                  "warmup_max_lr": "peak lr", "warmup_num_steps": "warm-up steps", "gradient_clipping": "clipping"}
NOT_A_DIFFERENCE = {"seed", "data_dir", "dataset", "save_every", "eval_batch_size", "compile", "model"}


def _defined(v) -> bool:
    return v is not None and not (isinstance(v, float) and v != v)


def top1(v) -> str:
    return f"{v:.4f}" if _defined(v) else DASH


def spread(v) -> str:
    """A standard deviation across seeds: '± 0.0071'; '—' where one seed leaves it undefined."""
    return f"± {v:.4f}" if _defined(v) else DASH


def mean_std(m, s) -> str:
    """'0.6543 ± 0.0021'; the mean alone where one seed leaves the spread undefined."""
    return DASH if not _defined(m) else top1(m) + (f" ± {s:.4f}" if _defined(s) else "")


def count(v) -> str:
    if not _defined(v):
        return DASH
    v = float(v)
    return f"{v / 1e6:.1f} M" if v >= 1e6 else f"{v / 1e3:.0f} k" if v >= 1e4 else f"{v:,.0f}"


def seconds(v) -> str:
    if not _defined(v):
        return DASH
    return f"{v / 3600:.1f} h" if v >= 3600 else f"{v / 60:.1f} min" if v >= 60 else f"{v:.0f} s"


def signed(v) -> str:
    return f"{v:+.4f}" if _defined(v) else DASH


def step(v) -> str:
    return f"{v:,.0f}" if _defined(v) else DASH


def text(v) -> str:
    return DASH if v is None or v == "" else str(v)


def value(v) -> str:
    """A setting as written: integers with thousands separators, floats short."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return DASH if v is None else str(v)
    return f"{v:,}" if isinstance(v, int) else f"{v:g}"


@dataclass
class Table:
    """A table to show: its numbers as numbers, and how each column reads (a formatter per column)."""
    frame: pl.DataFrame
    formats: dict[str, Callable] = field(default_factory=dict)

    def formatted(self) -> pl.DataFrame:
        """Every cell as the text people read."""
        if self.frame.is_empty():
            return self.frame.cast({c: pl.String for c in self.frame.columns})
        return pl.DataFrame({c: [self.formats.get(c, text)(v) for v in self.frame[c]] for c in self.frame.columns},
                            schema={c: pl.String for c in self.frame.columns})

    def to_html(self) -> str:
        """Plain HTML (reports, the Jupyter panel): every string escaped, numbers right-aligned."""
        numeric = {c for c, t in self.frame.schema.items() if t.is_numeric()}
        align = lambda c: " class='num'" if c in numeric else ""
        head = "".join(f"<th{align(c)}>{html.escape(c)}</th>" for c in self.frame.columns)
        body = "".join("<tr>" + "".join(f"<td{align(c)}>{html.escape(v)}</td>" for c, v in zip(self.frame.columns, row))
                       + "</tr>" for row in self.formatted().iter_rows())
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    @property
    def height(self) -> int:
        return self.frame.height


@dataclass(frozen=True)
class Section:
    """A part of a comparison's page of its own: a title, markdown, and a chart (charts.Spec) or
    a table (a frame of text, as people read it)."""
    title: str
    text: str
    chart: object = None
    table: pl.DataFrame | None = None


def _get(row: dict, key: str):
    v = row.get(key)
    return v if _defined(v) else None


def variant_table(per_variant: pl.DataFrame) -> Table:
    """One row per group of runs across seeds (tables.per_variant): a variant, or a variant at
    other settings, named as nbkit.rundir.reader names it. train_200 top-1 is the best, the gap is final
    train_200 minus final test top-1."""
    if per_variant.is_empty():
        return Table(pl.DataFrame({"Variant": []}, schema={"Variant": pl.String}))
    has_val = "test_at_best_val_mean" in per_variant.columns
    rows = []
    for r in per_variant.iter_rows(named=True):
        several = r["seeds"] > 1
        row = {"Variant": r.get("group") or r["variant"], "Seeds": r["seeds"],
               "Best test top-1": _get(r, "best_test_mean"), "± (best)": _get(r, "best_test_std") if several else None,
               "at step": _get(r, "best_test_step_mean")}
        if has_val:
            row["Test top-1 at best val step"] = _get(r, "test_at_best_val_mean")
        row |= {"Final test top-1": _get(r, "final_test_mean"), "± (final)": _get(r, "final_test_std") if several else None,
                "train_200 top-1": _get(r, "best_train_200_mean"), "Gap": _get(r, "gap_mean"),
                "Params": _get(r, "parameters"), "Time": _get(r, "wall_seconds_mean"),
                "img/s": _get(r, "images_per_second_mean"), "Precision": r.get("precision") or None}
        rows.append(row)
    schema = {"Variant": pl.String, "Seeds": pl.Int64, "Best test top-1": pl.Float64, "± (best)": pl.Float64,
              "at step": pl.Float64, **({"Test top-1 at best val step": pl.Float64} if has_val else {}),
              "Final test top-1": pl.Float64, "± (final)": pl.Float64, "train_200 top-1": pl.Float64,
              "Gap": pl.Float64, "Params": pl.Float64, "Time": pl.Float64, "img/s": pl.Float64, "Precision": pl.String}
    formats = {"Best test top-1": top1, "± (best)": spread, "at step": step, "Test top-1 at best val step": top1,
               "Final test top-1": top1, "± (final)": spread, "train_200 top-1": top1, "Gap": signed,
               "Params": count, "Time": seconds, "img/s": count}
    return Table(pl.DataFrame(rows, schema=schema), formats)


def original_table(train_200: pl.DataFrame, test: pl.DataFrame, runs: pl.DataFrame | None = None) -> Table:
    """The original's two tables in one: each run's best train_200 and best test top-1 with
    their steps (ties to the earlier step), best test first."""
    schema = {"Run": pl.String, "Variant": pl.String, "Seed": pl.Int64, "Best train_200 top-1": pl.Float64,
              "its step": pl.Int64, "Best test top-1": pl.Float64, "at step": pl.Int64}
    if test.is_empty() and train_200.is_empty():
        return Table(pl.DataFrame(schema=schema))
    keys = ["run_id", "variant", "seed", "path"]
    parts = [t.select(*keys, pl.col("acc_top1").alias(name), pl.col("step").alias(name + " step"))
             for t, name in ((train_200, "train_200"), (test, "test")) if not t.is_empty()]
    both = parts[0].join(parts[1], on=keys, how="full", coalesce=True) if len(parts) == 2 else parts[0]
    names = _names(runs)
    if "test" in both.columns:
        both = both.sort(["test", "run_id"], descending=[True, False], nulls_last=True)
    rows = [{"Run": names.get(r["path"], r["run_id"]), "Variant": r["variant"], "Seed": r["seed"],
             "Best train_200 top-1": r.get("train_200"), "its step": r.get("train_200 step"),
             "Best test top-1": r.get("test"), "at step": r.get("test step")} for r in both.iter_rows(named=True)]
    formats = {"Seed": text, "Best train_200 top-1": top1, "its step": step, "Best test top-1": top1, "at step": step}
    return Table(pl.DataFrame(rows, schema=schema), formats)


def _names(runs: pl.DataFrame | None) -> dict[str, str]:
    if runs is None or runs.is_empty() or "name" not in runs.columns:
        return {}
    return dict(runs.select("path", "name").iter_rows())


def configs(runs: pl.DataFrame) -> dict[str, dict]:
    """Each run's config.json by path ({} where unreadable)."""
    return {p: read_config(p) or {} for p in runs["path"]} if not runs.is_empty() else {}


def _settings(config: dict) -> dict:
    s = config.get("settings")
    return s if isinstance(s, dict) else {}


def _definition(config: dict) -> set[str]:
    """The settings a run's variant sets itself (resnet18-aug's use_augmentation, a comparisons
    file's model_kwargs, as its config.json records the definition): not a difference worth
    naming on its runs."""
    from nbkit.design.variants import VARIANTS

    variant = config.get("variant")
    known = VARIANTS.get(variant) if isinstance(variant, str) else None
    if known is not None:
        return set(known.options)
    definition = config.get("definition")
    options = definition.get("options") if isinstance(definition, dict) else None
    return set(options) if isinstance(options, dict) else set()


@functools.cache
def _defaults() -> dict:
    """Settings' defaults: the original's protocol (read only)."""
    return Settings().to_dict()


def differences(cfgs: dict[str, dict]) -> dict[str, str]:
    """Per run, the settings where it differs from what most of the runs use
    ('max_iter=400'), leaving out the model and what its variant sets by definition. A setting
    a run's config.json lacks (one added to nbkit after the run) counts as its default."""
    defaults = _defaults()
    settings = {p: {**defaults, **_settings(c)} for p, c in cfgs.items()}
    keys = sorted({k for s in settings.values() for k in s} - NOT_A_DIFFERENCE)
    usual = {k: Counter(repr(s.get(k)) for s in settings.values()).most_common(1)[0][0] for k in keys}
    out = {}
    for p, s in settings.items():
        own = _definition(cfgs[p])
        out[p] = ", ".join(f"{k}={s.get(k)}" for k in keys if repr(s.get(k)) != usual[k] and k not in own) or DASH
    return out


def protocol_gaps(config: dict, original: dict | None = None) -> list[str]:
    """How a run's protocol differs from the original's (CIFAR-100, Settings' defaults)."""
    original = original or _defaults()
    s, gaps = _settings(config), []
    name = (config.get("dataset") or {}).get("name") if isinstance(config.get("dataset"), dict) else None
    if name != original["dataset"]:
        gaps.append(f"dataset {name or '?'}")
    for k in PROTOCOL_KEYS:
        if k in s and s[k] != original[k]:
            gaps.append(f"{PROTOCOL_WORDS[k]} {value(s[k])}")
    return gaps


def run_table(per_run: pl.DataFrame, cfgs: dict[str, dict], runs: pl.DataFrame | None = None) -> Table:
    """One row per run: state, progress, best numbers, protocol and the settings that set it apart."""
    if per_run.is_empty():
        return Table(pl.DataFrame({"Run": []}, schema={"Run": pl.String}))
    diff, rows = differences(cfgs), []
    last = dict(runs.select("path", "last_step").iter_rows()) if runs is not None and "last_step" in runs.columns else {}
    reason = dict(runs.select("path", "reason").iter_rows()) if runs is not None and "reason" in runs.columns else {}
    sort = [c for c in ("group", "seed", "name") if c in per_run.columns]
    for r in per_run.sort(sort, nulls_last=True).iter_rows(named=True):
        config = cfgs.get(r["path"], {})
        gaps = protocol_gaps(config)
        steps = _settings(config).get("max_iter")
        rows.append({"Run": r.get("name") or r["run_id"], "Variant": r["variant"], "Seed": r["seed"],
                     "State": r["state"] or None, "Step": last.get(r["path"]),
                     "of": steps if isinstance(steps, int) and not isinstance(steps, bool) else None,
                     "Best train_200 top-1": _get(r, "best_train_200"), "Best test top-1": _get(r, "best_test"),
                     "img/s": _get(r, "images_per_second"), "Device": value(config.get("device")),
                     "Protocol": "as the original" if not gaps else "differs: " + ", ".join(gaps),
                     "Settings apart from the others": diff.get(r["path"], DASH),
                     "Why it ended": _one_line(reason.get(r["path"])) if r["state"] in ("failed", "stopped", "interrupted")
                     else warmup_note(config),
                     "Run id": r["run_id"]})
    schema = {"Run": pl.String, "Variant": pl.String, "Seed": pl.Int64, "State": pl.String, "Step": pl.Int64,
              "of": pl.Int64, "Best train_200 top-1": pl.Float64, "Best test top-1": pl.Float64, "img/s": pl.Float64,
              "Device": pl.String, "Protocol": pl.String, "Settings apart from the others": pl.String,
              "Why it ended": pl.String, "Run id": pl.String}
    frame = pl.DataFrame(rows, schema=schema)
    # what every run shares is said once, in the run set's protocol, not repeated on each row
    same = [c for c in ("of", "Device", "Protocol") if frame.height > 1 and frame[c].n_unique() == 1]
    if frame["Why it ended"].null_count() == frame.height:
        same.append("Why it ended")
    if frame.height and (frame["Settings apart from the others"] == DASH).all():
        same.append("Settings apart from the others")
    frame = frame.with_columns(pl.col(pl.String).fill_null(DASH))  # a missing text reads "—", never "None"
    formats = {"Seed": text, "Step": step, "of": step, "Best train_200 top-1": top1, "Best test top-1": top1,
               "img/s": count}
    return Table(frame.drop(same), formats)


def warmup_note(config: dict) -> str | None:
    """What a run that ends inside its learning-rate warm-up needs said beside its numbers (its rate
    never reaches the peak, so it barely learns: top-1 near chance is the schedule, not a bug), or None."""
    s = _settings(config)
    steps, warm = s.get("max_iter"), s.get("warmup_num_steps")
    if s.get("constant_lr") is not None or not all(isinstance(v, int) and not isinstance(v, bool) for v in (steps, warm)):
        return None
    if steps > warm:
        return None
    return (f"ends inside its learning-rate warm-up ({steps:,} of {warm:,} steps): the rate never reaches its peak, "
            "so it barely learns")


def _one_line(reason) -> str | None:
    """A failure reason on one line, its start kept (where the cause is named), cut at 160 characters."""
    if not isinstance(reason, str) or not reason.strip():
        return None
    line = " ".join(reason.split())
    return line if len(line) <= 160 else line[:159] + "…"


def protocol(runs: pl.DataFrame, cfgs: dict[str, dict], against_original: bool = True) -> str:
    """What this run set is (markdown, every string from the runs escaped): per dataset, steps,
    batch, device and labels, and (against_original) whether its protocol is the original's."""
    if runs.is_empty():
        return ""
    original = Settings().to_dict()
    parts = []
    for dataset in sorted(runs["dataset"].drop_nulls().unique()):
        chosen = [cfgs.get(p, {}) for p in runs.filter(pl.col("dataset") == dataset)["path"]]
        values = lambda get: ", ".join(md_text(value(v)) for v in sorted({repr(get(c)): get(c) for c in chosen
                                                                           if get(c) is not None}.values(), key=str)) or DASH
        labels = sorted({c.get("label") for c in chosen if isinstance(c.get("label"), str) and c.get("label")})
        gaps = sorted({g for c in chosen for g in protocol_gaps(c, original)})
        out = (f"**{md_text(dataset)}**: {len(chosen)} run(s); {values(lambda c: _settings(c).get('max_iter'))} steps, "
               f"batch {values(lambda c: _settings(c).get('batch_size'))}, evaluated every "
               f"{values(lambda c: _settings(c).get('eval_every'))} steps; device {values(lambda c: c.get('device'))}")
        out += "; labelled " + "; ".join(f"“{md_text(l)}”" for l in labels) if labels else ""
        if not against_original:  # a comparison of the user's: its protocol is its own
            parts.append(out + ".")
            continue
        out += (f". **Differs from the original's protocol** ({original['dataset']}, {original['max_iter']:,} steps, "
                f"batch {original['batch_size']}): {md_text(', '.join(gaps))}; compare its numbers with each other, not "
                "with the original's." if gaps else ". Same protocol as the original.")
        parts.append(out)
    return "\n\n".join(f"- {p}" for p in parts)
