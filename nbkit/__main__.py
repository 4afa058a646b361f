from nbkit.cli import run

run()
