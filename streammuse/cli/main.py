"""The `streammuse` command: a thin Typer app; the logic lives in the other subpackages.

Each command group lives in its own module under ``streammuse.cli`` and registers itself
in :data:`COMMAND_MODULES`. A :class:`StreamMuseError` raised anywhere below becomes one
line on stderr and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib

import typer
from typer.core import TyperGroup

from streammuse.errors import StreamMuseError


class _Group(TyperGroup):
    """Turns StreamMuseError into one line "error: ..." on stderr and exit code 2.

    Typer >= 0.29 vendors its own click and renders its exceptions as a rich box, so the
    line is printed here and the exit goes through `typer.Exit`, which every mode honours.
    """

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except StreamMuseError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None


app = typer.Typer(
    name="streammuse",
    cls=_Group,
    help="Frame-synchronous streaming inference for live music accompaniment.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)



@app.callback()
def _root() -> None:
    # A callback keeps `streammuse <command>` a group even while only one command is
    # registered (Typer would otherwise run that command as the root).
    pass


# Modules that add commands to `app` through a `register(app)` function. A module is
# listed here only once its commands work.
COMMAND_MODULES: list[str] = [
    "streammuse.cli.plan",
    "streammuse.cli.profile",
    "streammuse.cli.gate",
    "streammuse.cli.datasets",
    "streammuse.cli.report",
    "streammuse.cli.serve",
    "streammuse.cli.replay",
    "streammuse.cli.train",
    "streammuse.cli.jam",
    "streammuse.cli.render",
    "streammuse.cli.doctor",
]

for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)

importlib.import_module("streammuse.cli.helpfmt").polish_help()


def run() -> None:
    """Console-script entry point."""
    app()
