"""Many runs: a sweep's plan of `nbkit train` processes, sweeps launched in the background from a
notebook, and sweeps on a Ray cluster."""
