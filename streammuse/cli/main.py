"""The `streammuse` command: a thin Typer app; the logic lives in the other subpackages.

Each command group lives in its own module under ``streammuse.cli`` and registers itself
in :data:`COMMAND_MODULES`. A :class:`StreamMuseError` raised anywhere below becomes one
line on stderr and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib

import click
import typer
from typer.core import TyperGroup

from streammuse.errors import StreamMuseError


class UserError(click.ClickException):
    """A user-caused problem, printed as one line, exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:  # noqa: D102 - one clear line, no "Usage:" block
        click.echo(f"error: {self.format_message()}", err=True, file=file)


class _Group(TyperGroup):
    """Turns StreamMuseError into UserError at the command boundary."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except StreamMuseError as exc:
            raise UserError(str(exc)) from None


app = typer.Typer(
    name="streammuse",
    cls=_Group,
    help="Frame-synchronous streaming inference for live music accompaniment.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

# Modules that add commands to `app` through a `register(app)` function. A module is
# listed here only once its commands work.
COMMAND_MODULES: list[str] = [
]

for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def run() -> None:
    """Console-script entry point."""
    app()
