"""The seen-count probe (setting `seen_probe`): the training loss split by how many times each
example had been trained on before its batch, to tell memorisation from learning.

The loader keeps every training example's count on the device (SeenCounts); each step the
batch's per-example cross-entropy is summed per group into a few numbers that join the step's
statistics vector (`window_columns`), so the probe adds no host transfer: a train row's window
means give each group's mean loss and its share of the window's examples (`row_columns`).
Under `replacement` sampling seen and unseen examples meet in one batch, so their losses are
measured at the same weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nbkit.rundir.schema import SEEN_GROUPS as GROUPS
from nbkit.rundir.schema import seen_loss_column as loss_column
from nbkit.rundir.schema import seen_share_column as share_column

if TYPE_CHECKING:  # torch is imported where counts are kept: the views read the columns without it
    import torch
    from torch import Tensor

class SeenCounts:
    """How many times each of n training examples has been trained on, on the device."""

    def __init__(self, n: int, dev: torch.device):
        import torch

        self.counts = torch.zeros(n, dtype=torch.int64, device=dev)

    def visit(self, batch: Tensor, mine: slice) -> Tensor:
        """The seen group of this process's part of the batch (example indices), then every example
        of the batch counted once more (twice if drawn twice)."""
        groups = self.counts[batch[mine]].clamp(max=len(GROUPS) - 1)
        self.counts.index_add_(0, batch, batch.new_ones(batch.shape))
        return groups


def window_columns(groups: Tensor, losses: Tensor) -> Tensor:
    """(2 * len(GROUPS),): each group's summed loss, then its number of examples, both per example of
    the batch: their means over a window (and over ranks) keep each group's loss ratio and share."""
    per_example = losses.detach().float()
    out = per_example.new_zeros(2 * len(GROUPS))
    out.index_add_(0, groups, per_example).index_add_(0, groups + len(GROUPS), per_example.new_ones(per_example.shape))
    return out / len(per_example)


def row_columns(values: list[float]) -> dict[str, float]:
    """A train row's probe columns from the window means of window_columns: each group's share of
    the window's examples, and its mean loss where the group had any."""
    g = len(GROUPS)
    row = {}
    for name, total, share in zip(GROUPS, values[:g], values[g:2 * g]):
        if share > 0:
            row[loss_column(name)] = total / share
        row[share_column(name)] = share
    return row
