"""The replication scorecard as people read it: verdict counts, the rank agreement and the claims'
table in markdown (nbkit.analysis.scorecard decides the verdicts), for the notebook, the Jupyter
panel, reports and `nbkit summary --scorecard`."""

from __future__ import annotations

import polars as pl

from nbkit.analysis.claims import CLAIMS, TABLES, VERDICTS
from nbkit.analysis.measures import Measured, measured
from nbkit.analysis.scorecard import agreement_text, of_dataset, scorecard
from nbkit.design.comparisons import COMPARISONS
from nbkit.rundir.reader import read_runs
from nbkit.view.escape import md_text
from nbkit.view.summary import markdown_table


def verdict_counts(card: pl.DataFrame) -> dict[str, int]:
    """Verdicts counted by kind, in the scorecard's order ("partly measured: 1 of 10" counts as partly measured)."""
    kinds = [v.split(":")[0] for v in card["verdict"]] if not card.is_empty() else []
    return {v: kinds.count(v) for v in VERDICTS if v in kinds}


def _counts(card: pl.DataFrame) -> str:
    return ", ".join(f"{v} {n}" for v, n in verdict_counts(card).items()) or "no claims"


def _p(p: float | None, adjusted: float | None) -> str:
    return "—" if p is None else f"{p:.2g} ({adjusted:.2g})" if adjusted is not None else f"{p:.2g}"


def _shown(card: pl.DataFrame) -> pl.DataFrame:
    """Cells as text: differences to four decimals, "—" where undefined, a quote repeated on the
    next row as "(as above)"."""
    quote = card["claim"].to_list()
    return card.with_columns(
        pl.Series("claim", [q if i == 0 or q != quote[i - 1] else "(as above)" for i, q in enumerate(quote)]),
        pl.col("difference").map_elements(lambda v: "—" if v is None else f"{v:+.4f}", return_dtype=pl.String,
                                          skip_nulls=False),
        pl.col("mde").map_elements(lambda v: "—" if v is None else f"{v:.4f}", return_dtype=pl.String,
                                   skip_nulls=False),
        pl.Series("p (Holm)", [_p(p, a) for p, a in zip(card["p"], card["p_holm"])], dtype=pl.String),
        *(pl.col(c).fill_null("—") for c in ("original", "here", "noise", "conditions")))


def scorecard_markdown(here: Measured, comparison: str) -> str:
    """One comparison's scorecard: verdict counts and rank agreement, then a table of the claims in
    the original's words and one of what was read off its tables."""
    card = scorecard(here, comparison)
    if card.is_empty():
        return "The original made no claim about this comparison."
    words, read = card.filter(pl.col("group") == "words"), card.filter(pl.col("group") == "tables")
    parts = [f"{md_text(_counts(card))}. Rank agreement with the original's ordering by test top-1: "
             f"{md_text(agreement_text(here, comparison))}."]
    if not words.is_empty():
        parts.append(markdown_table(_shown(words).rename({"claim": "the original's words", "tested_as": "tested as"}),
                                    ["the original's words", "tested as", "original", "here", "difference", "noise",
                                     "p (Holm)", "mde", "verdict", "conditions"], "llllllllll"))
    if not read.is_empty():
        parts.append(markdown_table(_shown(read).rename({"tested_as": TABLES}),
                                    [TABLES, "original", "here", "difference", "noise", "p (Holm)", "mde", "verdict",
                                     "conditions"], "lllllllll"))
    return "\n\n".join(parts)


NOTE = ("The original ran CIFAR-100 in fp32 for 5,000 steps with its own schedule, one run per variant; each row's "
        "conditions say what differs here, and runs shorter than 5,000 steps are *not comparable* (the numbers stay "
        "shown). Numbers are each run's best evaluation (the best step picked on test, as the original's tables "
        "did), mean over seeds; the best-step gap is best clean train_200 minus best test top-1. Difference: "
        "positive is the claim's way. The seed is the unit: noise is Welch's t between two variants (each its own "
        "spread), Student's t for one against a number, the 95% interval shown; a claim of no gain allows a gain "
        "under 0.01. p (Holm): the two-sided p of the row's test, and in brackets Holm-adjusted over the "
        "comparison's rows with a p; *holds* / *does not hold*: the adjusted p below 0.05 the claim's way or the "
        "other; *within noise*: not; *not judged*: one seed, or ties that leave the test unable to reach p ≤ 0.05; "
        "*partly measured: k of n*: judged on k of the n rivals. mde: the smallest difference these seeds would "
        "find four times in five. Rank correlations: Kendall tau-b with an exact permutation p-value "
        "(one-sided, ties kept).")


def section(metrics: pl.DataFrame, runs: pl.DataFrame, comparison: str, dataset: str) -> str:
    """The notebook's and report's scorecard section (markdown) on one dataset's runs."""
    metrics, runs = of_dataset(metrics, runs, dataset)
    head = (f"## Replication scorecard\nWhat the original claimed for this comparison, in its words and read off "
            f"its tables, tested on the {md_text(dataset)} runs loaded here.\n\n")
    if runs.is_empty() or metrics.is_empty():
        return head + "No runs to check the claims against yet."
    return head + scorecard_markdown(measured(metrics, runs), comparison) + "\n\n" + NOTE


def overview(here: Measured) -> str:
    """One line per comparison with claims: the verdicts of each group and the rank agreement
    (the README's scorecard tables are this)."""
    rows = []
    for name in COMPARISONS:
        card = scorecard(here, name)
        if card.is_empty():
            continue
        rows.append({"comparison": name, "in its words": _counts(card.filter(pl.col("group") == "words")),
                     "read off its tables": _counts(card.filter(pl.col("group") == "tables")),
                     "rank agreement (test top-1)": agreement_text(here, name)})
    frame = pl.DataFrame(rows, schema=dict.fromkeys(["comparison", "in its words", "read off its tables",
                                                     "rank agreement (test top-1)"], pl.String))
    return markdown_table(frame, frame.columns, "llll")


def scorecards_markdown(runs_dir, dataset: str | None = None) -> str:
    """Every comparison's scorecard on one dataset's runs (default: the dataset with most runs),
    after an overview of them all."""
    metrics, runs = read_runs(runs_dir, dataset)
    if runs.is_empty() or metrics.is_empty():
        return f"No runs with metrics under {runs_dir}."
    dataset = dataset or runs.group_by("dataset").len().sort(["len", "dataset"], descending=[True, False])["dataset"][0]
    here = measured(*of_dataset(metrics, runs, dataset))
    return "\n\n".join([f"## Scorecard overview (dataset {md_text(dataset)})", overview(here),
                        *(f"## Scorecard: {name} (dataset {md_text(dataset)})\n\n" + scorecard_markdown(here, name)
                          for name in COMPARISONS if any(c.comparison == name for c in CLAIMS)), NOTE])
