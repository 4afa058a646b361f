"""Every number the README's epochs section gives, from the shipped runs:

    python benchmarks/epochs_summary.py                       # artifacts/runs-epochs: table, findings
    python benchmarks/epochs_summary.py artifacts/runs-h200   # the staircase at full scale, dose-response

Prints the drop table (nbkit.view.epochs_view.drop_table), the findings with their seed-level
tests (nbkit.analysis.epochs_answer.findings), the disjoint half's switch per run
(nbkit.analysis.epochs.switch), resnet18's mean training loss over the 40 steps before and after
the end of epoch 4 (nbkit.analysis.epochs.around_end) and the dose-response across variants.
"""

from __future__ import annotations

import sys

from nbkit.analysis import epochs, epochs_answer
from nbkit.design.comparisons import get_comparison
from nbkit.rundir.reader import read_runs
from nbkit.view.epochs_view import drop_table
from nbkit.view.summary import markdown_table


def main(runs_dir: str = "artifacts/runs-epochs") -> None:
    metrics, runs = read_runs(runs_dir)
    table = drop_table(metrics, runs, list(get_comparison("epochs").variants))
    if not table.is_empty():
        print(markdown_table(table, table.columns, "lrrrrrlr"), end="\n\n")
    print("\n\n".join(epochs_answer.findings(metrics, runs)), end="\n\n")
    switch = epochs.switch(metrics, runs)
    if not switch.is_empty():
        print(switch.select("variant", "seed", "step", "before", "trend", "after", "held"), end="\n\n")
    around = epochs.around_end(metrics, runs, "resnet18", 4, 40)
    if around is not None:
        print(f"resnet18, mean training loss over the 40 steps before / after the end of epoch 4: "
              f"{around[0]:.3f} -> {around[1]:.3f}")
    both, test = epochs.dose_response(metrics, runs)
    if test is not None and test.tau is not None:
        print(both)
        print(f"dose-response: Kendall tau {test.tau:+.2f} over {test.n} variants, p = {test.p_above:.2g} (exact, "
              "one-sided)")


if __name__ == "__main__":
    main(*sys.argv[1:])
