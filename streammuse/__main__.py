"""``python -m streammuse``: the CLI where the console script is not installed (a checkout on ``PYTHONPATH``)."""

from streammuse.cli.main import run

run()
