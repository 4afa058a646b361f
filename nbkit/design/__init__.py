"""What is compared: a run's settings, the variants (the study's 23 and nbkit's own), the comparisons
that group them, the user's comparisons file, and the models they name. Definitions only: nothing
here trains, reads a run folder or shows anything."""
