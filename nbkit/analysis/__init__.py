"""What runs say: the tables, the curves' data, the per-run measures and their noise, the
replication scorecard and its statistics, the epoch-boundary drop and the epochs experiment. Pure
Polars and Python over the frames nbkit.rundir.reader makes."""
