"""Points on a run's step axis (epoch boundaries, mid-epoch points) derived from its logged rows,
so the work they cost is bounded by the number of rows, never by the values in them: one row
logged at step 10^15 adds a handful of points, not one per epoch up to it."""

from __future__ import annotations

MAX_MARKS_PER_ROW = 64  # points near one row (a window of several epochs on each side still fits)


def marks_near(steps: list[int], every: int, reach: int, offset: int = 0) -> list[int]:
    """The points k * every + offset (k >= 1, none past the last logged step) within `reach`
    steps of a logged step, ascending; at most MAX_MARKS_PER_ROW for each row."""
    if not steps or every < 1:
        return []
    last, reach, marks = max(steps), max(0, reach), set()
    for s in steps:
        lo = max(1, -(-(s - reach - offset) // every))  # the first k with k * every + offset >= s - reach
        hi = (min(s + reach, last) - offset) // every
        marks.update(range(lo, min(hi, lo + MAX_MARKS_PER_ROW - 1) + 1))
    return sorted(k * every + offset for k in marks)
