"""The run folder: the contract between the trainer and everything that reads runs: its files and
their schema, writing them whole, reading them safely (as untrusted data), checkpoints and the
frames over a runs directory."""
